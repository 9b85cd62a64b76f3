// The forkserver start method. The parent spawns this program once as a
// single-threaded server (argv[1] "--multiprocessing-forkserver") listening
// on a Unix socket in the parent's private temp dir. Each request carries, by
// SCM_RIGHTS, the child's bootstrap memfd, the write end of a status pipe and
// the target's out-of-band fds; the server forks, writes the child's pid to
// the status pipe and, once it reaped the child, its exit code. The server
// exits when every holder of the "alive" pipe's write end (the parent and its
// forked children) is gone, and at the parent's exit.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "logging/logging.h"
#include "process/internal/spawn.h"
#include "process/internal/state.h"
#include "process/util.h"

namespace multiprocessing::internal {
namespace {

constexpr int kMaxFds = 250;  // below the kernel's SCM_MAX_FD (253)
constexpr auto kServerAnswerTimeout = std::chrono::seconds(60);

struct ForkserverClient {
  std::mutex mu;
  pid_t pid = 0;    // the server
  pid_t owner = 0;  // the process that spawned it (others inherited it)
  int alive_w = -1;
  std::string address;
  int generation = 0;
};

ForkserverClient& Client() {
  static ForkserverClient* const client = [] {
    auto* c = new ForkserverClient;
    pthread_atfork([] { Client().mu.lock(); }, [] { Client().mu.unlock(); },
                   [] { Client().mu.unlock(); });
    return c;
  }();
  return *client;
}

sockaddr_un MakeAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    throw OSError(ENAMETOOLONG,
                  absl::StrCat("forkserver socket path too long: ", path,
                               "; set TMPDIR to a shorter directory"));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A private directory under /tmp, for when the temp dir's path is too long
// for a socket address (108 bytes), as under `bazel test`; removed at exit.
std::string ShortTempDir() {
  static std::string* dir = nullptr;
  if (dir != nullptr && !dir->empty()) return *dir;
  std::string pattern = "/tmp/pymp-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) RaiseOSError("mkdtemp", errno);
  if (dir == nullptr) dir = new std::string;
  *dir = pattern;
  Finalize(
      [] {
        ::rmdir(dir->c_str());
        dir->clear();
      },
      -100);
  return pattern;
}

// Stops the server we spawned: EOF on the alive pipe, then wait for it (kill
// it if it does not go).
void StopLocked(ForkserverClient& c) {
  if (c.pid == 0 || c.owner != ::getpid()) return;
  ::close(c.alive_w);
  c.alive_w = -1;
  int pidfd = -1;
  try {
    pidfd = OpenPidfd(c.pid);
  } catch (const OSError&) {
  }
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int r;
    do {
      r = ::poll(&p, 1, 5000);
    } while (r < 0 && errno == EINTR);
    if (r == 0) ::kill(c.pid, SIGKILL);
    ::close(pidfd);
  }
  int status;
  while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::unlink(c.address.c_str());
  c.pid = 0;
  c.owner = 0;
  c.address.clear();
}

void StopForkserver() {
  ForkserverClient& c = Client();
  std::lock_guard<std::mutex> lock(c.mu);
  StopLocked(c);
}

// Returns the server's address, spawning the server if needed.
std::string EnsureRunningLocked(ForkserverClient& c) {
  if (c.pid != 0) {
    if (c.owner != ::getpid()) return c.address;  // inherited through fork
    int status;
    pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == 0) return c.address;
    logging::info("the fork server (pid ", c.pid,
                  ") exited; starting a new one");
    ::close(c.alive_w);
    ::unlink(c.address.c_str());
    c.alive_w = -1;
    c.pid = 0;
  }
  std::string address =
      absl::StrCat(get_temp_dir(), "/forkserver-", ++c.generation);
  if (address.size() >= sizeof(sockaddr_un::sun_path)) {
    address = absl::StrCat(ShortTempDir(), "/forkserver-", c.generation);
  }
  sockaddr_un addr = MakeAddress(address);
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) RaiseOSError("socket", errno);
  int alive[2] = {-1, -1};
  auto cleanup = [&] {
    ::close(listener);
    if (alive[0] >= 0) ::close(alive[0]);
  };
  try {
    ::unlink(address.c_str());
    if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) !=
        0) {
      RaiseOSError(absl::StrCat("bind(", address, ")"), errno);
    }
    ::chmod(address.c_str(), 0600);
    if (::listen(listener, SOMAXCONN) != 0) RaiseOSError("listen", errno);
    if (::pipe2(alive, O_CLOEXEC) != 0) RaiseOSError("pipe2", errno);
    c.pid = SpawnProgram(
        {"--multiprocessing-forkserver", "listener_fd=3", "alive_fd=4"},
        {listener, alive[0]});
  } catch (...) {
    cleanup();
    if (alive[1] >= 0) ::close(alive[1]);
    c.pid = 0;
    throw;
  }
  cleanup();
  c.owner = ::getpid();
  c.alive_w = alive[1];
  c.address = address;
  logging::info("started the fork server (pid ", c.pid, ") at ", address);
  // Before the temp dir's finalizer (-100), after the children were joined.
  Finalize(&StopForkserver, -50);
  return address;
}

