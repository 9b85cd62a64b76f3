#include "connection/pipe_ring.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "connection/socket_io.h"
#include "errors/errors.h"
#include "synchronize/internal/futex.h"
#include "synchronize/internal/membarrier.h"
#include "synchronize/internal/robust_mutex.h"

namespace multiprocessing::connection::internal {

using Clock = std::chrono::steady_clock;
using ::multiprocessing::internal::CpuRelax;
using ::multiprocessing::internal::FutexWakeAll;
using ::multiprocessing::internal::LockResult;
using ::multiprocessing::internal::RobustMutex;

namespace {

constexpr std::uint64_t kMagic = 0x474e4952'45504950;  // "PIPERING"
constexpr std::uint32_t kVersion = 2;
// Frames start on 8-byte boundaries, so a frame's header never wraps.
constexpr std::uint64_t kAlign = 8;
// A length above this cannot be a real message.
constexpr std::uint64_t kMaxFrameLength = std::uint64_t{1} << 40;
// A sender publishes a large frame in pieces of this size and a receiver frees
// space in pieces of this size, so the two copy at the same time.
constexpr std::uint64_t kPiece = PipeRing::kCapacity / 8;
// Busy-wait rounds before sleeping: a receiver that keeps up with a sender
// would otherwise sleep and be woken for every message. A round is one
// pause instruction (tens of nanoseconds).
constexpr int kWaitSpins = 400;
// After a receive that found its frame ready (a stream), the receiver waits
// this many rounds for the next frame before parking the doorbell token.
constexpr int kStreamSpins = 40;
// A sender waiting for space wakes this often to notice a vanished receiver.
constexpr double kSpaceCheckSeconds = 0.1;

}  // namespace

struct RingDirection {
  // Sender's side.
  alignas(64) RobustMutex write_lock;
  std::atomic<std::uint64_t> tail;
  std::atomic<std::uint64_t> bells_written;
  std::atomic<std::uint32_t> writing_frame;
  // Receiver's side.
  alignas(64) RobustMutex read_lock;
  std::atomic<std::uint64_t> head;
  std::atomic<std::uint64_t> bells_read;
  std::atomic<std::uint32_t> reading_frame;
  // Both.
  alignas(64) std::atomic<std::uint32_t> need_bell;
  std::atomic<std::uint32_t> writer_waiting;
  std::atomic<std::uint32_t> space_seq;
  std::atomic<std::uint32_t> broken;
};

struct RingShared {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t directions;
  std::uint64_t capacity;
  RingDirection dir[2];
};

namespace {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint32_t>) == 4);

constexpr std::size_t kDataOffset = (sizeof(RingShared) + 4095) & ~4095ul;

std::size_t MappingSize(int directions) {
  return kDataOffset +
         static_cast<std::size_t>(directions) * PipeRing::kCapacity;
}

[[noreturn]] void Broken(RingDirection& d, const char* what) {
  d.broken.store(1);
  throw OSError(0, absl::StrCat("the pipe is corrupt: ", what,
                                "; no further messages can be read from it"));
}

// Holds a robust, process-shared mutex. A holder that died leaves it to the
// next one, who learns whether the dead one was in the middle of a frame.
class RobustLock {
 public:
  explicit RobustLock(RobustMutex* m) : m_(m) {
    owner_died_ = ::multiprocessing::internal::Lock(m_, std::nullopt) ==
                  LockResult::kOwnerDied;
  }
  ~RobustLock() { ::multiprocessing::internal::Unlock(m_); }
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;
  bool owner_died() const { return owner_died_; }

 private:
  RobustMutex* m_;
  bool owner_died_ = false;
};

// Writes all of `data` to the doorbell socket.
void SendAll(int sock, const char* data, std::size_t n, const int* fds,
             std::size_t fd_count) {
  alignas(cmsghdr) char control[kFdControlSpace];
  while (n > 0) {
    iovec iov{const_cast<char*>(data), n};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd_count > 0) AttachFds(msg, control, fds, fd_count);
    const ssize_t k = fd_count > 0 ? ::sendmsg(sock, &msg, MSG_NOSIGNAL)
                                   : ::send(sock, data, n, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{sock, POLLOUT, 0};
        ::poll(&p, 1, -1);
        continue;
      }
      RaiseOSError("send", errno);
    }
    fd_count = 0;
    data += k;
    n -= static_cast<std::size_t>(k);
  }
}

bool WaitReadable(int sock, Deadline deadline) {
  return WaitFor(sock, POLLIN, deadline);
}

