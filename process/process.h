// Processes as in Python's multiprocessing: Process, current_process(),
// parent_process(), active_children(), cpu_count().
//
//   void f(const std::string& name) { std::cout << "hello " << name << "\n"; }
//   MP_REGISTER_FUNCTION(f);  // only needed for the spawn/forkserver methods
//
//   int main(int argc, char** argv) {
//     multiprocessing::freeze_support(argc, argv);  // see context.h
//     multiprocessing::Process p(f, "bob");
//     p.start();
//     p.join();
//   }
//
// A Process is built like std::thread (target and arguments), optionally with
// options first: `Process p({.name = "w", .daemon = true}, f, 1)`. A subclass
// may override run() instead of passing a target. Handles are cheap to copy
// and share one underlying process object; dropping the last handle neither
// kills nor waits for the child: the library keeps tracking it, so that
// active_children() and the exit of the main process still see it.
//
// Under the fork start method any callable with any copyable arguments works.
// Under spawn and forkserver the target must be a function registered with
// MP_REGISTER_FUNCTION (reduction/registry.h) and the arguments, converted to
// its parameter types, must be picklable; otherwise start() throws
// PicklingError in the parent. Arguments carrying file descriptors (a
// Connection) bring them along: inherited under fork and spawn, passed over
// the fork server's socket under forkserver. A subclass overriding run()
// needs the fork start method (its state cannot be rebuilt in a fresh
// program; start() throws ValueError under the others).
//
// A child never returns into its parent's code: it runs the target, its own
// finalizers (util.h), flushes stdio and iostreams and _exits, skipping the
// parent's atexit handlers and static destructors. A target that throws
// prints "Process <name>:" and "<PythonName>: <message>" to stderr and exits
// with 1; multiprocessing::exit(n) ends it with n (Python's sys.exit).
// When the main process exits, it terminates its daemonic children, joins
// the others and runs the finalizers (temp dirs, the fork server).
//
// Misuse throws (Python raises AssertionError or ValueError in the same
// places): starting twice, joining before start or joining oneself, starting
// children from a daemonic process, close() while running.
#ifndef MULTIPROCESSING_PROCESS_PROCESS_H_
#define MULTIPROCESSING_PROCESS_PROCESS_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "errors/errors.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace multiprocessing {

class Context;
class Process;

namespace internal {
struct ProcessState;
struct ProcessAccess;

// What a spawn or forkserver child needs to run a target: the registered
// name of the function and its arguments pickled as a tuple, with the file
// descriptors that travel beside them.
struct PickledTarget {
  PickledTarget() = default;
  PickledTarget(PickledTarget&& other) noexcept;
  PickledTarget& operator=(PickledTarget&&) = delete;
  ~PickledTarget();  // closes fds
  std::string function;
  std::string args;
  std::vector<int> fds;
};

// Builds the PickledTarget at start() time, so that an unpicklable argument
// or an unregistered function is reported by start(), not by the
// constructor (the fork start method needs neither).
using PickledTargetFactory = std::function<PickledTarget()>;

int Bootstrap(Process& self);
}  // namespace internal

// Python's Process keyword arguments. `group` is omitted (it must be None in
// Python); `target` and `args` are the constructor's other arguments.
struct ProcessOptions {
  // Empty: "Process-N1:N2:...", numbered by generation.
  std::string name;
  // Unset: inherited from the creating process.
  std::optional<bool> daemon;
  // Unset: inherited from the creating process.
  std::optional<std::string> authkey;
  // The start method's context (get_context("spawn")); null means the
  // default context, resolved when start() is called.
  const Context* context = nullptr;
};

// Python's SystemExit: thrown by multiprocessing::exit() inside a child
// process to end it with a chosen exit code once the stack has unwound. Like
// Python's BaseException it is not an Exception, so `catch (const
// std::exception&)` in a target does not swallow it.
class SystemExit {
 public:
  explicit SystemExit(int code) : code_(code) {}
  explicit SystemExit(std::string message)
      : code_(1), message_(std::move(message)) {}
  int code() const { return code_; }
  // When set, it is written to stderr and the exit code is 1.
  const std::string& message() const { return message_; }

