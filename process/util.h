// Hooks for libraries built on processes (queues, pools, managers), as in
// Python's multiprocessing.util: finalizers run at exit, hooks run in forked
// children, a temp directory removed at exit.
//
//   multiprocessing::Finalize cleanup([dir] { RemoveDir(dir); },
//                                     /*exitpriority=*/0);
//   ...
//   cleanup();         // runs it now (once); or cancel()
//
//   multiprocessing::register_after_fork([] { ResetMyThreads(); });
#ifndef MULTIPROCESSING_PROCESS_UTIL_H_
#define MULTIPROCESSING_PROCESS_UTIL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace multiprocessing {
namespace internal {
struct FinalizerEntry;
}  // namespace internal

// A callback run at most once, in the process that created it: when called,
// or at exit of that process if it has an exit priority (highest priority
// first; equal priorities in reverse order of creation). Finalizers with
// priority >= 0 run before the exit function terminates daemonic children and
// joins the others, the rest after. A forked child starts with none.
// Copies share one registration.
class Finalize {
 public:
  Finalize() = default;
  explicit Finalize(std::function<void()> callback,
                    std::optional<int> exitpriority = std::nullopt);

  // Runs the callback unless it already ran or was cancelled; nothing in
  // another process than the creator.
  void operator()() const;
  // Forgets the callback without running it.
  void cancel() const;
  bool still_active() const;

 private:
  std::shared_ptr<internal::FinalizerEntry> entry_;
};

// Registers `func` to run in every child started with the fork start method
// (before the target runs), in order of registration. Returns a token for
// unregister_after_fork.
int register_after_fork(std::function<void()> func);
void unregister_after_fork(int token);

// A private directory (mode 0700, under $TMPDIR or /tmp) for this process,
// created on first use and removed with its content at exit.
std::string get_temp_dir();

// True once the exit function started.
bool is_exiting();

}  // namespace multiprocessing

#endif  // MULTIPROCESSING_PROCESS_UTIL_H_
