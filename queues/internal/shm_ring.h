// A multi-producer, multi-consumer byte ring in shared memory that carries
// length-prefixed frames between processes. It is the transport under
// queues::Queue: producers write batches of frames, a consumer reads one frame
// at a time.
//
// Why not a pipe, as CPython uses: a ring in shared memory moves a frame with
// one memcpy on each side and no system call unless somebody sleeps, and a
// consumer killed in the middle of a read cannot wedge the others (the locks
// are robust mutexes, and the read position is committed only after a whole
// frame has been copied out, so the frame stays for the next consumer).
//
// A frame larger than the ring streams through it. Its consumer gathers it in
// a spill (the same memfd, after the ring) and records its progress there, so
// a consumer killed half-way leaves the rest of the work, and the frame, to the
// next one. Its producer writes the frame's header first and the rest as room
// is made: if it dies half-way, the frame is marked aborted (by the next
// producer, or by a consumer waiting for the rest that finds the producer's
// thread gone) and its consumer gets OSError instead of a torn frame. A small
// frame is never seen before its seal, written last.
//
// The memory is a memfd: forked children inherit the mapping, other processes
// map the fd they receive.
//
// A ring may also carry file descriptors with its frames (a Connection put on
// a Queue): they travel over a SOCK_SEQPACKET socket pair beside the ring, one
// message per frame, sent under the producers' lock before the frame and
// received under the consumers' lock, so messages and frames stay in the same
// order. Each message and its frame bear the same sequence number, so that a
// message left by a producer that died before writing its frame is skipped,
// and a frame whose message went with a consumer that died raises OSError. In
// flight, the descriptors belong to the kernel: a producer may exit at once.
#ifndef MULTIPROCESSING_QUEUES_INTERNAL_SHM_RING_H_
#define MULTIPROCESSING_QUEUES_INTERNAL_SHM_RING_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace multiprocessing::queues::internal {

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

struct RingHeader;

// A frame to write and the descriptors that travel with it (the caller keeps
// them).
struct FdFrame {
  std::string_view bytes;
  std::span<const int> fds;
};

class ShmRing {
 public:
  // The default data capacity; frames larger than this stream through in
  // pieces. Larger than a core's private cache (2 MiB here) on purpose: when
  // the producer comes back around, the consumer's core no longer holds the
  // lines it read, so writing them costs no cross-core invalidation. That
  // alone took 256-byte items from 4.2M to 6-7M a second (a 1 MiB ring).
  // Pages are only allocated as the ring is first used.
  static constexpr size_t kDefaultCapacity = size_t{4} << 20;

  // A new ring with `capacity` bytes of data (rounded up to a power of two) in
  // a fresh memfd; with `fd_channel`, frames can carry descriptors.
  static std::shared_ptr<ShmRing> Create(size_t capacity = kDefaultCapacity,
                                         bool fd_channel = false);
  // Maps the ring behind `fd` (a dup of another process's fd()), with the
  // descriptor channel's ends if it has one (else -1); takes ownership of the
  // descriptors. Throws ValueError if `fd` does not hold a ring.
  static std::shared_ptr<ShmRing> Attach(int fd, int channel_send = -1,
                                         int channel_recv = -1);

  ~ShmRing();
  ShmRing(const ShmRing&) = delete;
  ShmRing& operator=(const ShmRing&) = delete;

  int fd() const { return fd_; }
  size_t capacity() const { return capacity_; }
  // The descriptor channel's ends (-1 without one).
  int channel_send_fd() const { return channel_send_; }
  int channel_recv_fd() const { return channel_recv_; }

  // Appends `frames` in order, holding the producers' lock for the whole batch
  // so that frames of one producer are never interleaved with another's. Blocks
  // while the ring is full. Returns how many frames were written before
  // `deadline` (all of them with no deadline).
  size_t Write(std::span<const std::string> frames,
               Deadline deadline = std::nullopt);
  // Frames with descriptors; TypeError if some carry descriptors and the ring
  // has no channel.
  size_t Write(std::span<const FdFrame> frames,
               Deadline deadline = std::nullopt);

  // Appends one frame if it fits now and no other producer is writing; never
  // waits. `fds` travel with it (see Write).
  bool TryWrite(std::string_view frame, std::span<const int> fds = {});

  // Waits up to `patience` for TryWrite of a `size`-byte frame (carrying
  // descriptors if `with_fds`) to fit, and for a quarter of the ring to be
  // free, so that a producer that waits writes a stretch of lines the
  // consumer's core has long let go of: for a put that would rather wait a
  // moment than hand its item to the feeder thread. False if it still does
  // not fit.
  bool WaitForRoom(size_t size, bool with_fds,
                   std::chrono::nanoseconds patience);

