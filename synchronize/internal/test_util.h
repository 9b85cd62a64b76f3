// Test helpers: child processes with deadlines, /dev/shm inspection.
#ifndef MULTIPROCESSING_SYNCHRONIZE_INTERNAL_TEST_UTIL_H_
#define MULTIPROCESSING_SYNCHRONIZE_INTERNAL_TEST_UTIL_H_

#include <dirent.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace multiprocessing::testing {

// Forks a child that runs `body` and exits with its result (1 if it
// throws). The child never returns into the caller.
inline pid_t ForkChild(const std::function<int()>& body) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int code = 1;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child failed: %s\n", e.what());
    } catch (...) {
    }
    std::fflush(nullptr);
    _exit(code);
  }
  return pid;
}

// Waits at most `seconds` for `pid`; returns its wait status, or -1 on
// timeout (after killing it, so no test hangs or leaves a process behind).
inline int WaitChild(pid_t pid, double seconds = 30) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(seconds * 1000));
    close(pidfd);
    if (rc == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return -1;
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Exit code of a child run to completion (-1 on timeout, 128+N if killed).
inline int RunChild(const std::function<int()>& body, double seconds = 30) {
  int status = WaitChild(ForkChild(body), seconds);
  if (status == -1) return -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// Waits at most `seconds` for a process that is not our child to end.
inline bool WaitForeignExit(pid_t pid, double seconds) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;
  pollfd p{pidfd, POLLIN, 0};
  int rc = poll(&p, 1, static_cast<int>(seconds * 1000));
  close(pidfd);
  return rc == 1;
}

// Entries of /dev/shm whose names start with `prefix`.
inline std::vector<std::string> ShmEntries(const std::string& prefix) {
  std::vector<std::string> out;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return out;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) == 0) out.push_back(name);
  }
  closedir(dir);
  return out;
}

inline bool ShmExists(const std::string& name) {
  return access(("/dev/shm/" + name).c_str(), F_OK) == 0;
}

}  // namespace multiprocessing::testing

#endif  // MULTIPROCESSING_SYNCHRONIZE_INTERNAL_TEST_UTIL_H_
