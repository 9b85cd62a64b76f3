// Helpers for the fault-injection tests of servers built on Listener: hostile
// raw peers (silent, trickling, flooding), children that are always killed and
// reaped, and the figures those tests print.
#ifndef MULTIPROCESSING_CONNECTION_CHAOS_TEST_UTIL_H_
#define MULTIPROCESSING_CONNECTION_CHAOS_TEST_UTIL_H_

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "connection/test_util.h"
#include "gtest/gtest.h"

namespace multiprocessing::connection::testing {

// Every random choice of these tests comes from this seed (printed with each
// failure through SCOPED_TRACE).
inline constexpr std::uint32_t kChaosSeed = 20261604;

using Clock = std::chrono::steady_clock;

inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A forked child that is killed (SIGKILL) and reaped when the guard goes away,
// whatever the test did.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() { Kill(); }
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  pid_t pid() const { return pid_; }
  // Kills and reaps now; the wait status.
  int Kill() {
    if (pid_ <= 0) return 0;
    ::kill(pid_, SIGKILL);
    const int status = JoinChild(pid_, std::chrono::seconds(30));
    pid_ = -1;
    return status;
  }
  // Waits (at most `timeout`) for the child to exit by itself.
  int Join(std::chrono::seconds timeout) {
    const int status = JoinChild(pid_, timeout);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

// Descriptors closed when the guard goes away.
class FdSet {
 public:
  FdSet() = default;
  ~FdSet() {
    for (int fd : fds_) ::close(fd);
  }
  FdSet(const FdSet&) = delete;
  FdSet& operator=(const FdSet&) = delete;
  void Add(int fd) { fds_.push_back(fd); }
  const std::vector<int>& fds() const { return fds_; }
  std::size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

// Raises this process's soft RLIMIT_NOFILE to `want` (at most the hard limit);
// the limit now in force.
inline rlim_t RaiseFdLimit(rlim_t want) {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  if (r.rlim_cur < want) {
    r.rlim_cur = std::min(want, r.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &r);
    ::getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur;
}

// A TCP connection to 127.0.0.1:`port` that starts and does nothing else
// (non-blocking, so that a server that stopped accepting cannot block us);
// -1 when socket(2) fails.
inline int RawTcpConnect(int port) {
  const int fd =
      ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(static_cast<std::uint16_t>(port));
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&in), sizeof in) != 0 &&
      errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// What a raw peer has seen of the server so far.
enum class PeerView { kNothing, kGreeted, kClosed };

// Drains what the server sent to a raw (non-blocking) peer without waiting:
// kClosed once the server closed it, kGreeted once it sent something (its
// challenge), kNothing before.
inline PeerView Look(int fd, PeerView before = PeerView::kNothing) {
  char buf[512];
  for (;;) {
    const ssize_t k = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (k > 0) {
      before = PeerView::kGreeted;
      continue;
    }
    if (k == 0) return PeerView::kClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN ||
        errno == EINPROGRESS) {
      return before;
    }
    return PeerView::kClosed;  // ECONNRESET and the like
  }
}

// How many of a set of raw peers the server has accepted (greeted, or
// already closed) and how many it has not taken yet. Connections the server
// has not taken wait in its backlog, or have their SYN retried by TCP; a server
// that is stuck never takes them.
struct AcceptedCount {
  int greeted = 0;
  int closed = 0;
  int waiting = 0;
};

// Silent raw peers, with what each has seen of the server.
class SilentPeers {
 public:
  // Opens `count` silent connections to 127.0.0.1:`port`, in batches that the
  // server takes (or fails to take, within 10 s) before the next, so that the
  // kernel's accept queue does not overflow (TCP would then retry the dropped
  // handshakes seconds later, which is not what is being measured).
  void Open(int port, int count) {
    constexpr int kBatch = 64;
    while (count > 0) {
      const std::size_t first = fds_.size();
      for (int i = 0; i < kBatch && count > 0; ++i, --count) {
        const int fd = RawTcpConnect(port);
        if (fd < 0) continue;
        fds_.Add(fd);
        views_.push_back(PeerView::kNothing);
      }
      Wait(first, std::chrono::seconds(10));
    }
  }
  // Waits at most `timeout` for the server to take every peer; the count.
  AcceptedCount Wait(std::chrono::milliseconds timeout) {
    Wait(0, timeout);
    AcceptedCount out;
    for (std::size_t i = 0; i < views_.size(); ++i) {
      views_[i] = Look(fds_.fds()[i], views_[i]);
      out.greeted += views_[i] == PeerView::kGreeted;
      out.closed += views_[i] == PeerView::kClosed;
      out.waiting += views_[i] == PeerView::kNothing;
    }
    return out;
  }
  const std::vector<int>& fds() const { return fds_.fds(); }
  std::size_t size() const { return fds_.size(); }

 private:
  void Wait(std::size_t first, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      std::vector<pollfd> waiting;
      for (std::size_t i = first; i < views_.size(); ++i) {
        if (views_[i] == PeerView::kNothing) {
          views_[i] = Look(fds_.fds()[i]);
        }
        if (views_[i] == PeerView::kNothing) {
          waiting.push_back({fds_.fds()[i], POLLIN, 0});
        }
      }
      if (waiting.empty() || Clock::now() >= deadline) return;
      ::poll(waiting.data(), waiting.size(), 100);
    }
  }

  FdSet fds_;
  std::vector<PeerView> views_;
};

// Waits (at most `timeout`) until the server closes raw peer `fd`; the seconds
// it took, or std::nullopt. `each` runs between waits of at most `step` (a
// trickling peer sends its next byte there).
template <class F>
std::optional<double> WaitClosed(int fd, std::chrono::milliseconds timeout,
                                 std::chrono::milliseconds step, F&& each) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    ::poll(&p, 1, static_cast<int>(step.count()));
    if (Look(fd) == PeerView::kClosed) return SecondsSince(start);
    each();
  }
  return std::nullopt;
}