// One recvmsg of at most n bytes, blocking; descriptors that come with it are
// appended to `fds` (if null, closed). 0 at end of file.
std::size_t RecvSome(int sock, char* dst, std::size_t n,
                     std::vector<int>* fds) {
  for (;;) {
    const ssize_t k = RecvWithFds(sock, dst, n, 0, fds);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        WaitReadable(sock, std::nullopt);
        continue;
      }
      RaiseOSError("recvmsg", errno);
    }
    return static_cast<std::size_t>(k);
  }
}

// The sending half of one direction, for the duration of one Send().
// `cached_head` is this process's last view of the read position: it only
// grows, so a stale one merely underestimates the space, and the shared line
// the receiver writes is read only when the cached view runs out.
class Sender {
 public:
  Sender(RingDirection& d, char* data, int sock, std::uint64_t* cached_head)
      : d_(d), data_(data), sock_(sock), cached_head_(cached_head) {}

  void Start() { pos_ = published_ = d_.tail.load(std::memory_order_relaxed); }

  void Write(const char* src, std::uint64_t n) {
    while (n > 0) {
      const std::uint64_t want = std::min(n, kPiece);
      std::uint64_t free = Free(false);
      if (free < want) free = Free(true);
      if (free < want) {
        Publish();
        WaitForSpace();
        continue;
      }
      const std::uint64_t k = std::min({n, free, kPiece});
      const std::uint64_t offset = pos_ & (PipeRing::kCapacity - 1);
      const std::uint64_t first = std::min(k, PipeRing::kCapacity - offset);
      std::memcpy(data_ + offset, src, first);
      std::memcpy(data_, src + first, k - first);
      pos_ += k;
      src += k;
      n -= k;
      if (pos_ - published_ >= kPiece) Publish();
    }
  }

  // Makes everything written so far visible, ringing the doorbell if the
  // receiver parked the token.
  void Publish() {
    if (pos_ == published_) return;
    d_.tail.store(pos_, std::memory_order_seq_cst);
    published_ = pos_;
    if (d_.need_bell.load(std::memory_order_seq_cst) != 0 &&
        d_.need_bell.exchange(0, std::memory_order_seq_cst) != 0) {
      d_.bells_written.fetch_add(1, std::memory_order_seq_cst);
      SendAll(sock_, "B", 1, nullptr, 0);
    }
  }

 private:
  std::uint64_t Free(bool refresh) {
    if (refresh) *cached_head_ = d_.head.load(std::memory_order_seq_cst);
    const std::uint64_t used = pos_ - *cached_head_;
    if (used > PipeRing::kCapacity) {
      if (!refresh) return Free(true);
      Broken(d_, "the read position is invalid");
    }
    return PipeRing::kCapacity - used;
  }

  // Waits until half the ring is free (as the kernel wakes a blocked socket
  // writer only once a good share of its buffer is free: one wake-up per many
  // messages rather than one per message). A receiver that goes to sleep
  // frees everything first, so this never waits on an idle receiver.
  void WaitForSpace() {
    constexpr std::uint64_t kEnough = PipeRing::kCapacity / 2;
    for (int i = 0; i < kWaitSpins; ++i) {
      if (Free(true) >= kEnough) return;
      CpuRelax();
    }
    for (;;) {
      d_.writer_waiting.store(1, std::memory_order_seq_cst);
      const std::uint32_t seq = d_.space_seq.load(std::memory_order_seq_cst);
      if (Free(true) >= kEnough) return;
      if (d_.broken.load() != 0) Broken(d_, "a receiver died mid-message");
      ::multiprocessing::internal::FutexWait(
          &d_.space_seq, seq,
          ::multiprocessing::internal::DeadlineAfter(kSpaceCheckSeconds));
      if (Free(true) >= kEnough) return;
      // Nobody reads any more once every receiving end is closed.
      pollfd p{sock_, 0, 0};
      if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)) != 0) {
        RaiseOSError("send", EPIPE);
      }
    }
  }

  RingDirection& d_;
  char* data_;
  int sock_;
  std::uint64_t* cached_head_;
  std::uint64_t pos_ = 0;
  std::uint64_t published_ = 0;
};

enum class WaitResult { kReady, kEof, kTimeout };

// The receiving half of one direction, for the duration of one Receive().
class Receiver {
 public:
  // `cached_tail`: this process's last view of the write position, which
  // only grows (see Sender).
  Receiver(RingDirection& d, const char* data, int sock,
           std::uint64_t* cached_tail)
      : d_(d), data_(data), sock_(sock), cached_tail_(cached_tail) {
    pos_ = released_ = d_.head.load(std::memory_order_relaxed);
  }

