#include "queues/internal/shm_ring.h"

#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "connection/socket_io.h"
#include "errors/errors.h"
#include "logging/logging.h"
#include "synchronize/internal/futex.h"
#include "synchronize/internal/membarrier.h"
#include "synchronize/internal/robust_mutex.h"

namespace multiprocessing::queues::internal {

using ::multiprocessing::internal::CpuRelax;
using ::multiprocessing::internal::FutexWait;
using ::multiprocessing::internal::FutexWakeAll;
using ::multiprocessing::internal::HeavyFence;
using ::multiprocessing::internal::LightFence;
using ::multiprocessing::internal::LockResult;
using ::multiprocessing::internal::RobustMutex;

namespace {
constexpr uint64_t kMagic = 0x6d702d72696e6706;  // "mp-ring" v6
// A frame is its length, a seal word, and the payload, padded to a cache line.
// The seal is written last: a consumer sees that a frame is complete by
// reading the seal at its head, so it never reads the producers' `tail` (whose
// cache line would otherwise travel between the cores twice per frame).
//
// Frames start on a cache line of their own so that a consumer waiting for the
// next frame (reading its first line) never holds a line that the producer is
// still filling with the end of the previous one; and the producer writes that
// first line last, so it moves to the consumer once, complete.
constexpr size_t kFrameHeader = 2 * sizeof(uint64_t);
constexpr uint64_t kLine = 64;
// Beyond any frame a queue can hold: a larger length means the memory is not a
// ring's.
constexpr uint64_t kMaxFrame = uint64_t{1} << 46;
// In a frame's length word: the frame carries descriptors, and its payload
// starts with the sequence number of their message (see shm_ring.h).
constexpr uint64_t kFdsFlag = uint64_t{1} << 63;
constexpr size_t kSeqSize = sizeof(uint64_t);
// The bytes of a frame whose payload is `size` bytes, with descriptors or not.
constexpr uint64_t FramedSize(uint64_t size, bool with_fds) {
  return size + (with_fds ? kSeqSize : 0);
}

// The ring bytes a frame of `size` bytes of payload takes.
constexpr uint64_t FrameSpan(uint64_t size) {
  return (kFrameHeader + size + kLine - 1) & ~(kLine - 1);
}
// The free bytes a frame written whole needs: its span, and the next frame's
// header, whose seal it clears.
constexpr uint64_t RoomFor(uint64_t size) {
  return FrameSpan(size) + kFrameHeader;
}
// The seal of the frame at `position`: never 0 (fresh memory), and never a
// stale value, because each producer zeroes the next frame's seal before
// sealing its own.
constexpr uint64_t SealOf(uint64_t position) { return ~position; }
// Within a batch, sleeping consumers are woken (a fence and a read of the
// sleepers' count) once per this many bytes of small frames and at the end; a
// running consumer sees each frame at once by its seal.
constexpr uint64_t kPublishEvery = 64 * 1024;

timespec ToTimespec(std::chrono::steady_clock::time_point t) {
  auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch())
          .count();
  if (ns < 0) ns = 0;
  return timespec{static_cast<time_t>(ns / 1000000000),
                  static_cast<long>(ns % 1000000000)};
}

std::string_view BytesOf(std::string_view frame) { return frame; }
std::string_view BytesOf(const FdFrame& frame) { return frame.bytes; }
std::span<const int> FdsOf(std::string_view) { return {}; }
std::span<const int> FdsOf(const FdFrame& frame) { return frame.fds; }

[[noreturn]] void RaiseFdsLost() {
  throw OSError(
      EBADMSG,
      "a queue item's file descriptors were lost (a consumer died while "
      "taking them, or they could not be sent); the item is dropped");
}

[[noreturn]] void RaiseNoChannel() {
  throw TypeError(
      "this ring cannot carry file descriptors (it was made without a "
      "descriptor channel)");
}

void CloseChannel(int send, int recv) {
  if (send >= 0) close(send);
  if (recv >= 0) close(recv);
}

// The same deadline for futex.h (steady_clock is CLOCK_MONOTONIC).
::multiprocessing::internal::Deadline Until(Deadline deadline) {
  if (!deadline) return std::nullopt;
  return ToTimespec(*deadline);
}

}  // namespace

// A count that processes can wait on (see WaitUntil and Wake).
struct SharedCounter {
  std::atomic<int64_t> value;
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> waiters;
};

struct RingHeader {
  uint64_t magic;
  uint64_t capacity;

