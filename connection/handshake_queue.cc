#include "connection/handshake_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connection/connection_internal.h"
#include "connection/socket_io.h"
#include "errors/errors.h"
#include "logging/logging.h"

namespace multiprocessing::connection::internal {
namespace {

constexpr std::chrono::milliseconds kFirstBackoff{10};
constexpr std::chrono::milliseconds kMaxBackoff{1000};
// New connections taken per poll round, so that a flood of them cannot starve
// the handshakes already under way.
constexpr int kAcceptsPerRound = 64;
// Failures kept for accept() to report; beyond that the oldest are dropped.
constexpr std::size_t kMaxQueuedFailures = 64;

std::string Frame(std::string_view payload) {
  std::string out(4, '\0');
  auto n = static_cast<std::uint32_t>(payload.size());
  for (int i = 3; i >= 0; --i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  out.append(payload.data(), payload.size());
  return out;
}

}  // namespace

struct HandshakeQueue::Peer {
  enum class Step { kAnswer, kPeerChallenge, kWelcome };

  int fd = -1;
  sockaddr_storage addr{};
  socklen_t addr_length = 0;
  std::optional<Clock::time_point> deadline;
  Step step = Step::kAnswer;
  bool proven = false;  // answered our challenge with the key
  short events = POLLIN;
  std::string challenge;
  // The frame being written, and how much of it is out.
  std::string out;
  std::size_t out_done = 0;
  // The frame being read: its header, then its payload. Reads never go past
  // the frame, so whatever the peer sends after the handshake stays in the
  // socket for the Connection.
  unsigned char header[4] = {};
  std::size_t header_have = 0;
  std::string in;
  std::size_t in_have = 0;

  void Send(std::string_view payload) {
    out = Frame(payload);
    out_done = 0;
  }
};

HandshakeQueue::HandshakeQueue(std::string authkey, Timeout timeout,
                               std::size_t capacity)
    : authkey_(std::move(authkey)),
      timeout_(timeout),
      capacity_(std::max<std::size_t>(capacity, 1)) {}

HandshakeQueue::~HandshakeQueue() { Clear(); }

void HandshakeQueue::Clear() {
  for (Peer& p : peers_) ::close(p.fd);
  peers_.clear();
  for (const Accepted& a : done_) ::close(a.fd);
  done_.clear();
  failures_.clear();
}

std::optional<HandshakeQueue::Accepted> HandshakeQueue::Next(int listen_fd,
                                                             int wake_fd) {
  for (;;) {
    if (!done_.empty()) {
      Accepted a = done_.front();
      done_.pop_front();
      return a;
    }
    if (!failures_.empty()) {
      const std::string why = std::move(failures_.front());
      failures_.pop_front();
      throw AuthenticationError(
          absl::StrCat("authentication handshake failed: ", why));
    }
    if (!Round(listen_fd, wake_fd)) return std::nullopt;
  }
}

bool HandshakeQueue::Round(int listen_fd, int wake_fd) {
  Clock::time_point now = Clock::now();
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto here = it++;
    if (here->deadline && now >= *here->deadline) {
      Finish(here, Status::kFailed,
             absl::StrCat("no complete handshake within ", timeout_->count(),
                          " s: the peer stalled or does not speak the "
                          "multiprocessing.connection protocol"));
    }
  }
  if (!done_.empty() || !failures_.empty()) return true;