  // Published bytes past the read position: those known, or if fewer than
  // `need`, a fresh count.
  std::uint64_t Available(std::uint64_t need = ~std::uint64_t{0}) const {
    std::uint64_t avail = *cached_tail_ - pos_;
    if (avail >= need && avail <= PipeRing::kCapacity) return avail;
    *cached_tail_ = d_.tail.load(std::memory_order_acquire);
    avail = *cached_tail_ - pos_;
    if (avail > PipeRing::kCapacity)
      Broken(d_, "the write position is invalid");
    return avail;
  }

  // Waits until `need` bytes past the read position are published (until
  // `deadline`, if one is given).
  WaitResult WaitFor(std::uint64_t need, Deadline deadline = std::nullopt) {
    if (Available(need) >= need) return WaitResult::kReady;
    ready_at_once_ = false;
    for (int i = 0; i < kWaitSpins; ++i) {
      CpuRelax();
      if (Available() >= need) return WaitResult::kReady;
    }
    for (;;) {
      if (d_.broken.load() != 0) Broken(d_, "a sender died mid-message");
      // About to sleep: hand the consumed space back and park the token, so
      // that the next publication rings.
      Release();
      Drain();
      const std::uint64_t avail = Available();
      if (avail >= need) return WaitResult::kReady;
      if (avail > 0) {
        // Part of what we need is published: the sender is in the middle of
        // writing it (the doorbell has rung already).
        if (PeerClosed()) return WaitResult::kEof;
        ::sched_yield();
        continue;
      }
      if (!WaitReadable(sock_, deadline)) return WaitResult::kTimeout;
      if (Available() >= need) return WaitResult::kReady;
      if (PeerClosed()) {
        return Available() >= need ? WaitResult::kReady : WaitResult::kEof;
      }
      if (Available() == 0 &&
          d_.bells_written.load(std::memory_order_seq_cst) ==
              d_.bells_read.load(std::memory_order_relaxed)) {
        Broken(d_, "bytes nobody announced arrived on the pipe's socket");
      }
    }
  }

  // Whether the socket is at end of file (every sending end closed).
  bool PeerClosed() {
    for (;;) {
      char c;
      const ssize_t k = ::recv(sock_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (k == 0) return true;
      if (k > 0) return false;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      RaiseOSError("recv", errno);
    }
  }

  // Copies `n` published bytes at the read position out and advances it.
  void CopyOut(char* dst, std::uint64_t n) {
    const std::uint64_t offset = pos_ & (PipeRing::kCapacity - 1);
    const std::uint64_t first = std::min(n, PipeRing::kCapacity - offset);
    std::memcpy(dst, data_ + offset, first);
    std::memcpy(dst + first, data_, n - first);
    pos_ += n;
  }

  // The `n` bytes at the read position if they are published and contiguous.
  const char* Contiguous(std::uint64_t n) const {
    const std::uint64_t offset = pos_ & (PipeRing::kCapacity - 1);
    if (offset + n > PipeRing::kCapacity || Available(n) < n) return nullptr;
    return data_ + offset;
  }
  void Skip(std::uint64_t n) { pos_ += n; }
  // Bytes from the read position to the end of the ring's memory.
  std::uint64_t ToWrap() const {
    return PipeRing::kCapacity - (pos_ & (PipeRing::kCapacity - 1));
  }

  // Hands the bytes read so far back to the sender.
  void Release() {
    if (pos_ == released_) return;
    d_.head.store(pos_, std::memory_order_seq_cst);
    released_ = pos_;
    if (d_.writer_waiting.load(std::memory_order_seq_cst) != 0 &&
        d_.tail.load(std::memory_order_seq_cst) - pos_ <=
            PipeRing::kCapacity / 2 &&
        d_.writer_waiting.exchange(0, std::memory_order_seq_cst) != 0) {
      d_.space_seq.fetch_add(1, std::memory_order_seq_cst);
      FutexWakeAll(&d_.space_seq);
    }
  }
  void ReleaseIfPiece() {
    if (pos_ - released_ >= kPiece) Release();
  }

  // Parks the doorbell token and, if the ring is empty, reads every doorbell
  // byte counted so far, so that the socket is readable only once something
  // new is published. Requires the read position to be released.
  void Drain() {
    d_.need_bell.store(1, std::memory_order_seq_cst);
    const std::uint64_t written =
        d_.bells_written.load(std::memory_order_seq_cst);
    if (d_.tail.load(std::memory_order_seq_cst) != pos_) return;
    std::uint64_t read = d_.bells_read.load(std::memory_order_relaxed);
    if (written - read > (std::uint64_t{1} << 32))
      Broken(d_, "the doorbell count is invalid");
    char buf[256];
    while (read < written) {
      const std::size_t want = static_cast<std::size_t>(
          std::min<std::uint64_t>(written - read, sizeof buf));
      const std::size_t k = RecvSome(sock_, buf, want, nullptr);
      if (k == 0) break;  // the sender died before ringing; EOF says the rest
      read += k;
    }
    d_.bells_read.store(read, std::memory_order_relaxed);
  }

  // Reads doorbell bytes up to the one that carries a frame's descriptors.
  void TakeFds(std::vector<int>* out) {
    std::vector<int> fds;
    std::uint64_t read = d_.bells_read.load(std::memory_order_relaxed);
    for (;;) {
      char c;
      const std::size_t k = RecvSome(sock_, &c, 1, &fds);
      if (k == 0)
        throw OSError(
            0, "got end of file during message: the peer closed mid-message");
      ++read;
      if (!fds.empty()) break;
    }
    d_.bells_read.store(read, std::memory_order_relaxed);
    if (out != nullptr) {
      out->insert(out->end(), fds.begin(), fds.end());
    } else {
      for (int fd : fds) ::close(fd);
    }
  }

  // The end of a receive: if the ring is now empty, wait a moment for more
  // when the messages come as a stream, then park the token.
  void Finish() {
    Release();
    if (Available() != 0) return;
    if (ready_at_once_) {
      for (int i = 0; i < kStreamSpins; ++i) {
        CpuRelax();
        if (Available() != 0) return;
      }
    }
    Drain();
  }

  std::uint64_t pos() const { return pos_; }

 private:
  RingDirection& d_;
  const char* data_;
  int sock_;
  std::uint64_t* cached_tail_;
  std::uint64_t pos_;
  std::uint64_t released_;
  // Whether the frame was there when the receive began (a stream).
  bool ready_at_once_ = true;
};

}  // namespace