  // Producers' side. `tail` counts bytes published since creation.
  alignas(64) RobustMutex write_lock;
  std::atomic<uint64_t> tail;
  std::atomic<uint32_t> data_seq;
  std::atomic<uint32_t> data_waiters;
  // A frame larger than the ring being streamed in: where it starts and ends
  // (0 when none), so that the next producer can finish it if its producer
  // dies; under write_lock.
  uint64_t write_stream_start;
  uint64_t write_stream_end;
  // The sequence number of the next frame with descriptors; under write_lock.
  uint64_t fd_seq;
  // Frames sealed in the ring (a streamed one from its header on), counted
  // under write_lock with a plain store: qsize() counts what the ring holds,
  // not what producers promised (a producer may die with items in its
  // feeder).
  std::atomic<int64_t> frames_in;
  // 1 + the start of the last streamed frame whose producer died before
  // finishing it: its consumer drops it. Written under write_lock, before the
  // frame's end is published.
  std::atomic<uint64_t> aborted_stream;

  // Consumers' side. `head` counts bytes consumed since creation.
  alignas(64) RobustMutex read_lock;
  std::atomic<uint64_t> head;
  std::atomic<uint32_t> space_seq;
  std::atomic<uint32_t> space_waiters;
  // A producer waiting for room sleeps until `head` reaches this, so that it is
  // woken once per large stretch of consumption rather than once per frame.
  std::atomic<uint64_t> space_target;
  // A frame larger than the ring being streamed out: its start, end (0 when
  // none) and length word, and how many payload bytes are already in the
  // spill (see Spill). All under read_lock; `spill_done` is stored before
  // `head` moves past those bytes, so that the next consumer resumes where a
  // consumer that died left off and the item is not lost.
  uint64_t read_stream_start;
  std::atomic<uint64_t> read_stream_end;
  uint64_t read_stream_word;
  std::atomic<uint64_t> spill_done;
  // Frames taken, counted under read_lock.
  std::atomic<int64_t> gets;

  // Items put through AcquireSlot (every put of a bounded queue). Each count is
  // written by one side only, so counting costs no cache-line transfer
  // between producers and consumers; `slots` is only the place where
  // producers wait for room.
  alignas(64) std::atomic<int64_t> puts;
  alignas(64) SharedCounter slots;
  alignas(64) SharedCounter unfinished;
};

namespace {

// Takes `m` (a robust mutex: see robust_mutex.h) before `deadline`.
LockResult LockRing(RobustMutex* m, Deadline deadline) {
  return ::multiprocessing::internal::Lock(m, Until(deadline));
}

constexpr int kSpins = 4000;  // ~20-50 us

// Waits on `seq` after registering in `waiters`, unless `ready` already holds
// (see Wake).
template <class Ready>
bool WaitUntil(std::atomic<uint32_t>* seq, std::atomic<uint32_t>* waiters,
               Ready ready, Deadline deadline) {
  // Spin briefly first: a peer streaming items usually makes the condition true
  // within microseconds, and sleeping costs the waiter and the waker a system
  // call each.
  for (int i = 0; i < kSpins; ++i) {
    if (ready()) return true;
    CpuRelax();
  }
  while (!ready()) {
    waiters->fetch_add(1);
    HeavyFence();
    uint32_t seen = seq->load();
    bool ok = true;
    if (!ready()) ok = FutexWait(seq, seen, Until(deadline));
    waiters->fetch_sub(1);
    if (!ok) return ready();
  }
  return true;
}

// Called after the state change. The fences order the state change before the
// read of `waiters` (and the waiter's registration before its check of the
// state), so either the waiter registered first and is woken, or it will see
// the new state before sleeping; the shared `seq` word is only touched when
// somebody sleeps.
void Wake(std::atomic<uint32_t>* seq, std::atomic<uint32_t>* waiters) {
  LightFence();
  if (waiters->load(std::memory_order_relaxed) != 0) {
    seq->fetch_add(1);
    FutexWakeAll(seq);
  }
}

}  // namespace

