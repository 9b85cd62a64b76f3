// The shared-memory transport under the Connections that Pipe() creates: one
// byte ring per direction in a memfd, beside the socketpair whose descriptors
// the Connections expose through fileno().
//
// Why: a send() over a socket costs a system call per message, and that call
// is the whole cost of a small message. Through the ring a message costs a
// memcpy on each side; the socket only rings a doorbell.
//
// The doorbell keeps the socket readable exactly while messages are pending,
// so poll(), wait() and a select() on fileno() stay correct: a sender that
// publishes into an empty ring whose receiver has "parked the token"
// (need_bell) writes one byte; a receiver that leaves the ring empty parks the
// token again and reads the bytes counted so far. Both sides count the bytes
// (bells_written / bells_read), and the Dekker-style order of their
// sequentially consistent stores and loads (sender: tail, then need_bell;
// receiver: need_bell, then bells_written, then tail) guarantees that a
// published message always leaves at least one unread byte behind, and that an
// empty ring at rest leaves none.
//
// Descriptors (SCM_RIGHTS) still need the socket: a frame flagged as carrying
// descriptors is followed on the socket by a two-byte message "FB" with the
// descriptors attached. The receiver of that frame reads bytes up to and
// including the "F" (counting them as bells); the trailing "B" keeps the socket
// readable for whatever follows in the ring.
//
// The ring's memory is a memfd: forked children share the mapping, other
// processes map the descriptor they receive with the Connection.
#ifndef MULTIPROCESSING_CONNECTION_PIPE_RING_H_
#define MULTIPROCESSING_CONNECTION_PIPE_RING_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connection/socket_io.h"

namespace multiprocessing::connection::internal {

struct RingShared;
struct RingDirection;

// Where a received frame's payload goes.
class RingSink {
 public:
  virtual ~RingSink() = default;
  // The payload's length, before any byte of it.
  virtual void Begin(std::uint64_t size) = 0;
  // The whole payload at once, contiguous in the ring; valid during the call.
  // Returns false to have it delivered through Append instead.
  virtual bool Whole(std::string_view payload) {
    static_cast<void>(payload);
    return false;
  }
  // The payload in order, in pieces.
  virtual void Append(const char* data, std::size_t size) = 0;
  // After the last piece (not called after Whole()).
  virtual void End() {}
};

// Thrown (before anything of the frame is consumed) for a frame longer than
// the receiver accepts.
struct RingBadLength {
  std::string why;
};

class PipeRing {
 public:
  // Data bytes per direction (a power of two).
  static constexpr std::size_t kCapacity = std::size_t{1} << 20;

  // A new ring pair in a fresh memfd with one or two directions.
  static std::shared_ptr<PipeRing> Create(int directions);
  // Maps the rings behind `memfd` (received from another process); takes
  // ownership of it. Throws ValueError if it does not hold rings.
  static std::shared_ptr<PipeRing> Attach(int memfd);

  ~PipeRing();
  PipeRing(const PipeRing&) = delete;
  PipeRing& operator=(const PipeRing&) = delete;

  int fd() const { return fd_; }
  int directions() const { return directions_; }

  // Appends one frame to direction `dir` and rings `sock` if the receiver
  // needs it; `fds` (if any) follow on `sock`. Blocks while the ring is full.
  void Send(int dir, int sock, std::string_view payload,
            const std::vector<int>* fds);

  // Receives one frame from direction `dir`: its descriptors into `*fds`, its
  // payload into `sink`. Returns false if `deadline` passed before the frame
  // began. Throws EOFError at a clean end (the peer closed `sock`), OSError on
  // a truncated frame or a broken ring, RingBadLength for a frame longer than
  // `maxlength`; whatever `sink` throws propagates once the frame is consumed.
  bool Receive(int dir, int sock, RingSink& sink, std::vector<int>* fds,
               std::optional<std::uint64_t> maxlength, Deadline deadline);

  // Whether direction `dir` holds unread bytes.
  bool Pending(int dir) const;

 private:
  PipeRing(int fd, void* mapping, std::size_t size);
  RingDirection& Direction(int dir) const;
  char* Data(int dir) const;

  int fd_;
  void* mapping_;
  std::size_t size_;
  RingShared* shared_;
  int directions_;
  // This process's last views of each direction's positions (guarded by the
  // direction's write / read lock).
  std::uint64_t cached_head_[2] = {0, 0};
  std::uint64_t cached_tail_[2] = {0, 0};
};

}  // namespace multiprocessing::connection::internal

#endif  // MULTIPROCESSING_CONNECTION_PIPE_RING_H_
