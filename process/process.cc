#include "process/process.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <typeinfo>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "logging/logging.h"
#include "openssl/rand.h"
#include "process/context.h"
#include "process/internal/state.h"
#include "process/util.h"

namespace multiprocessing {
namespace internal {
namespace {

// True on the thread running a child's run(): exit() then unwinds instead of
// calling std::exit.
thread_local bool in_child_run = false;

std::string ProcessNameForLogging() {
  const auto& current = Globals().current;
  return current ? current->name : "MainProcess";
}

std::shared_ptr<ProcessState> MakeMainProcess() {
  auto state = std::make_shared<ProcessState>();
  state->name = "MainProcess";
  state->is_current = true;
  state->authkey.resize(32);
  if (RAND_bytes(reinterpret_cast<uint8_t*>(state->authkey.data()),
                 state->authkey.size()) != 1) {
    throw OSError(0, "RAND_bytes failed to produce the authentication key");
  }
  return state;
}

void AtExit() {
  try {
    ExitFunction();
  } catch (const std::exception& e) {
    WriteStderr(
        absl::StrCat("multiprocessing: error at exit: ", e.what(), "\n"));
  }
  FlushStdStreams();
}

std::string CurrentExceptionTypeName() {
  std::type_info* type = abi::__cxa_current_exception_type();
  return type ? TypeName(*type) : "unknown exception";
}

}  // namespace

std::string TypeName(const std::type_info& type) {
  int status = 0;
  char* out = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string name = status == 0 && out ? out : type.name();
  std::free(out);
  return name;
}

void ThrowNotRegistrable(const std::type_info& target) {
  throw PicklingError(absl::StrCat(
      "the Process target (", TypeName(target),
      ") is not a function pointer, so it cannot be pickled for the spawn or "
      "forkserver start methods; pass a function registered with "
      "MP_REGISTER_FUNCTION, or use the fork start method (lambdas and "
      "function objects work under fork)"));
}

ProcessGlobals& Globals() {
  static ProcessGlobals* const globals = [] {
    auto* g = new ProcessGlobals;
    pthread_atfork([] { Globals().mu.lock(); }, [] { Globals().mu.unlock(); },
                   [] { Globals().mu.unlock(); });
    return g;
  }();
  return *globals;
}

std::shared_ptr<ProcessState> CurrentState() {
  ProcessGlobals& g = Globals();
  {
    std::lock_guard<std::mutex> lock(g.mu);
    if (g.current) return g.current;
  }
  // First use in the main process: the logger must exist before our atexit
  // handler is registered, so that it is destroyed after the handler ran.
  get_logger();
  auto main = MakeMainProcess();
  std::lock_guard<std::mutex> lock(g.mu);
  if (!g.current) {
    g.current = std::move(main);
    logging::SetProcessNameProvider(&ProcessNameForLogging);
    if (!g.atexit_registered) {
      g.atexit_registered = true;
      std::atexit(&AtExit);
    }
  }
  return g.current;
}

void FlushStdStreams() {
  std::cout.flush();
  std::cerr.flush();
  std::clog.flush();
  std::fflush(nullptr);
}

void WriteStderr(const std::string& text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(2, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void Cleanup() {
  ProcessGlobals& g = Globals();
  std::vector<std::shared_ptr<ProcessState>> children;
  {
    std::lock_guard<std::mutex> lock(g.mu);
    children = g.children;
  }
  for (const auto& child : children) {
    auto popen = child->GetPopen();
    if (!popen || popen->Poll()) RemoveChild(child.get());
  }
}

void RemoveChild(const ProcessState* state) {
  ProcessGlobals& g = Globals();
  std::shared_ptr<ProcessState> removed;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(g.mu);
  auto it = std::find_if(g.children.begin(), g.children.end(),
                         [&](const auto& c) { return c.get() == state; });
  if (it != g.children.end()) {
    removed = std::move(*it);
    g.children.erase(it);
  }
}

void BecomeChild(std::shared_ptr<ProcessState> self, ParentInfo parent,
                 const std::string& start_method, bool forked) {
  ProcessGlobals& g = Globals();
  std::vector<std::shared_ptr<ProcessState>> old_children;
  std::shared_ptr<ProcessState> old_current;
  {
    std::lock_guard<std::mutex> lock(g.mu);
    self->is_current = true;
    old_current = std::move(g.current);
    g.current = std::move(self);
    g.parent = std::move(parent);
    g.parent_state.reset();
    old_children.swap(g.children);
    g.counter = 1;
    g.exiting = false;
    if (!g.atexit_registered) {
      // A spawned child may call exit() outside run(); its exit function
      // must still run then.
      g.atexit_registered = true;
      std::atexit(&AtExit);
    }
  }
  logging::SetProcessNameProvider(&ProcessNameForLogging);
  if (!start_method.empty()) ForceStartMethod(start_method);
  // Python replaces stdin by /dev/null in children, so that two processes
  // never read the same terminal.
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::close(devnull);
  }
  ClearFinalizers();
  if (forked) RunAfterForkers();
}

int RunChild(Process& self) {
  const std::string name = self.name();
  int code = 1;
  std::string error;
  logging::info("child process calling self.run()");
  try {
    in_child_run = true;
    self.run();
    in_child_run = false;
    code = 0;
  } catch (const SystemExit& e) {
    in_child_run = false;
    if (!e.message().empty()) {
      error = absl::StrCat(e.message(), "\n");
      code = 1;
    } else {
      code = e.code();
    }
  } catch (const std::exception& e) {
    in_child_run = false;
    std::string what = e.what();
    error = absl::StrCat("Process ", name, ":\n", PythonNameOf(e),
                         what.empty() ? "" : ": ", what, "\n");
  } catch (...) {
    in_child_run = false;
    error =
        absl::StrCat("Process ", name, ":\n", CurrentExceptionTypeName(), "\n");
  }
  try {
    ExitFunction();
  } catch (const std::exception& e) {
    error += absl::StrCat("Error in the exit function: ", e.what(), "\n");
  }
  FlushStdStreams();
  if (!error.empty()) WriteStderr(error);
  logging::info("process exiting with exitcode ", code);
  FlushStdStreams();
  return code;
}

int Bootstrap(Process& self) {
  ParentInfo parent;
  {
    auto current = CurrentState();
    parent.name = current->name;
  }
  parent.pid = static_cast<pid_t>(self.state_->parent_pid);
  std::string method;
  if (self.state_->context != nullptr) {
    method = self.state_->context->get_start_method().value_or("");
  }
  BecomeChild(self.state_, std::move(parent), method, /*forked=*/true);
  return RunChild(self);
}

void ExitFunction() {
  ProcessGlobals& g = Globals();
  {
    std::lock_guard<std::mutex> lock(g.mu);
    if (g.exiting) return;
    g.exiting = true;
  }
  logging::info("process shutting down");
  logging::debug("running all \"atexit\" finalizers with priority >= 0");
  RunFinalizers(0);
  for (Process& p : active_children()) {
    if (p.daemon()) {
      logging::info("calling terminate() for daemon ", p.name());
      p.terminate();
    }
  }
  for (Process& p : active_children()) {
    logging::info("calling join() for process ", p.name());
    p.join();
  }
  logging::debug("running the remaining \"atexit\" finalizers");
  RunFinalizers(std::nullopt);
}

bool InChildRun() { return in_child_run; }

}  // namespace internal

using internal::Globals;
using internal::ProcessGlobals;
using internal::ProcessState;

void exit(int code) {
  if (internal::InChildRun()) throw SystemExit(code);
  internal::FlushStdStreams();
  std::exit(code);
}

void exit(const std::string& message) {
  if (internal::InChildRun()) throw SystemExit(message);
  internal::FlushStdStreams();
  internal::WriteStderr(message + "\n");
  std::exit(1);
}

Process::Process() : Process(ProcessOptions{}) {}

Process::Process(ProcessOptions options)
    : state_(std::make_shared<ProcessState>()) {
  std::shared_ptr<ProcessState> current = internal::CurrentState();
  ProcessGlobals& g = Globals();
  int count;
  {
    std::lock_guard<std::mutex> lock(g.mu);
    count = g.counter++;
  }
  ProcessState& s = *state_;
  s.identity = current->identity;
  s.identity.push_back(count);
  s.name = options.name.empty()
               ? absl::StrCat("Process-", absl::StrJoin(s.identity, ":"))
               : std::move(options.name);
  s.daemon = options.daemon.value_or(current->daemon);
  s.authkey = options.authkey ? std::move(*options.authkey) : current->authkey;
  s.parent_pid = ::getpid();
  s.context = options.context;
}

Process::Process(std::shared_ptr<internal::ProcessState> state)
    : state_(std::move(state)) {}

Process::~Process() = default;

void Process::SetTarget(std::function<void()> target,
                        internal::PickledTargetFactory pickled,
                        std::string what) {
  state_->target = std::move(target);
  state_->pickled_target = std::move(pickled);
  state_->target_description = std::move(what);
}

void Process::run() {
  if (state_->target) state_->target();
}

namespace {

void CheckNotClosed(const ProcessState& s) {
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.closed) {
    throw ValueError(
        "process object is closed; close() released it, so create a new "
        "Process instead");
  }
}

}  // namespace

void Process::start() {
  ProcessState& s = *state_;
  CheckNotClosed(s);
  if (s.is_current) {
    throw AssertionError(
        "cannot start the current process; create a new Process and start "
        "that");
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.popen || s.starting) {
      throw AssertionError(absl::StrCat(
          "cannot start a process twice: ", s.name,
          " was already started; create a new Process to run it again"));
    }
    s.starting = true;
  }
  auto undo = [&] {
    std::lock_guard<std::mutex> lock(s.mu);
    s.starting = false;
  };
  try {
    if (s.parent_pid != ::getpid()) {
      throw AssertionError(
          "can only start a process object created by the current process");
    }
    if (internal::CurrentState()->daemon) {
      throw AssertionError(
          "daemonic processes are not allowed to have children; create the "
          "process with .daemon = false, or start it from a non-daemonic "
          "process");
    }
    internal::CheckNotBootstrapping();
    internal::Cleanup();
    std::shared_ptr<internal::Popen> popen = internal::Launch(*this);
    {
      std::lock_guard<std::mutex> lock(s.mu);
      s.popen = std::move(popen);
      s.starting = false;
    }
  } catch (...) {
    undo();
    throw;
  }
  // As Python drops its references to target and args once started: the
  // parent no longer needs them, and they may hold resources (fds).
  s.target = nullptr;
  s.pickled_target = nullptr;
  ProcessGlobals& g = Globals();
  std::lock_guard<std::mutex> lock(g.mu);
  g.children.push_back(state_);
}