  std::vector<pollfd> fds;
  fds.reserve(peers_.size() + 2);
  std::vector<std::list<Peer>::iterator> polled;
  polled.reserve(peers_.size());
  int wake_index = -1;
  int listen_index = -1;
  if (wake_fd >= 0) {
    wake_index = static_cast<int>(fds.size());
    fds.push_back({wake_fd, POLLIN, 0});
  }
  std::optional<Clock::time_point> until;
  if (now >= backoff_until_) {
    listen_index = static_cast<int>(fds.size());
    fds.push_back({listen_fd, POLLIN, 0});
  } else {
    until = backoff_until_;
  }
  for (auto it = peers_.begin(); it != peers_.end(); ++it) {
    fds.push_back({it->fd, it->events, 0});
    polled.push_back(it);
    if (it->deadline && (!until || *it->deadline < *until)) {
      until = it->deadline;
    }
  }
  const int r = ::poll(fds.data(), fds.size(), PollMillis(until));
  if (r < 0) {
    if (errno == EINTR) return true;
    RaiseOSError("poll", errno);
  }
  if (r == 0) return true;
  if (wake_index >= 0 && fds[wake_index].revents != 0) return false;

  // The handshakes under way first, then the newcomers.
  const std::size_t first_peer = fds.size() - polled.size();
  for (std::size_t i = 0; i < polled.size(); ++i) {
    if (fds[first_peer + i].revents == 0) continue;
    std::string why;
    const Status status = Drive(*polled[i], &why);
    if (status != Status::kPending) Finish(polled[i], status, why);
  }
  if (listen_index >= 0 && fds[listen_index].revents != 0) {
    if (fds[listen_index].revents & POLLNVAL) RaiseOSError("poll", EBADF);
    AcceptSome(listen_fd);
  }
  return true;
}

void HandshakeQueue::AcceptSome(int listen_fd) {
  for (int n = 0; n < kAcceptsPerRound; ++n) {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer),
                             &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      if (exhaustion_logged_) {
        logging::info("accepting connections again");
        exhaustion_logged_ = false;
      }
      backoff_ = Clock::duration::zero();
      Add(fd, peer, length);
      continue;
    }
    switch (errno) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        return;
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case EPERM:  // a firewall refused it
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM: {
        const int error = errno;
        if (!exhaustion_logged_) {
          get_logger().warning(
              "accept failed: ", std::strerror(error),
              "; closing unauthenticated connections and retrying with "
              "back-off (logged once until accepting works again)");
          exhaustion_logged_ = true;
        }
        // A descriptor held by a peer that has not proved anything is the
        // cheapest to give up; without one, wait longer each time.
        const bool freed = EvictOldestUnproven();
        backoff_ = freed ? Clock::duration(kFirstBackoff)
                         : std::clamp<Clock::duration>(
                               backoff_ * 2, kFirstBackoff, kMaxBackoff);
        backoff_until_ = Clock::now() + backoff_;
        return;
      }
      default:
        RaiseOSError("accept", errno);
    }
  }
}

void HandshakeQueue::Add(int fd, const sockaddr_storage& addr,
                         socklen_t length) {
  if (addr.ss_family != AF_UNIX) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (peers_.size() >= capacity_ && !EvictOldestUnproven()) {
    // Every pending peer has proved it knows the key: refuse the newcomer.
    ::close(fd);
    return;
  }
  Peer& p = peers_.emplace_back();
  p.fd = fd;
  p.addr = addr;
  p.addr_length = length;
  if (timeout_) {
    const double seconds = std::clamp(timeout_->count(), 0.0, 1e9);
    p.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(seconds));
  }
  std::string why;
  Status status;
  try {
    p.challenge = NewChallenge("sha256");
    p.Send(std::string(kChallenge) + p.challenge);
    status = Drive(p, &why);
  } catch (const Exception& e) {
    status = Status::kFailed;
    why = e.what();
  }
  if (status != Status::kPending) Finish(std::prev(peers_.end()), status, why);
}

bool HandshakeQueue::EvictOldestUnproven() {
  for (auto it = peers_.begin(); it != peers_.end(); ++it) {
    if (it->proven) continue;
    logging::debug("closing an unauthenticated connection to make room");
    ::close(it->fd);
    peers_.erase(it);
    return true;
  }
  return false;
}

