#include "process/internal/popen.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>

#include "errors/errors.h"
#include "process/internal/state.h"

namespace multiprocessing::internal {

Popen::Popen(pid_t pid, int pidfd, int sentinel)
    : pid_(pid), pidfd_(pidfd), sentinel_(sentinel) {}

Popen::~Popen() { Close(); }

int Popen::sentinel() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sentinel_;
}

void Popen::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (sentinel_ >= 0 && sentinel_ != pidfd_) ::close(sentinel_);
  if (pidfd_ >= 0) ::close(pidfd_);
  sentinel_ = pidfd_ = -1;
}

std::optional<int> Popen::Poll() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!returncode_ && sentinel_ >= 0) returncode_ = Collect();
  return returncode_;
}

std::optional<int> Popen::Wait(
    std::optional<std::chrono::duration<double>> timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline =
      timeout
          ? Clock::now() + std::chrono::duration_cast<Clock::duration>(std::max(
                               *timeout, std::chrono::duration<double>::zero()))
          : Clock::time_point::max();
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (returncode_) return returncode_;
    fd = sentinel_;
  }
  if (fd < 0) return std::nullopt;
  // Wait without holding mu_, so other threads can poll meanwhile.
  for (;;) {
    int ms = -1;
    if (timeout) {
      auto left = deadline - Clock::now();
      if (left < Clock::duration::zero()) left = Clock::duration::zero();
      ms = static_cast<int>(
          std::ceil(std::chrono::duration<double, std::milli>(left).count()));
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, ms);
    if (r < 0 && errno != EINTR) RaiseOSError("poll", errno);
    if (r == 0) return Poll();
    if (r > 0) {
      // Ready means ended, except when a forkserver child lost its server:
      // then the sentinel now watches the child itself; wait again.
      if (std::optional<int> code = Poll()) return code;
      if (timeout && Clock::now() >= deadline) return std::nullopt;
    }
  }
}

void Popen::SendSignal(int sig) {
  std::lock_guard<std::mutex> lock(mu_);
  if (returncode_ || pidfd_ < 0) return;
  if (syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) != 0 &&
      errno != ESRCH) {
    RaiseOSError("pidfd_send_signal", errno);
  }
}

std::optional<int> ChildPopen::Collect() {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) return ExitCodeOfStatus(status);
  if (r < 0 && errno == ECHILD) {
    // Reaped by someone else (SIGCHLD ignored, a stray waitpid(-1)): the exit
    // status is lost, but the child is gone if its pidfd is readable.
    pollfd p{pidfd_, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) return 255;
  }
  return std::nullopt;
}

ParentPopen::ParentPopen(pid_t pid, int pidfd) : Popen(pid, pidfd, pidfd) {
  if (pidfd < 0) returncode_ = 0;
}

std::optional<int> ParentPopen::Collect() {
  pollfd p{pidfd_, POLLIN, 0};
  if (::poll(&p, 1, 0) > 0) return 0;
  return std::nullopt;
}

int ExitCodeOfStatus(int status) {
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

int OpenPidfd(pid_t pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) RaiseOSError("pidfd_open", errno);
  return fd;
}

std::shared_ptr<Popen> LaunchFork(const std::function<int()>& child_main) {
  FlushStdStreams();
  pid_t pid = ::fork();
  if (pid < 0) RaiseOSError("fork", errno);
  if (pid == 0) {
    int code = 1;
    try {
      code = child_main();
    } catch (...) {
      WriteStderr("multiprocessing: unexpected error while bootstrapping\n");
    }
    ::_exit(code);
  }
  return AdoptChild(pid);
}

std::shared_ptr<Popen> AdoptChild(pid_t pid) {
  int pidfd;
  try {
    pidfd = OpenPidfd(pid);
  } catch (...) {
    ::kill(pid, SIGKILL);
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    throw;
  }
  return std::make_shared<ChildPopen>(pid, pidfd);
}

}  // namespace multiprocessing::internal