void Process::join(Timeout timeout) {
  ProcessState& s = *state_;
  CheckNotClosed(s);
  if (s.is_current) {
    throw AssertionError(
        "a process cannot join itself: it would wait forever for its own "
        "end");
  }
  if (s.parent_pid != ::getpid() && !s.is_parent) {
    throw AssertionError(
        "can only join a child process: this Process object was started by "
        "another process");
  }
  auto popen = s.GetPopen();
  if (!popen) {
    throw AssertionError(absl::StrCat("can only join a started process: call ",
                                      s.name, ".start() first"));
  }
  if (popen->Wait(timeout)) internal::RemoveChild(&s);
}

bool Process::is_alive() const {
  const ProcessState& s = *state_;
  if (s.is_current) return true;
  CheckNotClosed(s);
  if (s.parent_pid != ::getpid() && !s.is_parent) {
    throw AssertionError(
        "can only test a child process: this Process object was started by "
        "another process");
  }
  auto popen = s.GetPopen();
  if (!popen) return false;
  if (!popen->Poll()) return true;
  internal::RemoveChild(&s);
  return false;
}

const std::string& Process::name() const { return state_->name; }

void Process::set_name(std::string name) { state_->name = std::move(name); }

bool Process::daemon() const { return state_->daemon; }

void Process::set_daemon(bool daemonic) {
  if (state_->GetPopen() || state_->is_current) {
    throw AssertionError(
        "process has already started: set daemon before calling start()");
  }
  state_->daemon = daemonic;
}

