#include "connection/connection.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connection/connection_internal.h"
#include "connection/pipe_ring.h"
#include "connection/socket_io.h"
#include "errors/errors.h"

namespace multiprocessing::connection {
namespace {

using Clock = std::chrono::steady_clock;
using internal::kMaxFdsPerMessage;
using internal::WaitFor;

// Small messages are read through a per-connection buffer, so that a stream of
// them costs one read per many messages; larger ones are read straight into
// their destination.
constexpr std::size_t kReadBufferSize = 64 * 1024;
constexpr std::size_t kDirectReadThreshold = 16 * 1024;
// A length above this cannot be a real message: refuse it before allocating
// anything.
constexpr std::uint64_t kMaxMessageLength = std::uint64_t{1} << 40;
// Destinations for messages larger than this grow as the bytes arrive, so that
// a lying header costs no more memory than the data actually sent.
constexpr std::size_t kEagerAllocationLimit = 64 * 1024 * 1024;

void CloseFds(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

std::uint32_t LoadBigEndian32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) |
         (std::uint32_t{u[2]} << 8) | std::uint32_t{u[3]};
}

std::uint64_t LoadBigEndian64(const char* p) {
  return (std::uint64_t{LoadBigEndian32(p)} << 32) | LoadBigEndian32(p + 4);
}

void StoreBigEndian32(char* p, std::uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<char>(v & 0xff);
}

void StoreBigEndian64(char* p, std::uint64_t v) {
  StoreBigEndian32(p, static_cast<std::uint32_t>(v >> 32));
  StoreBigEndian32(p + 4, static_cast<std::uint32_t>(v));
}

// Blocks SIGPIPE while writing to a pipe, so that a reader that went away shows
// up as an EPIPE OSError (as in Python, which ignores SIGPIPE) instead of
// killing the process.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SigpipeGuard() {
    if (got_epipe_ && !was_pending_) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      const timespec zero{0, 0};
      while (sigtimedwait(&set, nullptr, &zero) == -1 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  void set_epipe() { got_epipe_ = true; }

 private:
  sigset_t old_;
  bool was_pending_ = false;
  bool got_epipe_ = false;
};

}  // namespace

struct Connection::Impl {
  Impl(int fd_in, bool readable_in, bool writable_in)
      : fd(fd_in), readable(readable_in), writable(writable_in) {
    struct stat st;
    if (::fstat(fd, &st) != 0) RaiseOSError("fstat", errno);
    is_socket = S_ISSOCK(st.st_mode);
    if (is_socket) {
      int domain = 0;
      socklen_t len = sizeof domain;
      is_unix = ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
                domain == AF_UNIX;
    }
  }
  ~Impl() { CloseNow(); }

  void CloseNow() {
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
    for (auto& batch : fd_batches) CloseFds(batch.fds);
    fd_batches.clear();
    ring.reset();
    buffer.reset();
    pos = end = 0;
  }

  std::size_t buffered() const { return end - pos; }
  // The stream offset (bytes since the connection began) of buffer[pos].
  std::uint64_t stream_position() const { return stream_read - buffered(); }

  std::size_t ReadSome(char* dst, std::size_t n, bool wait_all = false);
  bool Ensure(std::size_t n);
  void ReadExact(char* dst, std::size_t n);
  std::vector<int> TakeFds(std::uint64_t header_at, std::uint64_t message_end);
  [[noreturn]] void BadMessageLength(const std::string& why);
  std::uint64_t ReadHeader(std::optional<std::size_t> maxlength,
                           std::vector<int>* fds);
  void ReadBodyInto(std::string* out, std::uint64_t size);
  void WriteFrame(std::string_view payload, const std::vector<int>* fds);
  void WaitAfterWouldBlock(short events);

  int fd;
  bool readable;
  bool writable;
  bool is_socket = false;
  bool is_unix = false;

  // Read side: buffer[pos, end) holds received bytes not yet returned;
  // stream_read counts every byte read from fd.
  std::unique_ptr<char[]> buffer;
  std::size_t pos = 0;
  std::size_t end = 0;
  std::uint64_t stream_read = 0;
  // Descriptors that arrived with the read of stream bytes [start, end),
  // waiting for the message they belong to.
  struct FdBatch {
    std::uint64_t start;
    std::uint64_t end;
    std::vector<int> fds;
  };
  std::deque<FdBatch> fd_batches;
  std::optional<Clock::time_point> read_deadline;

