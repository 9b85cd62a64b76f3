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

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "process/process.h"

namespace multiprocessing {

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
  friend const Context& DefaultContext();
  friend const Context& ConcreteContext(std::string_view method);
  explicit Context(std::string method) : method_(std::move(method)) {}
  std::string method_;  // empty for the default context
};

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