std::optional<int> Process::pid() const {
  if (state_->is_current) return ::getpid();
  auto popen = state_->GetPopen();
  if (!popen) return std::nullopt;
  return popen->pid();
}

std::optional<int> Process::exitcode() const {
  CheckNotClosed(*state_);
  if (state_->is_parent) return std::nullopt;
  auto popen = state_->GetPopen();
  if (!popen) return std::nullopt;
  return popen->Poll();
}

const std::string& Process::authkey() const { return state_->authkey; }

void Process::set_authkey(std::string authkey) {
  state_->authkey = std::move(authkey);
}

int Process::sentinel() const {
  CheckNotClosed(*state_);
  auto popen = state_->GetPopen();
  if (!popen) {
    throw ValueError(
        "process not started: the sentinel exists once start() "
        "returned");
  }
  return popen->sentinel();
}

void Process::terminate() {
  CheckNotClosed(*state_);
  auto popen = state_->GetPopen();
  if (!popen) throw ValueError("process not started: call start() first");
  popen->SendSignal(SIGTERM);
}

void Process::kill() {
  CheckNotClosed(*state_);
  auto popen = state_->GetPopen();
  if (!popen) throw ValueError("process not started: call start() first");
  popen->SendSignal(SIGKILL);
}

void Process::close() {
  ProcessState& s = *state_;
  auto popen = s.GetPopen();
  if (popen) {
    if (!popen->Poll()) {
      throw ValueError(absl::StrCat(
          "Cannot close a process while it is still running (", s.name,
          "). You should first call join() or terminate()."));
    }
    popen->Close();
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.popen.reset();
    s.closed = true;
  }
  internal::RemoveChild(&s);
}