std::shared_ptr<ShmRing> ShmRing::Create(size_t capacity, bool fd_channel) {
  capacity = std::bit_ceil(std::max<size_t>(capacity, 4096));
  int channel[2] = {-1, -1};
  if (fd_channel &&
      socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) {
    RaiseOSError("socketpair", errno);
  }
  int fd = memfd_create("mp-queue", MFD_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    CloseChannel(channel[0], channel[1]);
    RaiseOSError("memfd_create", err);
  }
  const size_t size = sizeof(RingHeader) + capacity;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    close(fd);
    CloseChannel(channel[0], channel[1]);
    RaiseOSError("ftruncate", err);
  }
  void* mapping =
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) {
    int err = errno;
    close(fd);
    CloseChannel(channel[0], channel[1]);
    RaiseOSError("mmap", err);
  }
  auto* header = new (mapping) RingHeader();
  header->capacity = capacity;
  std::atomic_thread_fence(std::memory_order_release);
  header->magic = kMagic;
  return std::shared_ptr<ShmRing>(
      new ShmRing(fd, mapping, size, channel[0], channel[1]));
}

std::shared_ptr<ShmRing> ShmRing::Attach(int fd, int channel_send,
                                         int channel_recv) {
  auto release = [&] {
    close(fd);
    CloseChannel(channel_send, channel_recv);
  };
  auto fail = [&](void* mapping, size_t size) {
    if (mapping != nullptr) munmap(mapping, size);
    release();
    throw ValueError(
        absl::StrCat("fd ", fd, " does not hold a queue's buffer"));
  };
  struct stat st;
  if (fstat(fd, &st) != 0 ||
      static_cast<size_t>(st.st_size) < sizeof(RingHeader) + 4096) {
    fail(nullptr, 0);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* mapping =
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) {
    int err = errno;
    release();
    RaiseOSError("mmap", err);
  }
  auto* header = static_cast<RingHeader*>(mapping);
  // The file may be longer: the spill follows the ring.
  if (header->magic != kMagic || header->capacity + sizeof(RingHeader) > size) {
    fail(mapping, size);
  }
  return std::shared_ptr<ShmRing>(
      new ShmRing(fd, mapping, size, channel_send, channel_recv));
}

ShmRing::ShmRing(int fd, void* mapping, size_t mapping_size, int channel_send,
                 int channel_recv)
    : fd_(fd),
      mapping_(mapping),
      mapping_size_(mapping_size),
      header_(static_cast<RingHeader*>(mapping)),
      data_(static_cast<char*>(mapping) + sizeof(RingHeader)),
      capacity_(header_->capacity),
      channel_send_(channel_send),
      channel_recv_(channel_recv) {
  ::multiprocessing::internal::EnableLightFences();
}

ShmRing::~ShmRing() {
  if (spill_ != nullptr) munmap(spill_, spill_size_);
  munmap(mapping_, mapping_size_);
  close(fd_);
  CloseChannel(channel_send_, channel_recv_);
}

void ShmRing::CopyIn(uint64_t position, const char* data, size_t size) {
  size_t offset = position & (capacity_ - 1);
  size_t first = std::min(size, capacity_ - offset);
  std::memcpy(data_ + offset, data, first);
  std::memcpy(data_, data + first, size - first);
}

void ShmRing::CopyOut(uint64_t position, char* data, size_t size) const {
  size_t offset = position & (capacity_ - 1);
  size_t first = std::min(size, capacity_ - offset);
  std::memcpy(data, data_ + offset, first);
  std::memcpy(data + first, data_, size - first);
}

uint64_t* ShmRing::Word64(uint64_t position) const {
  // Frames are 8-byte aligned and the capacity is a power of two, so a word
  // never wraps.
  return reinterpret_cast<uint64_t*>(data_ + (position & (capacity_ - 1)));
}

bool ShmRing::FrameReady(uint64_t position) const {
  return __atomic_load_n(Word64(position + 8), __ATOMIC_ACQUIRE) ==
         SealOf(position);
}

bool ShmRing::Streamed(uint64_t size) const {
  // A frame is written whole only if it fits with the next frame's header.
  return size > capacity_ || RoomFor(size) > capacity_;
}

bool ShmRing::HasSpace(uint64_t tail, uint64_t needed) {
  // Another producer process may have filled the ring since this one last
  // looked: the cached head can be more than a lap behind.
  if (needed <= capacity_ - std::min<uint64_t>(tail - cached_head_, capacity_))
    return true;
  cached_head_ = header_->head.load(std::memory_order_acquire);
  return capacity_ - (tail - cached_head_) >= needed;
}