std::shared_ptr<PipeRing> PipeRing::Create(int directions) {
  const int fd = ::memfd_create("multiprocessing-pipe", MFD_CLOEXEC);
  if (fd < 0) RaiseOSError("memfd_create", errno);
  const std::size_t size = MappingSize(directions);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int e = errno;
    ::close(fd);
    RaiseOSError("ftruncate", e);
  }
  void* mapping =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) {
    const int e = errno;
    ::close(fd);
    RaiseOSError("mmap", e);
  }
  auto* shared = new (mapping) RingShared{};
  shared->magic = kMagic;
  shared->version = kVersion;
  shared->directions = static_cast<std::uint32_t>(directions);
  shared->capacity = kCapacity;
  for (RingDirection& d : shared->dir) {
    d.need_bell.store(1);
  }
  return std::shared_ptr<PipeRing>(new PipeRing(fd, mapping, size));
}

std::shared_ptr<PipeRing> PipeRing::Attach(int memfd) {
  struct stat st;
  if (::fstat(memfd, &st) != 0) {
    const int e = errno;
    ::close(memfd);
    RaiseOSError("fstat", e);
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size != MappingSize(1) && size != MappingSize(2)) {
    ::close(memfd);
    throw ValueError("the descriptor received for a Pipe() is not a pipe ring");
  }
  void* mapping =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (mapping == MAP_FAILED) {
    const int e = errno;
    ::close(memfd);
    RaiseOSError("mmap", e);
  }
  std::shared_ptr<PipeRing> ring(new PipeRing(memfd, mapping, size));
  const RingShared& s = *ring->shared_;
  if (s.magic != kMagic || s.version != kVersion || s.capacity != kCapacity ||
      (s.directions != 1 && s.directions != 2) ||
      size != MappingSize(static_cast<int>(s.directions))) {
    throw ValueError("the descriptor received for a Pipe() is not a pipe ring");
  }
  ring->directions_ = static_cast<int>(s.directions);
  return ring;
}

PipeRing::PipeRing(int fd, void* mapping, std::size_t size)
    : fd_(fd),
      mapping_(mapping),
      size_(size),
      shared_(static_cast<RingShared*>(mapping)),
      directions_(static_cast<int>(shared_->directions)) {
  // The rings' mutexes release with plain stores (robust_mutex.h).
  ::multiprocessing::internal::EnableLightFences();
}

PipeRing::~PipeRing() {
  ::munmap(mapping_, size_);
  ::close(fd_);
}

RingDirection& PipeRing::Direction(int dir) const { return shared_->dir[dir]; }

char* PipeRing::Data(int dir) const {
  return static_cast<char*>(mapping_) + kDataOffset +
         static_cast<std::size_t>(dir) * kCapacity;
}