namespace {

std::string ExitCodeName(int code) {
  if (code < 0) {
    if (const char* abbrev = sigabbrev_np(-code)) {
      return absl::StrCat("SIG", abbrev);
    }
  }
  return absl::StrCat("exitcode=", code);
}

}  // namespace

std::string Process::repr() const {
  const ProcessState& s = *state_;
  std::string status;
  bool closed;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    closed = s.closed;
  }
  if (s.is_current) {
    status = "started";
  } else if (closed) {
    status = "closed";
  } else if (s.parent_pid != ::getpid()) {
    status = "unknown";
  } else if (auto popen = s.GetPopen(); !popen) {
    status = "initial";
  } else if (auto code = popen->Poll(); !code) {
    status = "started";
  } else if (*code == 0) {
    status = "stopped";
  } else {
    status = absl::StrCat("stopped[", ExitCodeName(*code), "]");
  }
  return absl::StrCat("<Process(", s.name, ", ", status,
                      s.daemon ? " daemon" : "", ")>");
}

std::ostream& operator<<(std::ostream& os, const Process& p) {
  return os << p.repr();
}

Process current_process() { return Process(internal::CurrentState()); }

std::optional<Process> parent_process() {
  internal::CurrentState();
  ProcessGlobals& g = Globals();
  std::lock_guard<std::mutex> lock(g.mu);
  if (!g.parent) return std::nullopt;
  if (!g.parent_state) {
    auto state = std::make_shared<ProcessState>();
    state->name = g.parent->name;
    state->is_parent = true;
    state->authkey = g.current->authkey;
    // A pidfd makes the parent's end observable (sentinel, is_alive, join)
    // without signals; if the parent is already gone there is nothing to
    // watch.
    int pidfd = -1;
    if (::getppid() == g.parent->pid || g.forkserver_child) {
      try {
        pidfd = internal::OpenPidfd(g.parent->pid);
      } catch (const OSError&) {
      }
    }
    state->popen =
        std::make_shared<internal::ParentPopen>(g.parent->pid, pidfd);
    g.parent_state = std::move(state);
  }
  return Process(g.parent_state);
}

std::vector<Process> active_children() {
  internal::Cleanup();
  ProcessGlobals& g = Globals();
  std::vector<Process> out;
  std::lock_guard<std::mutex> lock(g.mu);
  out.reserve(g.children.size());
  for (const auto& c : g.children) out.push_back(Process(c));
  return out;
}

int cpu_count() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (n <= 0) {
    unsigned h = std::thread::hardware_concurrency();
    if (h == 0) throw NotImplementedError("cannot determine number of cpus");
    return static_cast<int>(h);
  }
  return static_cast<int>(n);
}

}  // namespace multiprocessing