void ShmRing::WriteSmall(uint64_t tail, std::string_view frame,
                         uint64_t flags) {
  const uint64_t size = frame.size();
  const uint64_t end = tail + FrameSpan(size);
  // The payload after the first line, then the first line (the part a waiting
  // consumer reads) in one burst of stores.
  const uint64_t first = std::min<uint64_t>(size, kLine - kFrameHeader);
  if (size > first) {
    CopyIn(tail + kLine, frame.data() + first, size - first);
  }
  // The next frame's seal still holds whatever an earlier lap left there:
  // clear it before this frame becomes visible.
  __atomic_store_n(Word64(end + 8), 0, __ATOMIC_RELAXED);
  std::memcpy(data_ + ((tail + kFrameHeader) & (capacity_ - 1)), frame.data(),
              first);
  *Word64(tail) = size | flags;
  __atomic_store_n(Word64(tail + 8), SealOf(tail), __ATOMIC_RELEASE);
  header_->tail.store(end, std::memory_order_release);
}

bool ShmRing::WaitForSpace(uint64_t tail, uint64_t needed, Deadline deadline) {
  RingHeader* h = header_;
  auto ready = [&] { return HasSpace(tail, needed); };
  if (ready()) return true;
  // Ask to be woken when a quarter of the ring is free (or the frame fits, if
  // larger); no spinning, as consumers take a while to free that much. The
  // sleep is sliced so that a consumer that stops after freeing just enough for
  // this frame cannot leave the producer asleep for long.
  const uint64_t want = std::max<uint64_t>(needed, capacity_ / 4);
  h->space_target.store(tail + want - capacity_);
  constexpr auto kSlice = std::chrono::milliseconds(5);
  while (!ready()) {
    auto until = std::chrono::steady_clock::now() + kSlice;
    if (deadline && *deadline < until) until = *deadline;
    h->space_waiters.fetch_add(1);
    HeavyFence();
    uint32_t seen = h->space_seq.load();
    if (!ready()) FutexWait(&h->space_seq, seen, ToTimespec(until));
    h->space_waiters.fetch_sub(1);
    if (deadline && std::chrono::steady_clock::now() >= *deadline) {
      return ready();
    }
  }
  return true;
}

