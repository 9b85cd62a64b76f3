// A started child as seen by its parent: its pid, a sentinel fd and its exit
// status. One implementation per start method. Internal to //process.
#ifndef MULTIPROCESSING_PROCESS_INTERNAL_POPEN_H_
#define MULTIPROCESSING_PROCESS_INTERNAL_POPEN_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace multiprocessing::internal {

// Thread-safe: several threads may poll, wait and signal one child.
class Popen {
 public:
  Popen(pid_t pid, int pidfd, int sentinel);
  virtual ~Popen();
  Popen(const Popen&) = delete;
  Popen& operator=(const Popen&) = delete;

  pid_t pid() const { return pid_; }
  // Readable once the child ended; -1 after Close().
  int sentinel() const;

  // The exit code (-N for signal N) if the child ended, without blocking.
  std::optional<int> Poll();
  // Waits at most `timeout` (forever if unset) for the child to end.
  std::optional<int> Wait(std::optional<std::chrono::duration<double>> timeout);
  // Sends `sig` unless the child already ended (no risk of hitting a reused
  // pid: the signal goes through a pidfd).
  void SendSignal(int sig);
  // Closes the sentinel and pidfd.
  void Close();

 protected:
  // Collects the exit status without blocking, once the sentinel is ready or
  // when asked to poll; called with mu_ held.
  virtual std::optional<int> Collect() = 0;

  const pid_t pid_;
  mutable std::mutex mu_;
  int pidfd_;     // for signals; also the sentinel of direct children
  int sentinel_;  // == pidfd_ for direct children
  std::optional<int> returncode_;
};

// A direct child (fork, spawn): the sentinel is a pidfd, the status comes from
// waitpid().
class ChildPopen : public Popen {
 public:
  ChildPopen(pid_t pid, int pidfd) : Popen(pid, pidfd, pidfd) {}

 protected:
  std::optional<int> Collect() override;
};

// The parent of this process, watched through a pidfd (-1: already gone).
class ParentPopen : public Popen {
 public:
  ParentPopen(pid_t pid, int pidfd);

 protected:
  std::optional<int> Collect() override;
};

// Converts a waitpid() status to Python's exit code (-N for signal N).
int ExitCodeOfStatus(int status);

// pidfd_open(2); throws OSError.
int OpenPidfd(pid_t pid);

// The Popen of a direct child just started; kills and reaps it if its pidfd
// cannot be opened.
std::shared_ptr<Popen> AdoptChild(pid_t pid);

// Forks; the child runs `child_main` and _exits with its result, never
// returning. The parent gets the child's Popen.
std::shared_ptr<Popen> LaunchFork(const std::function<int()>& child_main);

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_PROCESS_INTERNAL_POPEN_H_