void SendRequest(int sock, const std::vector<int>& fds) {
  char byte = 'F';
  iovec iov{&byte, 1};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != 1) RaiseOSError("sendmsg(forkserver request)", errno);
}

// Reads one int64 written by the server; nullopt on EOF.
std::optional<int64_t> ReadSigned(int fd) {
  int64_t value;
  char* p = reinterpret_cast<char*>(&value);
  size_t got = 0;
  while (got < sizeof value) {
    ssize_t n = ::read(fd, p + got, sizeof value - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd pf{fd, POLLIN, 0};
      ::poll(&pf, 1, -1);
      continue;
    }
    if (n <= 0) return std::nullopt;
    got += static_cast<size_t>(n);
  }
  return value;
}

bool WriteSigned(int fd, int64_t value) {
  ssize_t n;
  do {
    n = ::write(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  return n == sizeof value;
}

class ForkserverPopen : public Popen {
 public:
  ForkserverPopen(pid_t pid, int pidfd, int status_r)
      : Popen(pid, pidfd, status_r) {}

 protected:
  std::optional<int> Collect() override {
    pollfd p{sentinel_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return std::nullopt;
    if (orphaned_) return 255;  // ended; its exit status went to init
    if (std::optional<int64_t> code = ReadSigned(sentinel_)) {
      return static_cast<int>(*code);
    }
    // EOF without a code: the server died before it could report. If the
    // child still runs, watch it through its pidfd, at the same fd number
    // so that the sentinel a caller holds stays valid.
    if (pidfd_ >= 0) {
      pollfd child{pidfd_, POLLIN, 0};
      if (::poll(&child, 1, 0) == 0 &&
          ::dup3(pidfd_, sentinel_, O_CLOEXEC) >= 0) {
        orphaned_ = true;
        return std::nullopt;
      }
    }
    return 255;
  }

 private:
  bool orphaned_ = false;
};

// The server's SIGCHLD handler only wakes the loop.
int sigchld_w = -1;
void OnSigchld(int) {
  int saved = errno;
  char b = 0;
  [[maybe_unused]] ssize_t n = ::write(sigchld_w, &b, 1);
  errno = saved;
}

// Receives a request's fds; empty when the client went away or sent garbage.
std::vector<int> ReceiveRequest(int conn) {
  char byte;
  iovec iov{&byte, 1};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (kMaxFds + 4)));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do {
    n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  std::vector<int> fds;
  if (n <= 0) return fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* data = CMSG_DATA(c);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0 || fds.size() < 2) {
    for (int fd : fds) ::close(fd);
    fds.clear();
  }
  return fds;
}

}  // namespace

