// The authentication handshakes of a listener's incoming connections, run side
// by side in the accepting thread without a thread per peer: each pending
// connection is a small state machine over a non-blocking socket, all of them
// waited on with one poll(2). So a silent, trickling or flooding peer costs a
// bounded number of descriptors and a little memory until its deadline, and
// never holds up a peer that knows the key.
//
// Bounds, and what happens beyond them:
//  - At most `capacity` connections are in a handshake at once. A new one
//    beyond that evicts the OLDEST pending connection that has not yet proved
//    it knows the key (closed at once, without an error to the caller). Oldest
//    first, because an attacker who fills the table then cannot lock out a
//    newcomer: a client with the key answers its challenge within a round
//    trip, long before `capacity` newer connections push it out. A peer that
//    has answered correctly is never evicted.
//  - Each handshake, both challenges and all their reads and writes, must end
//    by one deadline set when it is accepted.
//  - When accept(2) fails for lack of descriptors or memory (EMFILE, ENFILE,
//    ENOBUFS, ENOMEM), the queue closes the oldest unproven pending connection
//    if there is one and stops polling the listening socket for a while
//    (10 ms, doubling up to 1 s), so it does not spin; the first such failure
//    of an episode is logged as a warning.
#ifndef MULTIPROCESSING_CONNECTION_HANDSHAKE_QUEUE_H_
#define MULTIPROCESSING_CONNECTION_HANDSHAKE_QUEUE_H_

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <deque>
#include <list>
#include <optional>
#include <string>

#include "connection/connection.h"

namespace multiprocessing::connection::internal {

class HandshakeQueue {
 public:
  struct Accepted {
    int fd;  // blocking again, owned by the caller
    sockaddr_storage peer;
    socklen_t peer_length;
  };

  HandshakeQueue(std::string authkey, Timeout timeout, std::size_t capacity);
  ~HandshakeQueue();
  HandshakeQueue(const HandshakeQueue&) = delete;
  HandshakeQueue& operator=(const HandshakeQueue&) = delete;

  // Accepts connections on `listen_fd` (a non-blocking listening socket) and
  // advances every pending handshake until one authenticates, and returns it.
  // A pending peer that fails (wrong key, junk, hang-up, or silence past its
  // deadline) raises AuthenticationError; the other handshakes stay pending for
  // the next call. Returns std::nullopt as soon as `wake_fd` (when >= 0) is
  // readable. OSError when accept(2) fails for another reason than the
  // transient ones.
  std::optional<Accepted> Next(int listen_fd, int wake_fd = -1);

  // Closes every pending connection.
  void Clear();

 private:
  struct Peer;
  enum class Status { kPending, kDone, kFailed };
  using Clock = std::chrono::steady_clock;

  // One poll(2) and what it makes possible; false when `wake_fd` fired.
  bool Round(int listen_fd, int wake_fd);
  void AcceptSome(int listen_fd);
  void Add(int fd, const sockaddr_storage& peer, socklen_t length);
  bool EvictOldestUnproven();
  Status Drive(Peer& p, std::string* why);
  void Finish(std::list<Peer>::iterator it, Status status,
              const std::string& why);

  std::string authkey_;
  Timeout timeout_;
  std::size_t capacity_;
  std::list<Peer> peers_;  // oldest first
  std::deque<Accepted> done_;
  std::deque<std::string> failures_;
  // accept(2) back-off after running out of descriptors.
  Clock::duration backoff_{};
  Clock::time_point backoff_until_{};
  bool exhaustion_logged_ = false;
};

}  // namespace multiprocessing::connection::internal

#endif  // MULTIPROCESSING_CONNECTION_HANDSHAKE_QUEUE_H_