void ShmRing::CountFrameIn() {
  // Under write_lock: a plain store, no atomic instruction.
  std::atomic<int64_t>& n = header_->frames_in;
  n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void ShmRing::Publish(uint64_t tail) {
  header_->tail.store(tail, std::memory_order_release);
  Wake(&header_->data_seq, &header_->data_waiters);
}

uint64_t ShmRing::StreamIn(uint64_t tail, uint64_t end, const char* data,
                           uint64_t data_size) {
  // After `data_size` bytes of `data`, the ring is only passed over up to
  // `end` (the padding, or the rest of a dead producer's frame, which its
  // consumer drops): nobody reads those bytes.
  while (tail < end) {
    uint64_t chunk = std::min<uint64_t>(end - tail, capacity_ / 4);
    if (data_size > 0) chunk = std::min(chunk, data_size);
    const bool last = tail + chunk == end;
    // The last piece also makes room for the next frame's seal, cleared
    // before the frame's end is published.
    WaitForSpace(tail, chunk + (last ? kFrameHeader : 0), std::nullopt);
    if (data_size > 0) {
      CopyIn(tail, data, chunk);
      data += chunk;
      data_size -= chunk;
    }
    tail += chunk;
    if (last) __atomic_store_n(Word64(end + 8), 0, __ATOMIC_RELAXED);
    Publish(tail);
  }
  return tail;
}

uint64_t ShmRing::Recover(uint64_t tail) {
  RingHeader* h = header_;
  while (true) {
    if (h->write_stream_end != 0) {
      // A producer died streaming a large frame. If its header was sealed, a
      // consumer may be reading it: mark it aborted and pass over the rest,
      // so that its consumer drops it and the frames after it stay readable.
      // Otherwise nobody saw it.
      const uint64_t start = h->write_stream_start;
      if (FrameReady(start)) {
        const uint64_t from = std::max(tail, start + kFrameHeader);
        if (from < h->write_stream_end) {
          h->aborted_stream.store(start + 1, std::memory_order_relaxed);
          tail = StreamIn(from, h->write_stream_end, nullptr, 0);
        }
      } else {
        tail = start;
      }
      h->write_stream_end = 0;
      continue;
    }
    // A producer died after sealing a frame but before moving `tail` past it.
    if (!FrameReady(tail)) return tail;
    uint64_t size = *Word64(tail) & ~kFdsFlag;
    if (Streamed(size)) {
      h->write_stream_start = tail;
      h->write_stream_end = tail + FrameSpan(size);
    } else {
      Publish(tail += FrameSpan(size));
    }
  }
}

size_t ShmRing::Write(std::span<const std::string> frames, Deadline deadline) {
  return WriteFrames(frames, deadline);
}

size_t ShmRing::Write(std::span<const FdFrame> frames, Deadline deadline) {
  if (channel_send_ < 0) {
    for (const FdFrame& frame : frames) {
      if (!frame.fds.empty()) RaiseNoChannel();
    }
  }
  return WriteFrames(frames, deadline);
}

bool ShmRing::SendFds(std::span<const int> fds, std::string_view bytes,
                      bool wait, std::string* framed, int* error) {
  // The number is claimed before sending: if this process dies in between,
  // nobody reuses it, and its message (if sent) is skipped as an orphan.
  const uint64_t seq = header_->fd_seq++;
  framed->assign(reinterpret_cast<const char*>(&seq), kSeqSize);
  framed->append(bytes.data(), bytes.size());
  *error = 0;
  if (fds.size() > ::multiprocessing::connection::internal::kMaxFdsPerMessage) {
    *error = EINVAL;
  } else {
    uint64_t data = seq;
    iovec iov{&data, sizeof data};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char
        control[::multiprocessing::connection::internal::kFdControlSpace];
    ::multiprocessing::connection::internal::AttachFds(msg, control, fds.data(),
                                                       fds.size());
    while (sendmsg(channel_send_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && wait) {
        ::multiprocessing::connection::internal::WaitFor(channel_send_, POLLOUT,
                                                         std::nullopt);
        continue;
      }
      if (errno == EAGAIN) return false;
      *error = errno;
      break;
    }
  }
  // On another error the frame still goes out, without a message, and its
  // consumer gets OSError for it.
  return true;
}

bool ShmRing::RecvFds(uint64_t seq, std::vector<int>* fds) {
  while (true) {
    uint64_t next;
    ssize_t n =
        recv(channel_recv_, &next, sizeof next, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // gone (or every sender closed)
    if (n == sizeof next && next > seq) return false;
    // This frame's message, or an older one whose frame is gone (or that
    // nobody wrote): take it, keeping only the right descriptors.
    char data[sizeof next];
    const bool ours = n == sizeof next && next == seq;
    ::multiprocessing::connection::internal::RecvWithFds(
        channel_recv_, data, sizeof data, MSG_DONTWAIT, ours ? fds : nullptr);
    if (ours) return true;
  }
}

template <class Frame>
size_t ShmRing::WriteFrames(std::span<const Frame> frames, Deadline deadline) {
  RingHeader* h = header_;
  if (LockRing(&h->write_lock, deadline) == LockResult::kTimeout) return 0;
  uint64_t tail = Recover(h->tail.load(std::memory_order_relaxed));
  uint64_t published = tail;
  size_t written = 0;
  std::string framed;
  for (const auto& frame : frames) {
    std::string_view bytes = BytesOf(frame);
    uint64_t flags = 0;
    if (std::span<const int> fds = FdsOf(frame); !fds.empty()) {
      int error;
      if (!SendFds(fds, bytes, /*wait=*/false, &framed, &error)) {
        // The socket is full of earlier frames' messages: let sleeping
        // consumers see those frames before waiting for room.
        if (tail != published) Publish(published = tail);
        SendFds(fds, bytes, /*wait=*/true, &framed, &error);
      }
      if (error != 0) {
        ::multiprocessing::get_logger().warning(absl::StrCat(
            "a queue item's file descriptors could not be sent (",
            std::strerror(error), "); its consumer will get OSError"));
      }
      bytes = framed;
      flags = kFdsFlag;
    }
    const uint64_t size = bytes.size();
    if (!Streamed(size)) {
      const uint64_t needed = RoomFor(size);
      if (!HasSpace(tail, needed)) {
        // Full: wake sleeping consumers for what is written before waiting
        // for them to make room.
        if (tail != published) Publish(published = tail);
        WaitForSpace(tail, needed, std::nullopt);
      }
      WriteSmall(tail, bytes, flags);
      CountFrameIn();
      tail += FrameSpan(size);
      // Consumers see each frame at once by its seal; waking sleepers (a
      // fence and a shared read) is done once per stretch.
      if (tail - published >= kPublishEvery) Publish(published = tail);
    } else {
      // Larger than the ring: stream it through in pieces as the consumer
      // frees space.
      if (tail != published) Publish(published = tail);
      WaitForSpace(tail, kFrameHeader, std::nullopt);
      h->write_stream_start = tail;
      h->write_stream_end = tail + FrameSpan(size);
      *Word64(tail) = size | flags;
      __atomic_store_n(Word64(tail + 8), SealOf(tail), __ATOMIC_RELEASE);
      // Counted from its header on: a consumer takes it, whole or aborted.
      CountFrameIn();
      Publish(tail += kFrameHeader);
      tail = StreamIn(tail, h->write_stream_end, bytes.data(), size);
      h->write_stream_end = 0;
      published = tail;
    }
    ++written;
  }
  if (tail != published) Publish(tail);
  ::multiprocessing::internal::Unlock(&h->write_lock);
  return written;
}

bool ShmRing::TryWrite(std::string_view frame, std::span<const int> fds) {
  RingHeader* h = header_;
  if (!fds.empty() && channel_send_ < 0) RaiseNoChannel();
  const uint64_t size = FramedSize(frame.size(), !fds.empty());
  if (Streamed(size)) return false;
  // A dead holder's mutex is left to WriteFrames, which repairs the ring.
  if (!::multiprocessing::internal::TryLock(&h->write_lock)) return false;
  uint64_t tail = h->tail.load(std::memory_order_relaxed);
  bool fits = h->write_stream_end == 0 && !FrameReady(tail) &&
              HasSpace(tail, RoomFor(size));
  uint64_t flags = 0;
  if (fits && !fds.empty()) {
    // Failures (a full socket, or worse) are left to WriteFrames.
    thread_local std::string framed;
    int error;
    fits = SendFds(fds, frame, /*wait=*/false, &framed, &error) && error == 0;
    frame = framed;
    flags = kFdsFlag;
  }
  if (fits) {
    WriteSmall(tail, frame, flags);
    CountFrameIn();
    Wake(&h->data_seq, &h->data_waiters);
  }
  ::multiprocessing::internal::Unlock(&h->write_lock);
  return fits;
}

bool ShmRing::WaitForRoom(size_t size, bool with_fds,
                          std::chrono::nanoseconds patience) {
  size = FramedSize(size, with_fds);
  if (Streamed(size)) return false;
  const RingHeader* h = header_;
  const uint64_t needed = RoomFor(size);
  const uint64_t want = std::max<uint64_t>(needed, capacity_ / 4);
  // Without the producers' lock: `head` is read before `tail`, so that the
  // difference is never less than the ring holds (a stale `head` only makes
  // it look fuller).
  auto free_bytes = [&] {
    uint64_t head = h->head.load(std::memory_order_acquire);
    uint64_t used = h->tail.load(std::memory_order_acquire) - head;
    return used <= capacity_ ? capacity_ - used : 0;
  };
  const auto until = std::chrono::steady_clock::now() + patience;
  while (free_bytes() < want) {
    if (std::chrono::steady_clock::now() >= until) {
      return free_bytes() >= needed;
    }
    // A consumer frees that much in a few hundred microseconds at most;
    // reading `head` (the consumer's line) about once a microsecond costs it
    // nothing.
    for (int i = 0; i < 32; ++i) CpuRelax();
  }
  return true;
}

char* ShmRing::Spill(uint64_t size) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t length = std::max<size_t>((size + page - 1) & ~(page - 1), page);
  if (spill_ != nullptr && spill_size_ >= length) return spill_;
  // The spill lives in the ring's memfd after the ring, so that every process
  // that holds the ring can map it; the file only grows (under read_lock).
  const off_t offset = static_cast<off_t>(
      (sizeof(RingHeader) + capacity_ + page - 1) & ~(page - 1));
  struct stat st;
  if (fstat(fd_, &st) != 0) RaiseOSError("fstat", errno);
  if (st.st_size < offset + static_cast<off_t>(length) &&
      ftruncate(fd_, offset + static_cast<off_t>(length)) != 0) {
    RaiseOSError("ftruncate", errno);
  }
  void* p =
      mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, offset);
  if (p == MAP_FAILED) RaiseOSError("mmap", errno);
  if (spill_ != nullptr) munmap(spill_, spill_size_);
  spill_ = static_cast<char*>(p);
  spill_size_ = length;
  return spill_;
}

