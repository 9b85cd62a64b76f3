// Start methods and contexts, as in Python's multiprocessing.context:
// "fork" (the default), "spawn" and "forkserver", all three on Linux.
//
//   int main(int argc, char** argv) {
//     multiprocessing::freeze_support(argc, argv);  // first line of main()
//     multiprocessing::set_start_method("spawn");
//     ...
//     const multiprocessing::Context& ctx =
//         multiprocessing::get_context("forkserver");
//     multiprocessing::Process p = ctx.Process(f, 1);   // started by the
//                                                      // fork server
//   }
//
// spawn re-executes this program (/proc/self/exe, or set_executable()) with a
// marker argument; forkserver spawns the program once as a server that forks
// children on request. In both, the child only runs the target, so main()
// must call freeze_support(argc, argv) before anything else: in such a child
// it runs the target and exits, never returning. Starting a process under
// spawn or forkserver without freeze_support() having run throws
// RuntimeError, in the parent (a forgotten call) as in a spawned child (which
// would otherwise start processes again and again).
#ifndef MULTIPROCESSING_PROCESS_CONTEXT_H_
#define MULTIPROCESSING_PROCESS_CONTEXT_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "process/process.h"

namespace multiprocessing {

class Context;

namespace internal {

// What a context makes, filled in by the packages that own the objects, so
// that this header depends on none of them: ctx.Lock() compiles wherever
// synchronize/synchronize.h is included, ctx.Queue() with queues/queues.h,
// and so on. Each is a struct of static functions taking the context first.
struct ContextSynchronize;   // synchronize/synchronize.h
struct ContextQueues;        // queues/queues.h
struct ContextConnection;    // connection/connection.h
struct ContextSharedctypes;  // sharedctypes/sharedctypes.h
struct ContextPool;          // pool/pool.h
struct ContextManagers;      // managers/managers.h

}  // namespace internal

// The module-level API bound to one start method (a concrete context) or to
// the default, settable one (the default context). Contexts live for the
// whole program; several can be used side by side.
class Context {
 public:
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // A Process started with this context's start method.
  multiprocessing::Process Process(ProcessOptions options = {}) const {
    options.context = this;
    return multiprocessing::Process(std::move(options));
  }
  template <class F, class... Args,
            std::enable_if_t<!std::is_same_v<std::decay_t<F>, ProcessOptions>,
                             int> = 0>
  multiprocessing::Process Process(F&& target, Args&&... args) const {
    return multiprocessing::Process(ProcessOptions{.context = this},
                                    std::forward<F>(target),
                                    std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  multiprocessing::Process Process(ProcessOptions options, F&& target,
                                   Args&&... args) const {
    options.context = this;
    return multiprocessing::Process(std::move(options), std::forward<F>(target),
                                    std::forward<Args>(args)...);
  }

  // The objects of the module, made with this context: as Python's
  // ctx.Lock(), ctx.Queue(), ... . An object made with a concrete "fork"
  // context (or the default context while its method is fork) can be
  // shared only with processes started by fork, as in CPython: passing it
  // to a spawn or forkserver child throws RuntimeError at start(). The
  // module-level functions (multiprocessing::Lock(), ...) make objects
  // that every start method can share. Each needs its package's header.
  template <class H = internal::ContextSynchronize>
  auto Lock() const {
    return Make([] { return H::Lock(); });
  }
  template <class H = internal::ContextSynchronize>
  auto RLock() const {
    return Make([] { return H::RLock(); });
  }
  template <class H = internal::ContextSynchronize>
  auto Semaphore(int value = 1) const {
    return Make([&] { return H::Semaphore(value); });
  }
  template <class H = internal::ContextSynchronize>
  auto BoundedSemaphore(int value = 1) const {
    return Make([&] { return H::BoundedSemaphore(value); });
  }
  // Condition(lock): a new RLock of this context when no lock is given.
  template <class H = internal::ContextSynchronize, class... A>
  auto Condition(A&&... lock) const {
    return Make([&] { return H::Condition(std::forward<A>(lock)...); });
  }
  template <class H = internal::ContextSynchronize>
  auto Event() const {
    return Make([] { return H::Event(); });
  }
  // Barrier(parties, action, timeout).
  template <class H = internal::ContextSynchronize, class... A>
  auto Barrier(A&&... args) const {
    return Make([&] { return H::Barrier(std::forward<A>(args)...); });
  }
  // Queue(maxsize), JoinableQueue(maxsize), SimpleQueue().
  template <class H = internal::ContextQueues>
  auto Queue(int64_t maxsize = 0) const {
    return Make([&] { return H::Queue(maxsize); });
  }
  template <class H = internal::ContextQueues>
  auto JoinableQueue(int64_t maxsize = 0) const {
    return Make([&] { return H::JoinableQueue(maxsize); });
  }
  template <class H = internal::ContextQueues>
  auto SimpleQueue() const {
    return Make([] { return H::SimpleQueue(); });
  }
  template <class H = internal::ContextConnection>
  auto Pipe(bool duplex = true) const {
    return Make([&] { return H::Pipe(duplex); });
  }
  // Value<T>(initial, options), Value<'d'>(...), Array<T>(length or
  // values, options), RawValue, RawArray: as the module's functions, with
  // this context's RLock when they make one.
  template <class T, class H = internal::ContextSharedctypes, class... A>
  auto Value(A&&... args) const {
    return Make([&] { return H::template Value<T>(std::forward<A>(args)...); });
  }
  template <char C, class H = internal::ContextSharedctypes, class... A>
  auto Value(A&&... args) const {
    return Make([&] { return H::template Value<C>(std::forward<A>(args)...); });
  }
  template <class T, class H = internal::ContextSharedctypes, class... A>
  auto Array(A&&... args) const {
    return Make([&] { return H::template Array<T>(std::forward<A>(args)...); });
  }
  template <class T, class H = internal::ContextSharedctypes, class... A>
  auto Array(std::initializer_list<T> values, A&&... args) const {
    return Make(
        [&] { return H::template Array<T>(values, std::forward<A>(args)...); });
  }
  template <char C, class H = internal::ContextSharedctypes, class... A>
  auto Array(A&&... args) const {
    return Make([&] { return H::template Array<C>(std::forward<A>(args)...); });
  }
  template <class T, class H = internal::ContextSharedctypes, class... A>
  auto RawValue(A&&... args) const {
    return Make(
        [&] { return H::template RawValue<T>(std::forward<A>(args)...); });
  }
  template <char C, class H = internal::ContextSharedctypes, class... A>
  auto RawValue(A&&... args) const {
    return Make(
        [&] { return H::template RawValue<C>(std::forward<A>(args)...); });
  }
  template <class T, class H = internal::ContextSharedctypes, class... A>
  auto RawArray(A&&... args) const {
    return Make(
        [&] { return H::template RawArray<T>(std::forward<A>(args)...); });
  }
  template <class T, class H = internal::ContextSharedctypes, class... A>
  auto RawArray(std::initializer_list<T> values, A&&... args) const {
    return Make([&] {
      return H::template RawArray<T>(values, std::forward<A>(args)...);
    });
  }
  template <char C, class H = internal::ContextSharedctypes, class... A>
  auto RawArray(A&&... args) const {
    return Make(
        [&] { return H::template RawArray<C>(std::forward<A>(args)...); });
  }
  // Pool(options): workers started with this context's start method.
  template <class H = internal::ContextPool, class... A>
  auto Pool(A&&... options) const {
    return Make([&] { return H::Pool(*this, std::forward<A>(options)...); });
  }
  // Manager(): a started SyncManager whose server runs in a process of
  // this context.
  template <class H = internal::ContextManagers>
  auto Manager() const {
    return Make([&] { return H::Manager(*this); });
  }

  // The default context when `method` is unset; else the concrete context
  // "fork", "spawn" or "forkserver" (ValueError otherwise).
  const Context& get_context(
      std::optional<std::string_view> method = std::nullopt) const;
  // The start method. For the default context: fixes it to the default
  // ("fork") if unset, unless `allow_none`, which returns std::nullopt then.
  std::optional<std::string> get_start_method(bool allow_none = false) const;
  // Default context only (ValueError on a concrete one). RuntimeError if
  // already set, unless `force`; std::nullopt with `force` unsets it.
  void set_start_method(std::optional<std::string_view> method,
                        bool force = false) const;
  // {"fork", "spawn", "forkserver"}; the first is the default.
  std::vector<std::string> get_all_start_methods() const;

  multiprocessing::Process current_process() const;
  std::optional<multiprocessing::Process> parent_process() const;
  std::vector<multiprocessing::Process> active_children() const;
  int cpu_count() const;
  void freeze_support(int argc, char** argv) const;
  void set_executable(std::string path) const;

 private:
  template <class F>
  auto Make(F&& make) const;

  friend const Context& DefaultContext();
  friend const Context& ConcreteContext(std::string_view method);
  explicit Context(std::string method) : method_(std::move(method)) {}
  std::string method_;  // empty for the default context
};

namespace internal {
// While a context's factory runs (ctx.Lock(), ctx.Queue(), ...): that
// context's start method, so that what is created can remember it. Empty
// outside such a call, as for the module-level functions.
const std::string& CreatingStartMethod();
class ScopedCreatingContext {
 public:
  explicit ScopedCreatingContext(const Context& ctx);
  ~ScopedCreatingContext();
  ScopedCreatingContext(const ScopedCreatingContext&) = delete;
  ScopedCreatingContext& operator=(const ScopedCreatingContext&) = delete;

 private:
  std::string saved_;
};

// While the target of a spawn or forkserver child is pickled: its start
// method; empty otherwise. Objects that only fork children may share check
// it (see SemLock).
const std::string& SpawningStartMethod();

}  // namespace internal

// Runs a factory with this context as the creating one.
template <class F>
auto Context::Make(F&& make) const {
  internal::ScopedCreatingContext creating(*this);
  return make();
}

// The default context and its API as free functions.
const Context& get_context(
    std::optional<std::string_view> method = std::nullopt);
std::optional<std::string> get_start_method(bool allow_none = false);
void set_start_method(std::optional<std::string_view> method,
                      bool force = false);
std::vector<std::string> get_all_start_methods();

// Call first thing in main(). In a child started by spawn or forkserver (and
// in the fork server itself) it does the child's work and exits without
// returning; otherwise it records argv[0] and returns.
void freeze_support(int argc, char** argv);

// The program re-executed by spawn and forkserver (default /proc/self/exe).
// It must be this program, or one registering the same functions and calling
// freeze_support().
void set_executable(std::string path);
std::string get_executable();

}  // namespace multiprocessing

#endif  // MULTIPROCESSING_PROCESS_CONTEXT_H_