 private:
  int code_;
  std::string message_;
};

// Python's sys.exit() for processes: inside a child started by this library,
// throws SystemExit(code), so the child unwinds, runs its finalizers and
// exits with `code`; elsewhere (the main process, other threads) flushes the
// standard streams and calls std::exit(code).
[[noreturn]] void exit(int code = 0);
// Writes `message` to stderr and exits with code 1, as sys.exit("message").
[[noreturn]] void exit(const std::string& message);

class Process {
 public:
  using Timeout = std::optional<std::chrono::duration<double>>;

  // A process without a target: run() does nothing unless overridden.
  Process();
  explicit Process(ProcessOptions options);

  // Process(f, args...): run() calls f(args...) in the child.
  template <class F, class... Args,
            std::enable_if_t<!std::is_same_v<std::decay_t<F>, ProcessOptions> &&
                                 !std::is_base_of_v<Process, std::decay_t<F>>,
                             int> = 0>
  explicit Process(F&& target, Args&&... args)
      : Process(ProcessOptions{}, std::forward<F>(target),
                std::forward<Args>(args)...) {}

  // Process({.name = ..., .daemon = ...}, f, args...).
  template <class F, class... Args>
  Process(ProcessOptions options, F&& target, Args&&... args);

  Process(const Process&) = default;
  Process(Process&&) = default;
  Process& operator=(const Process&) = default;
  Process& operator=(Process&&) = default;
  virtual ~Process();

  // The process's activity, run in the child. The default calls the target
  // with its arguments; a subclass may override it.
  virtual void run();

  // Starts the child. At most once per process object.
  void start();
  // Waits until the child ends, or at most `timeout`. Check exitcode() to see
  // whether it ended. A process can be joined many times.
  void join(Timeout timeout = std::nullopt);
  // True from start() until the child ends; reaps a finished child.
  bool is_alive() const;

  const std::string& name() const;
  void set_name(std::string name);
  bool daemon() const;
  // Must be called before start().
  void set_daemon(bool daemonic);
  // The child's pid; unset before start(). For current_process(), getpid().
  std::optional<int> pid() const;
  std::optional<int> ident() const { return pid(); }
  // Unset until the child ended; -N when it was killed by signal N.
  std::optional<int> exitcode() const;
  // The authentication key (raw bytes).
  const std::string& authkey() const;
  void set_authkey(std::string authkey);
  // A file descriptor that becomes readable when the child ends (for poll()
  // or connection::wait()). Throws ValueError before start().
  int sentinel() const;

  // Sends SIGTERM / SIGKILL; nothing if the child already ended.
  void terminate();
  void kill();
  // Releases the resources of a finished process (its sentinel); most other
  // methods throw ValueError afterwards. Throws ValueError while running.
  void close();

  // Python's repr: "<Process(Process-1, started daemon)>".
  std::string repr() const;

  // Same underlying process object.
  friend bool operator==(const Process& a, const Process& b) {
    return a.state_ == b.state_;
  }

 protected:
  // For the library's own handles (current_process(), active_children()).
  explicit Process(std::shared_ptr<internal::ProcessState> state);

 private:
  friend int internal::Bootstrap(Process& self);
  friend Process current_process();
  friend std::optional<Process> parent_process();
  friend std::vector<Process> active_children();
  friend struct internal::ProcessAccess;

  void SetTarget(std::function<void()> target,
                 internal::PickledTargetFactory pickled, std::string what);

  std::shared_ptr<internal::ProcessState> state_;
};

std::ostream& operator<<(std::ostream& os, const Process& p);

// The Process object of the running process ("MainProcess" in the main
// process).
Process current_process();
// The parent of the current process; unset in the main process. Its
// is_alive() tells whether the parent still runs.
std::optional<Process> parent_process();
// The live children of the current process; reaps those that finished.
std::vector<Process> active_children();
// The number of CPUs; throws NotImplementedError if it cannot be found.
int cpu_count();

// ---------------------------------------------------------------------------
// Implementation details.

