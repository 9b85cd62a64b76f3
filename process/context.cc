#include "process/context.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <mutex>
#include <typeinfo>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "process/internal/spawn.h"
#include "process/internal/state.h"

namespace multiprocessing {
namespace {

constexpr char kFork[] = "fork";
constexpr char kSpawn[] = "spawn";
constexpr char kForkserver[] = "forkserver";

struct ContextGlobals {
  std::mutex mu;
  std::optional<std::string> actual;  // the default context's start method
  bool freeze_support_called = false;
  std::string executable;
  std::string argv0;
};

ContextGlobals& CG() {
  static ContextGlobals* const g = new ContextGlobals;
  return *g;
}

bool IsMethod(std::string_view m) {
  return m == kFork || m == kSpawn || m == kForkserver;
}

// argv[1] of this process as the kernel saw it at exec, to recognise a spawned
// child before freeze_support() ran.
bool CommandLineHasChildMarker() {
  static const bool has_marker = [] {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
    size_t first = all.find('\0');
    if (first == std::string::npos) return false;
    std::string second =
        all.substr(first + 1, all.find('\0', first + 1) - first - 1);
    return internal::IsChildMarker(second);
  }();
  return has_marker;
}

}  // namespace

const Context& DefaultContext() {
  static const Context* const context = new Context("");
  return *context;
}

const Context& ConcreteContext(std::string_view method) {
  static const Context* const fork = new Context(kFork);
  static const Context* const spawn = new Context(kSpawn);
  static const Context* const forkserver = new Context(kForkserver);
  if (method == kFork) return *fork;
  if (method == kSpawn) return *spawn;
  if (method == kForkserver) return *forkserver;
  throw ValueError(absl::StrCat("cannot find context for '",
                                std::string(method),
                                "': use 'fork', 'spawn' or 'forkserver'"));
}

const Context& Context::get_context(
    std::optional<std::string_view> method) const {
  if (!method) {
    if (!method_.empty()) return *this;
    return ConcreteContext(*get_start_method());
  }
  return ConcreteContext(*method);
}

std::optional<std::string> Context::get_start_method(bool allow_none) const {
  if (!method_.empty()) return method_;
  ContextGlobals& g = CG();
  std::lock_guard<std::mutex> lock(g.mu);
  if (!g.actual) {
    if (allow_none) return std::nullopt;
    g.actual = kFork;
  }
  return g.actual;
}

void Context::set_start_method(std::optional<std::string_view> method,
                               bool force) const {
  if (!method_.empty()) {
    throw ValueError(
        "cannot set start method of concrete context; call "
        "multiprocessing::set_start_method() instead");
  }
  if (method && !IsMethod(*method)) {
    throw ValueError(absl::StrCat("cannot find context for '",
                                  std::string(*method),
                                  "': use 'fork', 'spawn' or 'forkserver'"));
  }
  ContextGlobals& g = CG();
  std::lock_guard<std::mutex> lock(g.mu);
  if (g.actual && !force) {
    throw RuntimeError(absl::StrCat(
        "context has already been set (to '", *g.actual,
        "'); pass force=true to change it, or use get_context(method)"));
  }
  if (!method) {
    if (force) g.actual.reset();
    return;
  }
  g.actual = std::string(*method);
}

std::vector<std::string> Context::get_all_start_methods() const {
  return {kFork, kSpawn, kForkserver};
}

Process Context::current_process() const {
  return multiprocessing::current_process();
}
std::optional<Process> Context::parent_process() const {
  return multiprocessing::parent_process();
}
std::vector<Process> Context::active_children() const {
  return multiprocessing::active_children();
}
int Context::cpu_count() const { return multiprocessing::cpu_count(); }
void Context::freeze_support(int argc, char** argv) const {
  multiprocessing::freeze_support(argc, argv);
}
void Context::set_executable(std::string path) const {
  multiprocessing::set_executable(std::move(path));
}

const Context& get_context(std::optional<std::string_view> method) {
  return DefaultContext().get_context(method);
}
std::optional<std::string> get_start_method(bool allow_none) {
  return DefaultContext().get_start_method(allow_none);
}
void set_start_method(std::optional<std::string_view> method, bool force) {
  DefaultContext().set_start_method(method, force);
}
std::vector<std::string> get_all_start_methods() {
  return DefaultContext().get_all_start_methods();
}

void freeze_support(int argc, char** argv) {
  {
    ContextGlobals& g = CG();
    std::lock_guard<std::mutex> lock(g.mu);
    g.freeze_support_called = true;
    if (argc >= 1 && argv[0] != nullptr) g.argv0 = argv[0];
  }
  if (argc >= 2 && argv[1] != nullptr && internal::IsChildMarker(argv[1])) {
    internal::RunChildProgram(argc, argv);  // never returns
  }
}

void set_executable(std::string path) {
  ContextGlobals& g = CG();
  std::lock_guard<std::mutex> lock(g.mu);
  g.executable = std::move(path);
}

std::string get_executable() {
  ContextGlobals& g = CG();
  std::lock_guard<std::mutex> lock(g.mu);
  return g.executable.empty() ? "/proc/self/exe" : g.executable;
}

namespace internal {

std::string ProgramArgv0() {
  ContextGlobals& g = CG();
  std::lock_guard<std::mutex> lock(g.mu);
  return g.argv0;
}

void ForceStartMethod(const std::string& method) {
  ContextGlobals& g = CG();
  std::lock_guard<std::mutex> lock(g.mu);
  g.actual = method;
}

void CheckNotBootstrapping() {
  {
    ContextGlobals& g = CG();
    std::lock_guard<std::mutex> lock(g.mu);
    if (g.freeze_support_called) return;
  }
  if (CommandLineHasChildMarker()) {
    throw RuntimeError(
        "An attempt has been made to start a new process before the current "
        "process has finished its bootstrapping phase. This program was "
        "started by the spawn or forkserver start method, but main() started "
        "a process before calling multiprocessing::freeze_support(argc, "
        "argv). Make freeze_support(argc, argv) the first statement of "
        "main().");
  }
}

namespace {
thread_local std::string t_creating_method;
thread_local std::string t_spawning_method;
}  // namespace

const std::string& CreatingStartMethod() { return t_creating_method; }

ScopedCreatingContext::ScopedCreatingContext(const Context& ctx)
    : saved_(std::move(t_creating_method)) {
  t_creating_method = *ctx.get_start_method();
}

ScopedCreatingContext::~ScopedCreatingContext() {
  t_creating_method = std::move(saved_);
}

const std::string& SpawningStartMethod() { return t_spawning_method; }

std::shared_ptr<Popen> Launch(Process& process) {
  const std::shared_ptr<ProcessState>& state = ProcessAccess::State(process);
  const Context* context = state->context;
  std::string method = context ? *context->get_start_method()
                               : *DefaultContext().get_start_method();
  if (method == kFork) {
    return LaunchFork([&process] { return Bootstrap(process); });
  }
  {
    ContextGlobals& g = CG();
    std::lock_guard<std::mutex> lock(g.mu);
    if (!g.freeze_support_called) {
      throw RuntimeError(absl::StrCat(
          "the ", method,
          " start method runs this program again to start the child, so "
          "main() must call multiprocessing::freeze_support(argc, argv) as "
          "its first statement"));
    }
  }
  if (typeid(process) != typeid(Process)) {
    throw ValueError(absl::StrCat(
        "cannot start ", state->name, " (a ", TypeName(typeid(process)),
        ") with the ", method,
        " start method: a Process subclass overriding run() cannot be "
        "rebuilt in a fresh program; use the fork start method, or a "
        "registered target function (Process(f, args...))"));
  }
  PickledTarget target;
  if (state->pickled_target) {
    t_spawning_method = method;
    absl::Cleanup not_spawning = [] { t_spawning_method.clear(); };
    PickledTarget made = state->pickled_target();
    target.function = std::move(made.function);
    target.args = std::move(made.args);
    target.fds.swap(made.fds);
  }
  ChildSpec spec;
  spec.name = state->name;
  spec.identity = state->identity;
  spec.daemon = state->daemon;
  spec.authkey = state->authkey;
  spec.parent_name = CurrentState()->name;
  spec.start_method = method;
  if (method == kSpawn) return LaunchSpawn(spec, target);
  return LaunchForkserver(spec, target);
}

}  // namespace internal
}  // namespace multiprocessing
