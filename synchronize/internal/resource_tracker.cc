#include "synchronize/internal/resource_tracker.h"

#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "errors/errors.h"

namespace multiprocessing::internal::resource_tracker {
namespace {

// Records are "REGISTER:<name>:<rtype>" / "UNREGISTER:<name>:<rtype>", one
// per SOCK_SEQPACKET message, so concurrent senders never interleave.
constexpr size_t kMaxRecord = 512;
constexpr size_t kMaxName = 256;

std::mutex g_mutex;           // serialises starting the tracker
std::atomic<int> g_fd{-1};    // our end of the tracker's socket
std::atomic<pid_t> g_pid{0};  // the tracker's pid

// ---- The tracker process. Only system calls from here on: it is forked
// from a program that may have other threads, so it must not allocate.

struct Entry {
  char rtype;  // 's' semaphore, 'm' shared memory
  char name[kMaxName];
};

void WriteStderr(const char* a, const char* b = "", const char* c = "") {
  for (const char* s : {a, b, c}) {
    size_t n = strlen(s);
    while (n > 0) {
      ssize_t w = write(2, s, n);
      if (w <= 0) return;
      s += w;
      n -= static_cast<size_t>(w);
    }
  }
}

[[noreturn]] void TrackerMain(int fd) {
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setsid();
  // Keep only the socket (as fd 3) and stderr: holding any other inherited
  // descriptor (a pipe's write end, a listening socket) would change what
  // the program's other processes observe.
  if (fd != 3) {
    dup2(fd, 3);
    close(fd);
  }
  fd = 3;
  syscall(SYS_close_range, 4U, ~0U, 0U);
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    dup2(devnull, 0);
    dup2(devnull, 1);
    if (devnull > 2) close(devnull);
  }
  // Tell the program our pid; this also says we are ready.
  pid_t self = getpid();
  send(fd, &self, sizeof self, MSG_NOSIGNAL);

  // The table of registered names grows on demand inside one reservation.
  constexpr size_t kCapacity = 1 << 18;
  void* mem = mmap(nullptr, kCapacity * sizeof(Entry), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) _exit(1);
  Entry* table = static_cast<Entry*>(mem);
  size_t count = 0;

  char buf[kMaxRecord + 1];
  for (;;) {
    ssize_t n = recv(fd, buf, kMaxRecord, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    buf[n] = '\0';
    char* colon1 = strchr(buf, ':');
    if (colon1 == nullptr) continue;
    *colon1 = '\0';
    char* name = colon1 + 1;
    char* colon2 = strrchr(name, ':');
    if (colon2 == nullptr) continue;
    *colon2 = '\0';
    const char* rtype_text = colon2 + 1;
    char rtype;
    if (strcmp(rtype_text, "semaphore") == 0) {
      rtype = 's';
    } else if (strcmp(rtype_text, "shared_memory") == 0) {
      rtype = 'm';
    } else {
      continue;  // "noop" probes and anything unknown
    }
    if (strlen(name) >= kMaxName) continue;
    if (strcmp(buf, "REGISTER") == 0) {
      if (count == kCapacity) continue;
      table[count].rtype = rtype;
      strcpy(table[count].name, name);
      ++count;
    } else if (strcmp(buf, "UNREGISTER") == 0) {
      // Newest first: the usual create/unlink pattern is stack-like.
      for (size_t i = count; i-- > 0;) {
        if (table[i].rtype == rtype && strcmp(table[i].name, name) == 0) {
          table[i] = table[--count];
          break;
        }
      }
    }
  }
  // Every process of the program has ended: unlink what they left behind.
  if (count > 0) {
    WriteStderr("resource_tracker: cleaning up leaked objects at shutdown\n");
  }
  for (size_t i = 0; i < count; ++i) {
    int rc = table[i].rtype == 's' ? sem_unlink(table[i].name)
                                   : shm_unlink(table[i].name);
    if (rc != 0 && errno != ENOENT) {
      WriteStderr("resource_tracker: cannot unlink ", table[i].name, "\n");
    }
  }
  _exit(0);
}

// ---- The program's side.

void StartLocked() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    RaiseOSError("resource tracker socketpair", errno);
  }
  // Block the signals the tracker ignores until it has installed SIG_IGN,
  // so that a ^C at the wrong moment cannot kill it.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  pid_t middle = fork();
  if (middle == 0) {
    close(sv[1]);
    pid_t tracker = fork();
    if (tracker == 0) TrackerMain(sv[0]);
    _exit(tracker < 0 ? 1 : 0);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  close(sv[0]);
  if (middle < 0) {
    close(sv[1]);
    RaiseOSError("fork (resource tracker)", fork_errno);
  }
  int status = 0;
  while (waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  pid_t tracker = 0;
  ssize_t n;
  do {
    n = recv(sv[1], &tracker, sizeof tracker, 0);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof tracker)) {
    close(sv[1]);
    throw OSError(EIO,
                  "the resource tracker process did not start; check the "
                  "process limit (ulimit -u)");
  }
  g_pid.store(tracker);
  g_fd.store(sv[1]);
}

void Send(std::string_view cmd, std::string_view name, std::string_view rtype) {
  if (name.empty() || name.size() >= kMaxName ||
      name.find_first_of(":\n") != std::string_view::npos) {
    throw ValueError("resource tracker: invalid name '" + std::string(name) +
                     "' (1 to 255 characters, no ':' or newline)");
  }
  std::string record;
  record.reserve(cmd.size() + name.size() + rtype.size() + 2);
  record.append(cmd).append(":").append(name).append(":").append(rtype);
  for (int attempt = 0; attempt < 2; ++attempt) {
    ensure_running();
    int fd = g_fd.load();
    ssize_t n;
    do {
      n = send(fd, record.data(), record.size(), MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(record.size())) return;
    // The tracker died (killed by hand?): start a new one. What the old one
    // tracked is lost, as in CPython.
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_fd.load() == fd) {
      WriteStderr(
          "resource_tracker: process died unexpectedly, relaunching. Some "
          "resources might leak.\n");
      close(fd);
      g_fd.store(-1);
      g_pid.store(0);
    }
  }
  throw OSError(EPIPE, "cannot reach the resource tracker process");
}

}  // namespace

void ensure_running() {
  if (g_fd.load(std::memory_order_acquire) >= 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_fd.load() >= 0) return;
  StartLocked();
}

void register_resource(std::string_view name, std::string_view rtype) {
  Send("REGISTER", name, rtype);
}

void unregister_resource(std::string_view name, std::string_view rtype) {
  Send("UNREGISTER", name, rtype);
}

pid_t tracker_pid() { return g_pid.load(); }

int getfd() { return g_fd.load(); }

}  // namespace multiprocessing::internal::resource_tracker