namespace internal {

template <class T>
struct FunctionPointerOf {
  static constexpr bool value = false;
};
template <class R, class... P>
struct FunctionPointerOf<R (*)(P...)> {
  static constexpr bool value = true;
};
template <class R, class... P>
struct FunctionPointerOf<R (*)(P...) noexcept> {
  static constexpr bool value = true;
};

// A human-readable name of a C++ type, for error messages.
std::string TypeName(const std::type_info& type);

template <class R, class... P, class... Args>
void SetFunctionTarget(Process& process, R (*fn)(P...), Args&&... args);

[[noreturn]] void ThrowNotRegistrable(const std::type_info& target);

template <class... P>
auto CallWith(auto fn, std::tuple<std::decay_t<P>...>& args) {
  return std::apply([&](auto&... a) { return fn(static_cast<P&&>(a)...); },
                    args);
}

struct ProcessAccess {
  static Process Make(std::shared_ptr<ProcessState> state) {
    return Process(std::move(state));
  }
  static const std::shared_ptr<ProcessState>& State(const Process& p) {
    return p.state_;
  }
  static void SetTarget(Process& p, std::function<void()> target,
                        internal::PickledTargetFactory pickled,
                        std::string what) {
    p.SetTarget(std::move(target), std::move(pickled), std::move(what));
  }
};

template <class R, class... P, class... Args>
void SetFunctionTarget(Process& process, R (*fn)(P...), Args&&... args) {
  static_assert(sizeof...(P) == sizeof...(Args),
                "Process(f, args...): the number of arguments must match the "
                "parameters of f");
  using Tuple = std::tuple<std::decay_t<P>...>;
  static_assert(std::is_copy_constructible_v<Tuple>,
                "Process(f, args...): the parameters of f must be copyable");
  auto bound = std::make_shared<Tuple>(std::forward<Args>(args)...);
  std::function<void()> call = [fn, bound] { CallWith<P...>(fn, *bound); };
  PickledTargetFactory pickled = [fn, bound]() -> PickledTarget {
    if constexpr ((reduction::Picklable<std::decay_t<P>> && ...)) {
      const reduction::RegisteredFunction& registered =
          reduction::RequireFunction(fn);
      PickledTarget target;
      target.function = registered.name;
      reduction::OutOfBand oob;
      target.args = reduction::dumps(*bound, &oob);
      target.fds.swap(oob.fds);
      return target;
    } else {
      (void)fn;
      std::string unpicklable;
      ((reduction::Picklable<std::decay_t<P>>
            ? void()
            : void(unpicklable += (unpicklable.empty() ? "" : ", ") +
                                  TypeName(typeid(std::decay_t<P>)))),
       ...);
      throw PicklingError(
          "an argument of the Process target cannot be pickled (type " +
          unpicklable +
          "), which the spawn and forkserver start methods need; give the "
          "type a reduction::Pickler (MP_PICKLE_FIELDS for a struct) or use "
          "the fork start method");
    }
  };
  ProcessAccess::SetTarget(process, std::move(call), std::move(pickled),
                           TypeName(typeid(fn)));
}

}  // namespace internal

template <class F, class... Args>
Process::Process(ProcessOptions options, F&& target, Args&&... args)
    : Process(std::move(options)) {
  using Fn = std::decay_t<F>;
  if constexpr (internal::FunctionPointerOf<Fn>::value) {
    internal::SetFunctionTarget(*this, static_cast<Fn>(target),
                                std::forward<Args>(args)...);
  } else {
    static_assert(std::is_invocable_v<Fn&, std::decay_t<Args>&...>,
                  "Process(target, args...): target is not callable with "
                  "these arguments");
    auto bound = std::make_shared<std::tuple<Fn, std::decay_t<Args>...>>(
        std::forward<F>(target), std::forward<Args>(args)...);
    std::function<void()> call = [bound] {
      std::apply([](auto& f, auto&... a) { std::invoke(f, a...); }, *bound);
    };
    internal::PickledTargetFactory pickled = []() -> internal::PickledTarget {
      internal::ThrowNotRegistrable(typeid(Fn));
    };
    internal::ProcessAccess::SetTarget(*this, std::move(call),
                                       std::move(pickled),
                                       internal::TypeName(typeid(Fn)));
  }
}

}  // namespace multiprocessing

#endif  // MULTIPROCESSING_PROCESS_PROCESS_H_