std::shared_ptr<Popen> LaunchForkserver(const ChildSpec& spec,
                                        PickledTarget& target) {
  if (target.fds.size() + 2 > static_cast<size_t>(kMaxFds)) {
    throw ValueError(absl::StrCat("too many fds (", target.fds.size(),
                                  ") for the forkserver start method; at most ",
                                  kMaxFds - 2, " can travel with a target"));
  }
  ForkserverClient& c = Client();
  int sock = -1;
  for (int attempt = 0;; ++attempt) {
    std::string address;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      address = EnsureRunningLocked(c);
    }
    sockaddr_un addr = MakeAddress(address);
    sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) RaiseOSError("socket", errno);
    if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      break;
    }
    int err = errno;
    ::close(sock);
    if (attempt == 0) {
      // The server may have died since we last looked: reap it and retry
      // with a new one.
      std::lock_guard<std::mutex> lock(c.mu);
      if (c.owner == ::getpid() && c.pid != 0) {
        int status;
        pid_t r = ::waitpid(c.pid, &status, WNOHANG);
        if (r != 0) {
          ::close(c.alive_w);
          ::unlink(c.address.c_str());
          c.alive_w = -1;
          c.pid = 0;
          continue;
        }
      }
    }
    throw ProcessError(absl::StrCat(
        "cannot reach the fork server at ", address, ": ", strerror(err),
        "; it may have been killed. Restart the program, or use another "
        "start method"));
  }
  int data_fd = -1;
  int status[2] = {-1, -1};
  try {
    data_fd = WritePreparation(spec, target);
    if (::pipe2(status, O_CLOEXEC) != 0) RaiseOSError("pipe2", errno);
    std::vector<int> fds = {data_fd, status[1]};
    fds.insert(fds.end(), target.fds.begin(), target.fds.end());
    SendRequest(sock, fds);
  } catch (...) {
    ::close(sock);
    if (data_fd >= 0) ::close(data_fd);
    if (status[0] >= 0) ::close(status[0]);
    if (status[1] >= 0) ::close(status[1]);
    throw;
  }
  ::close(sock);
  ::close(data_fd);
  ::close(status[1]);
  pollfd p{status[0], POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1,
               static_cast<int>(
                   std::chrono::milliseconds(kServerAnswerTimeout).count()));
  } while (r < 0 && errno == EINTR);
  std::optional<int64_t> pid = r > 0 ? ReadSigned(status[0]) : std::nullopt;
  if (!pid || *pid <= 0) {
    ::close(status[0]);
    throw ProcessError(
        "the fork server did not start the child (it closed the request or "
        "did not answer); it may have died or run out of resources");
  }
  int pidfd = -1;
  try {
    pidfd = OpenPidfd(static_cast<pid_t>(*pid));
  } catch (const OSError&) {
    // Already ended and reaped by the server: its code is on the pipe.
  }
  return std::make_shared<ForkserverPopen>(static_cast<pid_t>(*pid), pidfd,
                                           status[0]);
}

void RunForkserver(int listener, int alive) {
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::close(devnull);
  }
  ::fcntl(listener, F_SETFD, FD_CLOEXEC);
  ::fcntl(alive, F_SETFD, FD_CLOEXEC);
  int sig[2];
  if (::pipe2(sig, O_CLOEXEC | O_NONBLOCK) != 0) ::_exit(1);
  sigchld_w = sig[1];
  struct sigaction sa {};
  sa.sa_handler = &OnSigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGCHLD, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);

  std::map<pid_t, int> status_fds;  // child pid -> write end of its status
  for (;;) {
    pollfd fds[3] = {
        {listener, POLLIN, 0}, {alive, POLLIN, 0}, {sig[0], POLLIN, 0}};
    int r = ::poll(fds, 3, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    if (fds[1].revents != 0) {
      // Every client is gone, perhaps killed before it could clean up:
      // remove the socket, and its directory if nothing else is left there.
      sockaddr_un addr{};
      socklen_t len = sizeof addr;
      if (::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) ==
              0 &&
          addr.sun_path[0] == '/') {
        std::string path(addr.sun_path,
                         ::strnlen(addr.sun_path, sizeof addr.sun_path));
        ::unlink(path.c_str());
        ::rmdir(path.substr(0, path.rfind('/')).c_str());
      }
      break;
    }
    if (fds[2].revents != 0) {
      char buf[256];
      while (::read(sig[0], buf, sizeof buf) > 0) {
      }
      for (;;) {
        int st;
        pid_t pid = ::waitpid(-1, &st, WNOHANG);
        if (pid <= 0) break;
        auto it = status_fds.find(pid);
        if (it == status_fds.end()) continue;
        WriteSigned(it->second, ExitCodeOfStatus(st));
        ::close(it->second);
        status_fds.erase(it);
      }
    }
    if (fds[0].revents != 0) {
      int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      std::vector<int> request = ReceiveRequest(conn);
      ::close(conn);
      if (request.empty()) continue;
      pid_t pid = ::fork();
      if (pid == 0) {
        ::close(listener);
        ::close(alive);
        ::close(sig[0]);
        ::close(sig[1]);
        ::close(request[1]);
        for (const auto& [p, fd] : status_fds) ::close(fd);
        ::signal(SIGCHLD, SIG_DFL);
        ::signal(SIGPIPE, SIG_DFL);
        ::signal(SIGINT, SIG_DFL);
        std::vector<int> oob(request.begin() + 2, request.end());
        RunPreparedChild(request[0], std::move(oob), /*from_forkserver=*/true);
      }
      ::close(request[0]);
      for (size_t i = 2; i < request.size(); ++i) ::close(request[i]);
      if (pid < 0) {
        ::close(request[1]);  // the client sees EOF instead of a pid
        continue;
      }
      WriteSigned(request[1], pid);
      status_fds[pid] = request[1];
    }
  }
  ::_exit(0);
}

}  // namespace multiprocessing::internal