void PipeRing::Send(int dir, int sock, std::string_view payload,
                    const std::vector<int>* fds) {
  RingDirection& d = Direction(dir);
  RobustLock lock(&d.write_lock);
  if (lock.owner_died() && d.writing_frame.load() != 0) {
    d.broken.store(1);
    // Wake a receiver waiting for the rest of the dead sender's frame.
    d.bells_written.fetch_add(1);
    SendAll(sock, "B", 1, nullptr, 0);
  }
  if (d.broken.load() != 0) {
    throw OSError(0,
                  "the pipe is corrupt: a process died in the middle of a "
                  "message; no further messages can be sent on it");
  }
  const bool with_fds = fds != nullptr && !fds->empty();
  const std::uint64_t header =
      (static_cast<std::uint64_t>(payload.size()) << 1) | (with_fds ? 1 : 0);
  const char pad[kAlign] = {};
  Sender sender(d, Data(dir), sock, &cached_head_[dir]);
  sender.Start();
  d.writing_frame.store(1, std::memory_order_relaxed);
  sender.Write(reinterpret_cast<const char*>(&header), sizeof header);
  sender.Write(payload.data(), payload.size());
  sender.Write(pad, (kAlign - payload.size() % kAlign) % kAlign);
  d.writing_frame.store(0, std::memory_order_relaxed);
  sender.Publish();
  if (with_fds) {
    d.bells_written.fetch_add(2, std::memory_order_seq_cst);
    SendAll(sock, "FB", 2, fds->data(), fds->size());
  }
}

bool PipeRing::Receive(int dir, int sock, RingSink& sink, std::vector<int>* fds,
                       std::optional<std::uint64_t> maxlength,
                       Deadline deadline) {
  RingDirection& d = Direction(dir);
  RobustLock lock(&d.read_lock);
  if (lock.owner_died() && d.reading_frame.load() != 0) d.broken.store(1);
  if (d.broken.load() != 0)
    Broken(d, "a process died in the middle of a message");
  Receiver r(d, Data(dir), sock, &cached_tail_[dir]);
  switch (r.WaitFor(sizeof(std::uint64_t), deadline)) {
    case WaitResult::kTimeout:
      return false;
    case WaitResult::kEof:
      if (r.Available() != 0)
        throw OSError(
            0, "got end of file during message: the peer closed mid-header");
      throw EOFError("the peer closed the connection; nothing left to receive");
    case WaitResult::kReady:
      break;
  }
  std::uint64_t header;
  r.CopyOut(reinterpret_cast<char*>(&header), sizeof header);
  const std::uint64_t size = header >> 1;
  if (size > kMaxFrameLength) {
    Broken(d, absl::StrCat("a frame announces ", size, " bytes").c_str());
  }
  if (maxlength && size > *maxlength) {
    throw RingBadLength{absl::StrCat(
        "the message has ", size, " bytes, more than maxlength ", *maxlength)};
  }
  d.reading_frame.store(1, std::memory_order_relaxed);
  const std::uint64_t padded = (size + kAlign - 1) & ~(kAlign - 1);
  const auto truncated = [&d] {
    d.broken.store(1);
    throw OSError(0,
                  "got end of file during message: the peer closed "
                  "mid-message");
  };
  if ((header & 1) != 0) r.TakeFds(fds);
  sink.Begin(size);
  bool whole = false;
  std::exception_ptr error;
  if (size <= kPiece) {
    if (r.WaitFor(padded) != WaitResult::kReady) truncated();
    if (const char* p = r.Contiguous(size)) {
      try {
        whole = sink.Whole(std::string_view(p, size));
      } catch (...) {
        whole = true;
        error = std::current_exception();
      }
      if (whole) r.Skip(padded);
    }
  }
  if (!whole) {
    std::uint64_t left = size;
    while (left > 0) {
      if (r.WaitFor(1) != WaitResult::kReady) truncated();
      const std::uint64_t n = std::min({left, r.Available(1), r.ToWrap()});
      sink.Append(r.Contiguous(n), n);
      r.Skip(n);
      left -= n;
      r.ReleaseIfPiece();
    }
    if (padded > size) {
      if (r.WaitFor(padded - size) != WaitResult::kReady) truncated();
      r.Skip(padded - size);
    }
  }
  d.reading_frame.store(0, std::memory_order_relaxed);
  r.Finish();
  if (error) std::rethrow_exception(error);
  if (!whole) sink.End();
  return true;
}

bool PipeRing::Pending(int dir) const {
  const RingDirection& d = Direction(dir);
  return d.tail.load(std::memory_order_acquire) !=
             d.head.load(std::memory_order_acquire) ||
         d.broken.load() != 0;
}

}  // namespace multiprocessing::connection::internal