  // Takes the next frame into `*out`, counting it as got in slots(), and its
  // descriptors into `*fds` (closed if `fds` is null). Returns false if
  // `deadline` passed first (a frame larger than the ring that was under way
  // is left for the next Read, which resumes it). A frame is taken only once
  // it is copied whole, so a consumer that dies leaves it to the next one.
  // OSError (the frame is gone, the next Read continues after it) if its
  // descriptors were lost with a consumer that died, or if its producer died
  // in the middle of a frame larger than the ring: a consumer never gets a
  // torn frame.
  bool Read(std::string* out, Deadline deadline = std::nullopt,
            std::vector<int>* fds = nullptr);

  // True if nothing is waiting, not even a part of a frame.
  bool Empty() const;
  // Frames in the ring (a frame larger than the ring counts from its header
  // on), not yet taken.
  int64_t frames() const;

  // Queue's item count, shared by every process: put takes a slot (waiting
  // while `maxsize` are taken, if `maxsize` > 0; false on timeout), and Read
  // gives it back.
  bool AcquireSlot(int64_t maxsize, Deadline deadline);
  // After Read on a queue with a maxsize: wakes puts waiting for a slot.
  void WakeSlotWaiters();
  int64_t slots() const;
  // JoinableQueue's unfinished tasks: TaskDone returns false if there were
  // none.
  void AddUnfinished();
  bool TaskDone();
  bool WaitNoUnfinished(Deadline deadline);
  // Whether some consumer could read now, waiting until `deadline` for one to
  // arrive.
  bool Poll(Deadline deadline);

 private:
  ShmRing(int fd, void* mapping, size_t mapping_size, int channel_send,
          int channel_recv);
  template <class Frame>
  size_t WriteFrames(std::span<const Frame> frames, Deadline deadline);
  // Under the producers' lock: sends the message of the next frame with
  // descriptors and makes its bytes (the sequence number, then `bytes`) in
  // `*framed`. Returns false if the socket is full and `wait` is false;
  // `*error` is the errno of another failure, after which the frame is to be
  // written all the same (its consumer will get OSError).
  bool SendFds(std::span<const int> fds, std::string_view bytes, bool wait,
               std::string* framed, int* error);
  // Receives the message of the frame numbered `seq` into `*fds` (closing
  // those of older, orphaned messages); false if it is gone.
  bool RecvFds(uint64_t seq, std::vector<int>* fds);
  enum class StreamResult { kDone, kAborted, kTimeout };
  // Under the consumers' lock: copies the frame larger than the ring recorded
  // in the header into `*out` through the spill, resuming where a consumer
  // that died left off.
  StreamResult StreamOut(std::string* out, Deadline deadline);
  // While streaming out the frame [start, end) with every published byte
  // taken: if its producer died, takes the producers' lock over and moves
  // both ends of the ring past the frame. Returns whether it did.
  bool AbortIfWriterDied(uint64_t start, uint64_t end);
  // This process's mapping of the spill, at least `size` bytes: where a frame
  // larger than the ring is gathered, in the ring's memfd after the ring.
  char* Spill(uint64_t size);
  // Takes the descriptors of a frame whose length word is `word` (removing
  // their sequence number from `*out`); false if they are lost.
  bool TakeFds(uint64_t word, std::string* out, std::vector<int>* fds);
  void CommitHead(uint64_t head);
  void CountGet();
  void CountFrameIn();
  bool WaitForSpace(uint64_t tail, uint64_t needed, Deadline deadline);
  // Whether `needed` bytes are free at `tail`, re-reading the consumers' head
  // only when the cached one says no. Under the producers' lock.
  bool HasSpace(uint64_t tail, uint64_t needed);
  void CopyIn(uint64_t position, const char* data, size_t size);
  void CopyOut(uint64_t position, char* data, size_t size) const;
  uint64_t* Word64(uint64_t position) const;
  // Whether a sealed frame starts at `position`.
  bool FrameReady(uint64_t position) const;
  // Whether a frame of `size` bytes is streamed through in pieces.
  bool Streamed(uint64_t size) const;
  void WriteSmall(uint64_t tail, std::string_view frame, uint64_t flags = 0);
  uint64_t StreamIn(uint64_t tail, uint64_t end, const char* data,
                    uint64_t data_size);
  // Finishes what a producer that died holding the lock left; returns the
  // tail.
  uint64_t Recover(uint64_t tail);
  void Publish(uint64_t tail);

  int fd_;
  void* mapping_;
  size_t mapping_size_;
  RingHeader* header_;
  char* data_;
  size_t capacity_;
  int channel_send_;
  int channel_recv_;
  // This process's last view of the consumers' head; under the producers'
  // lock.
  uint64_t cached_head_ = 0;
  // This process's mapping of the spill; under the consumers' lock.
  char* spill_ = nullptr;
  size_t spill_size_ = 0;
};

}  // namespace multiprocessing::queues::internal

#endif  // MULTIPROCESSING_QUEUES_INTERNAL_SHM_RING_H_