  // Ends made by Pipe() carry their messages through shared memory (see
  // pipe_ring.h); the socket only rings and carries descriptors. `side` is 0
  // for Pipe()'s first end, 1 for its second.
  std::shared_ptr<internal::PipeRing> ring;
  int side = -1;
  int in_dir() const { return ring->directions() == 2 ? 1 - side : 0; }
  int out_dir() const { return ring->directions() == 2 ? side : 0; }
  bool RingPending() const { return readable && ring->Pending(in_dir()); }
  // Receives one frame from the ring into `sink`.
  void RingReceive(internal::RingSink& sink, std::vector<int>* fds,
                   std::optional<std::size_t> maxlength);
};

// One read(2)/recvmsg(2) of at most n bytes; 0 at end of file. With wait_all
// (large messages read straight into their destination) a socket read waits for
// all n bytes: fewer wake-ups and calls.
std::size_t Connection::Impl::ReadSome(char* dst, std::size_t n,
                                       bool wait_all) {
  for (;;) {
    if (read_deadline && !WaitFor(fd, POLLIN, read_deadline)) {
      throw TimeoutError(
          "timed out waiting for the peer to send; it may not speak the "
          "multiprocessing.connection protocol or may have stalled");
    }
    ssize_t k;
    std::vector<int> fds;
    if (is_unix) {
      k = internal::RecvWithFds(fd, dst, n, wait_all ? MSG_WAITALL : 0, &fds);
    } else {
      k = ::read(fd, dst, n);
    }
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        WaitAfterWouldBlock(POLLIN);
        continue;
      }
      RaiseOSError(is_unix ? "recvmsg" : "read", errno);
    }
    stream_read += static_cast<std::uint64_t>(k);
    if (!fds.empty()) {
      fd_batches.push_back(FdBatch{stream_read - static_cast<std::uint64_t>(k),
                                   stream_read, std::move(fds)});
    }
    return static_cast<std::size_t>(k);
  }
}

// After a read or write failed with EAGAIN. On a non-blocking descriptor that
// only means "not now": wait until it is ready, but no later than the read
// deadline (reads and the handshake's writes alike). On a blocking one it
// means the socket's own SO_RCVTIMEO / SO_SNDTIMEO ran out: that is a timeout,
// never a reason to wait again without end. Off the hot path: only reached
// when the kernel had nothing to give.
void Connection::Impl::WaitAfterWouldBlock(short events) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) == 0) {
    throw TimeoutError(absl::StrCat(
        "timed out waiting for the peer to ",
        events == POLLIN ? "send (the socket's SO_RCVTIMEO)"
                         : "take our data (the socket's SO_SNDTIMEO)"));
  }
  if (!WaitFor(fd, events, read_deadline)) {
    throw TimeoutError(
        "timed out waiting for the peer; it may not speak the "
        "multiprocessing.connection protocol or may have stalled");
  }
}

// Makes at least n (<= kReadBufferSize) bytes available in the buffer; false at
// end of file first.
bool Connection::Impl::Ensure(std::size_t n) {
  if (buffered() >= n) return true;
  if (!buffer) buffer.reset(new char[kReadBufferSize]);
  if (pos + n > kReadBufferSize) {
    std::memmove(buffer.get(), buffer.get() + pos, buffered());
    end -= pos;
    pos = 0;
  }
  while (buffered() < n) {
    const std::size_t k = ReadSome(buffer.get() + end, kReadBufferSize - end);
    if (k == 0) return false;
    end += k;
  }
  return true;
}