// Writes what is queued, then reads one frame at a time and answers it, until
// the socket would block.
HandshakeQueue::Status HandshakeQueue::Drive(Peer& p, std::string* why) {
  for (;;) {
    if (p.out_done < p.out.size()) {
      const ssize_t k = ::send(p.fd, p.out.data() + p.out_done,
                               p.out.size() - p.out_done, MSG_NOSIGNAL);
      if (k < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          p.events = POLLOUT;
          return Status::kPending;
        }
        *why = absl::StrCat("send: ", std::strerror(errno));
        return Status::kFailed;
      }
      p.out_done += static_cast<std::size_t>(k);
      continue;
    }
    p.events = POLLIN;
    // The header, then the payload, never reading past the frame.
    char* dst;
    std::size_t want;
    if (p.header_have < sizeof p.header) {
      dst = reinterpret_cast<char*>(p.header) + p.header_have;
      want = sizeof p.header - p.header_have;
    } else {
      dst = p.in.data() + p.in_have;
      want = p.in.size() - p.in_have;
    }
    if (want > 0) {
      const ssize_t k = ::recv(p.fd, dst, want, 0);
      if (k < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::kPending;
        *why = absl::StrCat("recv: ", std::strerror(errno));
        return Status::kFailed;
      }
      if (k == 0) {
        *why = "the peer closed the connection during the handshake";
        return Status::kFailed;
      }
      if (p.header_have < sizeof p.header) {
        p.header_have += static_cast<std::size_t>(k);
        if (p.header_have < sizeof p.header) continue;
        const auto n = static_cast<std::int32_t>(
            (std::uint32_t{p.header[0]} << 24) |
            (std::uint32_t{p.header[1]} << 16) |
            (std::uint32_t{p.header[2]} << 8) | std::uint32_t{p.header[3]});
        if (n < 0 || static_cast<std::size_t>(n) > kMaxHandshakeMessage) {
          *why =
              absl::StrCat("bad message length: the header announces ", n,
                           " bytes, more than a handshake message may have (",
                           kMaxHandshakeMessage, ")");
          return Status::kFailed;
        }
        p.in.assign(static_cast<std::size_t>(n), '\0');
        p.in_have = 0;
        if (n > 0) continue;
      } else {
        p.in_have += static_cast<std::size_t>(k);
        if (p.in_have < p.in.size()) continue;
      }
    }
    // A whole frame.
    const std::string message = std::move(p.in);
    p.in.clear();
    p.in_have = 0;
    p.header_have = 0;
    try {
      switch (p.step) {
        case Peer::Step::kAnswer:
          try {
            CheckAnswer(authkey_, p.challenge, message);
          } catch (const AuthenticationError&) {
            // Best effort: tell the peer, without waiting for room to.
            const std::string failure = Frame(kFailure);
            (void)::send(p.fd, failure.data(), failure.size(),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
            throw;
          }
          p.proven = true;
          p.Send(kWelcome);
          p.step = Peer::Step::kPeerChallenge;
          break;
        case Peer::Step::kPeerChallenge:
          p.Send(AnswerFor(authkey_, message));
          p.step = Peer::Step::kWelcome;
          break;
        case Peer::Step::kWelcome:
          CheckWelcome(message);
          return Status::kDone;
      }
    } catch (const Exception& e) {
      *why = e.what();
      return Status::kFailed;
    }
  }
}

void HandshakeQueue::Finish(std::list<Peer>::iterator it, Status status,
                            const std::string& why) {
  if (status == Status::kDone) {
    const int flags = ::fcntl(it->fd, F_GETFL);
    if (flags >= 0) ::fcntl(it->fd, F_SETFL, flags & ~O_NONBLOCK);
    done_.push_back(Accepted{it->fd, it->addr, it->addr_length});
  } else {
    ::close(it->fd);
    if (failures_.size() >= kMaxQueuedFailures) failures_.pop_front();
    failures_.push_back(why);
  }
  peers_.erase(it);
}

}  // namespace multiprocessing::connection::internal