void ShmRing::CommitHead(uint64_t head) {
  RingHeader* h = header_;
  h->head.store(head, std::memory_order_release);
  LightFence();
  if (h->space_waiters.load(std::memory_order_relaxed) != 0 &&
      head >= h->space_target.load(std::memory_order_relaxed)) {
    h->space_seq.fetch_add(1);
    FutexWakeAll(&h->space_seq);
  }
}

void ShmRing::CountGet() {
  std::atomic<int64_t>& n = header_->gets;
  n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

bool ShmRing::AbortIfWriterDied(uint64_t start, uint64_t end) {
  RingHeader* h = header_;
  uint32_t holder = h->write_lock.owner.load(std::memory_order_relaxed);
  if (holder == 0 || !::multiprocessing::internal::ThreadGone(holder) ||
      !h->write_lock.owner.compare_exchange_strong(
          holder, ::multiprocessing::internal::Tid(), std::memory_order_acquire,
          std::memory_order_relaxed)) {
    return false;
  }
  // This consumer now holds both locks, and has taken every byte published:
  // the ring is empty, so it may move both ends past the dead frame.
  const bool ours =
      h->write_stream_end == end && h->write_stream_start == start;
  if (ours) {
    __atomic_store_n(Word64(end + 8), 0, __ATOMIC_RELAXED);
    h->aborted_stream.store(start + 1, std::memory_order_relaxed);
    h->write_stream_end = 0;
    h->tail.store(end, std::memory_order_release);
    CommitHead(end);
  }
  // Otherwise the next producer repairs what the dead one left (Recover).
  ::multiprocessing::internal::Unlock(&h->write_lock);
  return ours;
}

ShmRing::StreamResult ShmRing::StreamOut(std::string* out, Deadline deadline) {
  RingHeader* h = header_;
  const uint64_t start = h->read_stream_start;
  const uint64_t end = h->read_stream_end.load(std::memory_order_relaxed);
  const uint64_t size = h->read_stream_word & ~kFdsFlag;
  const uint64_t payload = start + kFrameHeader;
  char* spill = Spill(size);
  uint64_t done = h->spill_done.load(std::memory_order_relaxed);
  out->resize(size);
  // What a consumer that died had already taken.
  std::memcpy(out->data(), spill, done);
  uint64_t head =
      std::max(h->head.load(std::memory_order_relaxed), payload + done);
  // Once under way, wait a little for a live producer even past a short
  // deadline (get_nowait of a large item), but never for a dead one.
  if (deadline) {
    deadline = std::max(*deadline, std::chrono::steady_clock::now() +
                                       std::chrono::milliseconds(100));
  }
  auto has_data = [&] {
    return h->tail.load(std::memory_order_acquire) > head;
  };
  while (head < end) {
    while (!has_data()) {
      // Every so often: has the producer died in the middle of the frame?
      auto slice =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
      if (deadline && *deadline < slice) slice = *deadline;
      if (WaitUntil(&h->data_seq, &h->data_waiters, has_data, slice)) break;
      if (AbortIfWriterDied(start, end)) {
        head = end;
        break;
      }
      if (deadline && std::chrono::steady_clock::now() >= *deadline) {
        // Left for the next Read, which resumes here.
        CommitHead(head);
        return StreamResult::kTimeout;
      }
    }
    if (head >= end) break;
    const uint64_t until =
        std::min(h->tail.load(std::memory_order_acquire), end);
    // Payload bytes in [head, until), through the spill in pieces that stay
    // in the cache between the two copies; the padding is skipped.
    const uint64_t copy_end = std::min(until, payload + size);
    constexpr uint64_t kPiece = 256 * 1024;
    while (payload + done < copy_end) {
      const uint64_t n = std::min(copy_end - (payload + done), kPiece);
      CopyOut(payload + done, spill + done, n);
      std::memcpy(out->data() + done, spill + done, n);
      done += n;
      // Stored before `head` moves past the bytes (CommitHead's release).
      h->spill_done.store(done, std::memory_order_relaxed);
    }
    CommitHead(head = until);
  }
  return h->aborted_stream.load(std::memory_order_acquire) == start + 1
             ? StreamResult::kAborted
             : StreamResult::kDone;
}

bool ShmRing::Read(std::string* out, Deadline deadline, std::vector<int>* fds) {
  RingHeader* h = header_;
  if (LockRing(&h->read_lock, deadline) == LockResult::kTimeout) return false;
  auto unlock = [&] { ::multiprocessing::internal::Unlock(&h->read_lock); };
  uint64_t word;
  if (h->read_stream_end.load(std::memory_order_relaxed) != 0) {
    // A consumer died streaming a large frame out: take it over from there.
    word = h->read_stream_word;
  } else {
    const uint64_t head = h->head.load(std::memory_order_relaxed);
    if (!WaitUntil(
            &h->data_seq, &h->data_waiters, [&] { return FrameReady(head); },
            deadline)) {
      unlock();
      return false;
    }
    word = *Word64(head);
    const uint64_t size = word & ~kFdsFlag;
    if (size > kMaxFrame) {
      unlock();
      throw ValueError(absl::StrCat("a queue's buffer holds a frame of ", size,
                                    " bytes: it was corrupted"));
    }
    if (!Streamed(size)) {
      // Small frames are sealed whole; the frame is taken (head moves) only
      // once copied, so a consumer that dies leaves it to the next one.
      out->resize(size);
      CopyOut(head + kFrameHeader, out->data(), size);
      const bool fds_ok = TakeFds(word, out, fds);
      CountGet();
      CommitHead(head + FrameSpan(size));
      unlock();
      if (!fds_ok) RaiseFdsLost();
      return true;
    }
    h->read_stream_start = head;
    h->read_stream_word = word;
    h->spill_done.store(0, std::memory_order_relaxed);
    h->read_stream_end.store(head + FrameSpan(size), std::memory_order_release);
  }
  StreamResult result;
  try {
    result = StreamOut(out, deadline);
  } catch (...) {
    unlock();
    throw;
  }
  if (result == StreamResult::kTimeout) {
    unlock();
    return false;
  }
  // The item is taken only now: a consumer that dies before this point leaves
  // it (from the spill) to the next one.
  const bool fds_ok =
      result == StreamResult::kAborted || TakeFds(word, out, fds);
  // Taken: a consumer that dies from here on has the item (the next one must
  // not get it again), at worst miscounted.
  h->read_stream_end.store(0, std::memory_order_relaxed);
  CountGet();
  unlock();
  if (result == StreamResult::kAborted) {
    out->clear();
    throw OSError(EPIPE,
                  "a producer died in the middle of putting an item larger "
                  "than the queue's buffer; the item is dropped (the next get "
                  "continues with the items after it)");
  }
  if (!fds_ok) RaiseFdsLost();
  return true;
}

bool ShmRing::TakeFds(uint64_t word, std::string* out, std::vector<int>* fds) {
  if ((word & kFdsFlag) == 0) return true;
  if (out->size() < kSeqSize || channel_recv_ < 0) return false;
  uint64_t seq;
  std::memcpy(&seq, out->data(), kSeqSize);
  out->erase(0, kSeqSize);
  return RecvFds(seq, fds);
}

bool ShmRing::Empty() const {
  // A frame left half taken by a consumer that died is still there.
  return header_->tail.load(std::memory_order_acquire) ==
             header_->head.load(std::memory_order_acquire) &&
         header_->read_stream_end.load(std::memory_order_relaxed) == 0;
}

bool ShmRing::AcquireSlot(int64_t maxsize, Deadline deadline) {
  RingHeader* h = header_;
  if (maxsize <= 0) {
    h->puts.fetch_add(1);
    return true;
  }
  auto has_room = [&] { return h->puts.load() - h->gets.load() < maxsize; };
  while (true) {
    int64_t p = h->puts.load();
    if (p - h->gets.load() < maxsize) {
      if (h->puts.compare_exchange_weak(p, p + 1)) return true;
      continue;
    }
    if (!WaitUntil(&h->slots.seq, &h->slots.waiters, has_room, deadline)) {
      return false;
    }
  }
}

void ShmRing::WakeSlotWaiters() {
  Wake(&header_->slots.seq, &header_->slots.waiters);
}

int64_t ShmRing::slots() const {
  return header_->puts.load() - header_->gets.load();
}

int64_t ShmRing::frames() const {
  // The two counts are read apart: never report less than nothing.
  const int64_t gets = header_->gets.load();
  return std::max<int64_t>(header_->frames_in.load() - gets, 0);
}

void ShmRing::AddUnfinished() { header_->unfinished.value.fetch_add(1); }

bool ShmRing::TaskDone() {
  SharedCounter& c = header_->unfinished;
  int64_t v = c.value.load();
  do {
    if (v <= 0) return false;
  } while (!c.value.compare_exchange_weak(v, v - 1));
  if (v == 1) Wake(&c.seq, &c.waiters);
  return true;
}

bool ShmRing::WaitNoUnfinished(Deadline deadline) {
  SharedCounter& c = header_->unfinished;
  return WaitUntil(
      &c.seq, &c.waiters, [&] { return c.value.load() == 0; }, deadline);
}

bool ShmRing::Poll(Deadline deadline) {
  RingHeader* h = header_;
  return WaitUntil(
      &h->data_seq, &h->data_waiters,
      [&] {
        return h->tail.load(std::memory_order_acquire) !=
               h->head.load(std::memory_order_acquire);
      },
      deadline);
}

}  // namespace multiprocessing::queues::internal