// Reads exactly n bytes into dst: first what is buffered, then the rest
// straight from the descriptor (large remainders) or through the buffer (small
// ones).
void Connection::Impl::ReadExact(char* dst, std::size_t n) {
  const std::size_t from_buffer = std::min(n, buffered());
  if (from_buffer > 0) std::memcpy(dst, buffer.get() + pos, from_buffer);
  pos += from_buffer;
  dst += from_buffer;
  n -= from_buffer;
  if (n == 0) return;
  if (n < kDirectReadThreshold) {
    if (!Ensure(n))
      throw OSError(
          0, "got end of file during message: the peer closed mid-message");
    std::memcpy(dst, buffer.get() + pos, n);
    pos += n;
    return;
  }
  while (n > 0) {
    const std::size_t k = ReadSome(dst, n, /*wait_all=*/!read_deadline);
    if (k == 0)
      throw OSError(
          0, "got end of file during message: the peer closed mid-message");
    dst += k;
    n -= k;
  }
}

// The descriptors sent with the message whose header starts at stream offset
// `header_at`. The kernel hands descriptors over with the read that takes the
// first byte of the sendmsg(2) that carried them, and ends that read there; a
// sender attaches them to the sendmsg that starts with the message's header. So
// a batch read over [start, end) belongs to the last message whose header lies
// in it: the one that starts there and does not end before `end`. Batches no
// message can claim are closed.
std::vector<int> Connection::Impl::TakeFds(std::uint64_t header_at,
                                           std::uint64_t message_end) {
  std::vector<int> taken;
  while (!fd_batches.empty()) {
    FdBatch& batch = fd_batches.front();
    if (batch.end <= header_at) {
      CloseFds(batch.fds);
      fd_batches.pop_front();
    } else if (batch.start <= header_at && message_end >= batch.end) {
      taken.insert(taken.end(), batch.fds.begin(), batch.fds.end());
      fd_batches.pop_front();
    } else {
      break;
    }
  }
  return taken;
}

void Connection::Impl::BadMessageLength(const std::string& why) {
  // The rest of the message cannot be skipped safely, so reading stops here (as
  // in Python).
  if (writable) {
    readable = false;
  } else {
    CloseNow();
  }
  throw OSError(0, absl::StrCat("bad message length: ", why,
                                "; the connection is no longer readable"));
}

// Reads a message header and returns the length of the message that follows.
// `fds` receives the descriptors sent with it.
std::uint64_t Connection::Impl::ReadHeader(std::optional<std::size_t> maxlength,
                                           std::vector<int>* fds) {
  const std::uint64_t header_at = stream_position();
  if (!Ensure(4)) {
    if (buffered() == 0)
      throw EOFError("the peer closed the connection; nothing left to receive");
    throw OSError(0,
                  "got end of file during message: the peer closed mid-header");
  }
  const auto n = static_cast<std::int32_t>(LoadBigEndian32(buffer.get() + pos));
  std::uint64_t size;
  std::size_t header_size = 4;
  if (n == -1) {
    if (!Ensure(12))
      throw OSError(
          0, "got end of file during message: the peer closed mid-header");
    size = LoadBigEndian64(buffer.get() + pos + 4);
    header_size = 12;
  } else if (n < 0) {
    BadMessageLength(
        absl::StrCat("the header announces ", n,
                     " bytes (not a multiprocessing.connection stream?)"));
  } else {
    size = static_cast<std::uint64_t>(n);
  }
  if (maxlength && size > *maxlength) {
    BadMessageLength(absl::StrCat("the message has ", size,
                                  " bytes, more than maxlength ", *maxlength));
  }
  if (size > kMaxMessageLength) {
    BadMessageLength(absl::StrCat("the header announces ", size,
                                  " bytes, more than the limit of ",
                                  kMaxMessageLength));
  }
  pos += header_size;
  std::vector<int> received =
      TakeFds(header_at, header_at + header_size + size);
  if (fds != nullptr) {
    *fds = std::move(received);
  } else {
    CloseFds(received);
  }
  return size;
}

void Connection::Impl::ReadBodyInto(std::string* out, std::uint64_t size) {
  if (size < kDirectReadThreshold) {
    out->resize(size);
    ReadExact(out->data(), size);
    return;
  }
  // Reserve (without touching) what the header announces, up to a limit, so
  // that a header claiming terabytes fails on the missing bytes rather than on
  // an allocation; then grow a piece at a time, each piece zero-filled just
  // before the read overwrites it (while it is in cache) instead of the whole
  // message up front.
  constexpr std::size_t kPiece = 1 << 20;
  out->clear();
  out->reserve(static_cast<std::size_t>(
      std::min<std::uint64_t>(size, kEagerAllocationLimit)));
  std::size_t have = 0;
  while (have < size) {
    const std::size_t next =
        static_cast<std::size_t>(std::min<std::uint64_t>(size, have + kPiece));
    out->resize(next);
    ReadExact(out->data() + have, next - have);
    have = next;
  }
}

