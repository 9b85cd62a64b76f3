// The shared object behind Process handles, and the library's per-process
// state. Internal to //process.
#ifndef MULTIPROCESSING_PROCESS_INTERNAL_STATE_H_
#define MULTIPROCESSING_PROCESS_INTERNAL_STATE_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "process/internal/popen.h"
#include "process/process.h"

namespace multiprocessing::internal {

struct ProcessState {
  std::string name;
  std::vector<int> identity;  // (N1, N2, ...) of "Process-N1:N2"
  bool daemon = false;
  std::string authkey;
  pid_t parent_pid = 0;  // the creating process
  const Context* context = nullptr;

  // The target, for fork, and its pickled form, for spawn and forkserver.
  std::function<void()> target;
  PickledTargetFactory pickled_target;
  std::string target_description;

  // The process this object stands for in the process it was built in; the
  // parent's Process object in a child, the main process, or a parent
  // process handle are never "started" by this process.
  bool is_current = false;
  // parent_process()'s object: observable (is_alive, join, sentinel) but not
  // ours to start or signal.
  bool is_parent = false;

  mutable std::mutex mu;  // guards what follows
  bool starting = false;
  bool closed = false;
  std::shared_ptr<Popen> popen;

  std::shared_ptr<Popen> GetPopen() const {
    std::lock_guard<std::mutex> lock(mu);
    return popen;
  }
};

// The parent of a spawned or forked child, as parent_process() reports it.
struct ParentInfo {
  std::string name;
  pid_t pid = 0;
};

// The library's state in this process. Leaked on purpose: it is used by the
// exit function, which runs while static objects are being destroyed.
struct ProcessGlobals {
  std::mutex mu;  // guards what follows; held across fork() by atfork hooks
  std::shared_ptr<ProcessState> current;
  std::optional<ParentInfo> parent;
  std::shared_ptr<ProcessState> parent_state;  // built by parent_process()
  bool forkserver_child = false;
  std::vector<std::shared_ptr<ProcessState>> children;  // in start order
  int counter = 1;
  bool exiting = false;
  bool atexit_registered = false;
};
ProcessGlobals& Globals();

// current_process()'s state; creates the main process on first use.
std::shared_ptr<ProcessState> CurrentState();

// Forgets finished children (Python's _cleanup) / one child.
void Cleanup();
void RemoveChild(const ProcessState* state);

// True while this thread runs a child's run().
bool InChildRun();

// Starts `process` with its context's start method (context.cc).
std::shared_ptr<Popen> Launch(Process& process);

// Fixes the default context's start method, as a child inherits it.
void ForceStartMethod(const std::string& method);

// Finalizers and after-fork hooks (util.cc).
void RunFinalizers(std::optional<int> minpriority);
void ClearFinalizers();
void RunAfterForkers();

// Sets up the library state of a freshly started child: `self` becomes
// current_process(), its children and counter are reset, finalizers cleared,
// after-fork hooks run (`forked`), and the start method is fixed to
// `start_method` (empty: keep).
void BecomeChild(std::shared_ptr<ProcessState> self, ParentInfo parent,
                 const std::string& start_method, bool forked);

// Runs `self.run()` as the body of a child, with Python's error reporting,
// and the exit function; returns the exit code.
int RunChild(Process& self);

// The library's exit function: finalizers, terminate daemonic children, join
// the others, remaining finalizers. Runs once per process.
void ExitFunction();

// Flushes C stdio and the standard iostreams.
void FlushStdStreams();

// Writes to stderr with write(2), bypassing buffers (for child errors).
void WriteStderr(const std::string& text);

// The pending-start check for spawned children: throws RuntimeError when
// this process was spawned and freeze_support() has not run yet.
void CheckNotBootstrapping();

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_PROCESS_INTERNAL_STATE_H_