// The CPU time (user + system) a process has used, in seconds.
inline double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is the 3rd
  // field, utime and stime the 14th and 15th.
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// How many descriptors a process has open.
inline int OpenFds(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return -1;
  int n = 0;
  while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

// A line "Name: value" of /proc/<pid>/status (e.g. "Threads"), or -1.
inline long ProcStatus(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0) {
      return std::stol(line.substr(name.size() + 1));
    }
  }
  return -1;
}

// A child that connects to 127.0.0.1:`port` over and over until killed, each
// time sending a little random junk (or nothing) and hanging up at once.
inline pid_t StartFlooder(int port, std::uint32_t seed) {
  return ForkChild([port, seed] {
    std::mt19937 random(seed);
    for (;;) {
      const int fd = RawTcpConnect(port);
      if (fd < 0) continue;
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
      std::string junk(random() % 64, '\0');
      for (char& c : junk) c = static_cast<char>(random());
      if (!junk.empty()) {
        (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
      }
      ::close(fd);
    }
  });
}

// A child that connects to 127.0.0.1:`port` and sends a plausible handshake
// answer one byte every `every`, until killed or closed by the server.
inline pid_t StartTrickler(int port, std::chrono::milliseconds every) {
  return ForkChild([port, every] {
    const int fd = RawTcpConnect(port);
    if (fd < 0) return;
    const std::string answer =
        std::string("\0\0\0\x28", 4) + "{sha256}" + std::string(32, 'x');
    for (std::size_t i = 0;; i = (i + 1) % answer.size()) {
      pollfd p{fd, POLLRDHUP, 0};
      ::poll(&p, 1, static_cast<int>(every.count()));
      if (Look(fd) == PeerView::kClosed) return;
      (void)::send(fd, &answer[i], 1, MSG_NOSIGNAL);
    }
  });
}

}  // namespace multiprocessing::connection::testing

#endif  // MULTIPROCESSING_CONNECTION_CHAOS_TEST_UTIL_H_