void Connection::Impl::WriteFrame(std::string_view payload,
                                  const std::vector<int>* fds) {
  if (ring) {
    ring->Send(out_dir(), fd, payload, fds);
    return;
  }
  char header[12];
  std::size_t header_size;
  if (payload.size() > 0x7fffffff) {
    StoreBigEndian32(header, 0xffffffffu);
    StoreBigEndian64(header + 4, payload.size());
    header_size = 12;
  } else {
    StoreBigEndian32(header, static_cast<std::uint32_t>(payload.size()));
    header_size = 4;
  }
  iovec iov[2] = {{header, header_size},
                  {const_cast<char*>(payload.data()), payload.size()}};
  iovec* next = iov;
  int count = payload.empty() ? 1 : 2;
  bool fds_pending = fds != nullptr && !fds->empty();
  alignas(cmsghdr) char control[internal::kFdControlSpace];
  std::optional<SigpipeGuard> sigpipe;
  if (!is_socket) sigpipe.emplace();
  while (count > 0) {
    ssize_t k;
    if (is_socket) {
      msghdr msg{};
      msg.msg_iov = next;
      msg.msg_iovlen = static_cast<std::size_t>(count);
      if (fds_pending)
        internal::AttachFds(msg, control, fds->data(), fds->size());
      k = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    } else {
      k = ::writev(fd, next, count);
    }
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        WaitAfterWouldBlock(POLLOUT);
        continue;
      }
      if (errno == EPIPE && sigpipe) sigpipe->set_epipe();
      RaiseOSError(is_socket ? "sendmsg" : "writev", errno);
    }
    fds_pending = false;
    auto written = static_cast<std::size_t>(k);
    while (count > 0 && written >= next->iov_len) {
      written -= next->iov_len;
      ++next;
      --count;
    }
    if (count > 0) {
      next->iov_base = static_cast<char*>(next->iov_base) + written;
      next->iov_len -= written;
    }
  }
}

namespace {

// Collects a ring frame into a string.
class StringSink : public internal::RingSink {
 public:
  explicit StringSink(std::string* out) : out_(out) {}
  void Begin(std::uint64_t size) override {
    out_->clear();
    out_->reserve(static_cast<std::size_t>(
        std::min<std::uint64_t>(size, kEagerAllocationLimit)));
  }
  bool Whole(std::string_view payload) override {
    out_->assign(payload.data(), payload.size());
    return true;
  }
  void Append(const char* data, std::size_t size) override {
    out_->append(data, size);
  }

 private:
  std::string* out_;
};

// Decodes a ring frame, in place when it lies contiguous in the ring.
class DecodeSink : public StringSink {
 public:
  DecodeSink(void (*decode)(void*, std::string_view), void* context)
      : StringSink(&body_), decode_(decode), context_(context) {}
  bool Whole(std::string_view payload) override {
    decode_(context_, payload);
    return true;
  }
  void End() override { decode_(context_, body_); }

 private:
  std::string body_;
  void (*decode_)(void*, std::string_view);
  void* context_;
};

// Copies a ring frame into a caller's buffer, or into `overflow` if it does not
// fit.
class IntoSink : public internal::RingSink {
 public:
  IntoSink(char* dst, std::size_t room) : dst_(dst), room_(room) {}
  void Begin(std::uint64_t size) override {
    size_ = size;
    fits_ = size <= room_;
    if (!fits_) StringSink(&overflow_).Begin(size);
  }
  bool Whole(std::string_view payload) override {
    Append(payload.data(), payload.size());
    return true;
  }
  void Append(const char* data, std::size_t size) override {
    if (fits_) {
      std::memcpy(dst_ + written_, data, size);
      written_ += size;
    } else {
      overflow_.append(data, size);
    }
  }
  bool fits() const { return fits_; }
  std::uint64_t size() const { return size_; }
  std::string& overflow() { return overflow_; }

 private:
  char* dst_;
  std::size_t room_;
  std::size_t written_ = 0;
  std::uint64_t size_ = 0;
  bool fits_ = true;
  std::string overflow_;
};

}  // namespace

void Connection::Impl::RingReceive(internal::RingSink& sink,
                                   std::vector<int>* fds,
                                   std::optional<std::size_t> maxlength) {
  bool received;
  try {
    received = ring->Receive(in_dir(), fd, sink, fds, maxlength, read_deadline);
  } catch (const internal::RingBadLength& e) {
    BadMessageLength(e.why);
  }
  if (!received) {
    throw TimeoutError(
        "timed out waiting for the peer to send; it may have stalled");
  }
}

Connection::Connection(int fd, bool readable, bool writable) {
  if (fd < 0)
    throw ValueError(absl::StrCat("invalid handle ", fd, " for a Connection"));
  if (!readable && !writable) {
    throw ValueError("at least one of `readable` and `writable` must be true");
  }
  impl_ = std::make_shared<Impl>(fd, readable, writable);
}

Connection::Impl& Connection::CheckedImpl(bool for_reading) const {
  if (!impl_ || impl_->fd < 0)
    throw OSError(EBADF, "handle is closed: the connection was closed");
  if (for_reading && !impl_->readable) {
    throw OSError(
        0,
        "connection is write-only (or no longer readable after a bad message)");
  }
  if (!for_reading && !impl_->writable)
    throw OSError(0, "connection is read-only");
  return *impl_;
}

void Connection::send_bytes(std::span<const std::byte> buf, std::size_t offset,
                            std::optional<std::size_t> size) {
  Impl& impl = CheckedImpl(false);
  const std::size_t n = buf.size();
  if (offset > n) throw ValueError("buffer length < offset");
  if (!size) size = n - offset;
  if (*size > n - offset) throw ValueError("buffer length < offset + size");
  impl.WriteFrame(
      std::string_view(reinterpret_cast<const char*>(buf.data()) + offset,
                       *size),
      nullptr);
}

void Connection::SendMessage(std::string_view payload,
                             reduction::OutOfBand* oob) {
  Impl& impl = CheckedImpl(false);
  const std::vector<int>* fds = nullptr;
  if (oob != nullptr && !oob->fds.empty()) {
    if (!impl.is_unix) {
      throw ValueError(
          "cannot send an object carrying file descriptors over this "
          "connection: descriptors "
          "travel only over AF_UNIX sockets (use Pipe() or an 'AF_UNIX' "
          "Listener)");
    }
    if (oob->fds.size() > kMaxFdsPerMessage) {
      throw ValueError(
          absl::StrCat("cannot send ", oob->fds.size(),
                       " file descriptors in one message; the limit is ",
                       kMaxFdsPerMessage));
    }
    fds = &oob->fds;
  }
  impl.WriteFrame(payload, fds);
}

std::string Connection::recv_bytes(std::optional<std::size_t> maxlength) {
  Impl& impl = CheckedImpl(true);
  if (impl.ring) {
    std::string out;
    StringSink sink(&out);
    impl.RingReceive(sink, nullptr, maxlength);
    return out;
  }
  const std::uint64_t size = impl.ReadHeader(maxlength, nullptr);
  std::string out;
  impl.ReadBodyInto(&out, size);
  return out;
}

std::size_t Connection::recv_bytes_into(std::span<std::byte> buf,
                                        std::size_t offset) {
  Impl& impl = CheckedImpl(true);
  if (offset > buf.size()) throw ValueError("offset too large");
  std::uint64_t size;
  std::string whole;
  if (impl.ring) {
    IntoSink sink(reinterpret_cast<char*>(buf.data()) + offset,
                  buf.size() - offset);
    impl.RingReceive(sink, nullptr, std::nullopt);
    size = sink.size();
    if (sink.fits()) return size;
    whole = std::move(sink.overflow());
  } else {
    size = impl.ReadHeader(std::nullopt, nullptr);
    if (size > buf.size() - offset) impl.ReadBodyInto(&whole, size);
  }
  if (size > buf.size() - offset) {
    throw BufferTooShort(
        absl::StrCat("the buffer has room for ", buf.size() - offset,
                     " bytes from offset ", offset, " but the message has ",
                     size, "; the whole message is in message()"),
        std::move(whole));
  }
  impl.ReadExact(reinterpret_cast<char*>(buf.data()) + offset, size);
  return size;
}

void Connection::RecvMessageImpl(void (*decode)(void*, std::string_view),
                                 void* context, reduction::OutOfBand* oob) {
  Impl& impl = CheckedImpl(true);
  std::vector<int> fds;
  if (impl.ring) {
    DecodeSink sink(decode, context);
    impl.RingReceive(sink, oob != nullptr ? &oob->fds : nullptr, std::nullopt);
    return;
  }
  const std::uint64_t size = impl.ReadHeader(std::nullopt, &fds);
  if (oob != nullptr) {
    oob->fds = std::move(fds);
  } else {
    CloseFds(fds);
  }
  if (size < kDirectReadThreshold) {
    // Decode in place: the bytes stay valid until the next read from this
    // connection.
    if (!impl.Ensure(size)) {
      throw OSError(
          0, "got end of file during message: the peer closed mid-message");
    }
    const std::string_view view(impl.buffer.get() + impl.pos, size);
    impl.pos += size;
    decode(context, view);
    return;
  }
  std::string body;
  impl.ReadBodyInto(&body, size);
  decode(context, body);
}

bool Connection::poll(Timeout timeout) {
  Impl& impl = CheckedImpl(true);
  if (impl.buffered() > 0) return true;
  if (impl.ring && impl.RingPending()) return true;
  std::optional<Clock::time_point> deadline;
  if (timeout) {
    const double seconds = std::max(0.0, timeout->count());
    deadline = Clock::now() +
               std::chrono::duration_cast<Clock::duration>(
                   std::chrono::duration<double>(std::min(seconds, 1e9)));
  }
  return WaitFor(impl.fd, POLLIN, deadline);
}

int Connection::fileno() const {
  if (!impl_ || impl_->fd < 0)
    throw OSError(EBADF, "handle is closed: the connection was closed");
  return impl_->fd;
}

void Connection::close() {
  if (impl_) impl_->CloseNow();
}

bool Connection::closed() const { return !impl_ || impl_->fd < 0; }
bool Connection::readable() const { return impl_ && impl_->readable; }
bool Connection::writable() const { return impl_ && impl_->writable; }

std::pair<Connection, Connection> Pipe(bool duplex) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    RaiseOSError("socketpair", errno);
  }
  // Python uses pipe(2) for a one-way Pipe; a socketpair whose ends are flagged
  // read-only and write-only behaves the same and can also carry descriptors.
  Connection c1(fds[0], true, duplex);
  Connection c2(fds[1], duplex, true);
  const auto ring = internal::PipeRing::Create(duplex ? 2 : 1);
  c1.impl_->ring = ring;
  c1.impl_->side = 0;
  c2.impl_->ring = ring;
  c2.impl_->side = 1;
  return {std::move(c1), std::move(c2)};
}

namespace internal {

bool HasBufferedInput(const Connection& conn) {
  if (!conn.impl_ || conn.impl_->fd < 0 || !conn.impl_->readable) return false;
  return conn.impl_->buffered() > 0 ||
         (conn.impl_->ring && conn.impl_->RingPending());
}

int ConnectionAccess::RingFd(const Connection& conn) {
  return conn.impl_ && conn.impl_->ring ? conn.impl_->ring->fd() : -1;
}

int ConnectionAccess::RingSide(const Connection& conn) {
  return conn.impl_ && conn.impl_->ring ? conn.impl_->side : -1;
}

Connection ConnectionAccess::FromRing(int sock, int memfd, bool readable,
                                      bool writable, int side) {
  auto ring = internal::PipeRing::Attach(memfd);
  if (side != 0 && side != 1) {
    ::close(sock);
    throw ValueError("a pickled Pipe() end names no valid side");
  }
  Connection conn(sock, readable, writable);
  conn.impl_->ring = std::move(ring);
  conn.impl_->side = side;
  return conn;
}

void ConnectionAccess::SetReadDeadline(
    const Connection& conn,
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  if (conn.impl_) conn.impl_->read_deadline = deadline;
}

}  // namespace internal
}  // namespace multiprocessing::connection
