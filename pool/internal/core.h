// The machinery under pool::Pool and pool::ThreadPool that the typed API in
// pool/pool.h drives: jobs (what an AsyncResult or an imap iterator waits
// on), chunks (the unit a worker runs), the backend interface, and the chunk
// runners that worker processes look up by name. Users include pool/pool.h.
#ifndef MULTIPROCESSING_POOL_INTERNAL_CORE_H_
#define MULTIPROCESSING_POOL_INTERNAL_CORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "errors/errors.h"
#include "reduction/pickle.h"

namespace multiprocessing::pool::internal {

class PoolCore;

// The pool whose result-handling thread is the calling thread; null on every
// other thread. Callbacks run there, and a callback that waits on its own
// pool would wait for itself: such waits raise instead (see
// ThrowBlockingOnResultThread).
inline thread_local const PoolCore* t_result_thread_of = nullptr;

// RuntimeError: `call` would block the result-handling thread of its pool
// until that same thread delivered a result, which it never could.
[[noreturn]] void ThrowBlockingOnResultThread(const char* call);

// Raises that RuntimeError when the caller is `core`'s result thread.
inline void CheckNotResultThread(const PoolCore* core, const char* call) {
  if (core != nullptr && t_result_thread_of == core) {
    ThrowBlockingOnResultThread(call);
  }
}

// A submitted call (apply, map, imap, ...) made of chunks. The pool reports
// each chunk's outcome exactly once, from its result-handling thread.
class JobBase {
 public:
  virtual ~JobBase() = default;
  // The pickled list of the chunk's results (process pools).
  virtual void Deliver(uint32_t chunk, std::string_view payload) = 0;
  // The chunk failed: the task threw, its worker died, the pool ended.
  virtual void Fail(uint32_t chunk, std::exception_ptr error) = 0;
  // Whether delivering an outcome runs a user's callback, which must happen
  // on the pool's result-handling thread.
  virtual bool has_callbacks() const { return false; }

  // Whether the job's outcome is settled and its remaining chunks are of no
  // use (a map that failed, a cancelled call): the pool drops those not yet
  // started.
  bool abandoned() const {
    return state_.load(std::memory_order_relaxed) >= kAbandoned;
  }
  // True once, for the first caller after the job was abandoned: that caller
  // drops the job's queued chunks.
  bool TakeAbandoned() {
    if (state_.load(std::memory_order_relaxed) != kAbandoned) return false;
    int expected = kAbandoned;
    return state_.compare_exchange_strong(expected, kDropped,
                                          std::memory_order_acq_rel);
  }
  // Called by the pool as it hands one of the job's chunks to a worker:
  // false (do not run it) once the job is abandoned.
  bool TryStart() {
    int s = state_.load(std::memory_order_relaxed);
    while (s == kLive) {
      if (state_.compare_exchange_weak(s, kStarted,
                                       std::memory_order_acq_rel)) {
        return true;
      }
    }
    return s == kStarted;
  }
  // Withdraws the job if no chunk of it was handed to a worker yet (then
  // true, and the pool drops its chunks); false once one was.
  bool Cancel() {
    int expected = kLive;
    return state_.compare_exchange_strong(expected, kAbandoned,
                                          std::memory_order_acq_rel);
  }

  // Settles nothing; marks the job's remaining chunks as unwanted.
  void Abandon() {
    int s = state_.load(std::memory_order_relaxed);
    while (s < kAbandoned && !state_.compare_exchange_weak(
                                 s, kAbandoned, std::memory_order_acq_rel)) {
    }
  }

 private:
  static constexpr int kLive = 0, kStarted = 1, kAbandoned = 2, kDropped = 3;
  std::atomic<int> state_{kLive};
};

// How a worker process finds the code of a chunk: the runner (by the name it
// registered in every process at start-up) and the user's function (by its
// registered name, or by address under fork, where the image is the same).
struct FunctionRef {
  std::string runner;
  std::string name;  // empty: use `address`
  const void* address = nullptr;
};

// One chunk of a job. Process pools send `payload` (the pickled list of
// arguments); thread pools call `run` on a worker thread, which returns the
// closure that delivers the result on the result-handling thread.
struct Chunk {
  uint32_t index = 0;
  std::string payload;
  std::function<std::function<void()>()> run;
};

// A call that a spawned process can make: the function's registered name,
// the runner for its signature and the pickled list of one argument tuple.
struct PickledCall {
  std::string function;
  std::string runner;
  std::string args;
};

// A handle's way back to its pool, which it may outlive: `core` is null once
// the pool is gone.
struct PoolLink {
  std::mutex mu;
  PoolCore* core = nullptr;
};

// What Pool and ThreadPool implement.
class PoolCore {
 public:
  // Kills the worker processes running a chunk of `job` (abandoned first);
  // the pool replaces them. Threads cannot be stopped: a no-op there.
  virtual void KillRunning(const JobBase& job) { (void)job; }
  virtual ~PoolCore() = default;
  // True for worker threads: chunks carry `run` instead of a payload.
  virtual bool threads() const = 0;
  // True when workers are forked from this image, so that unregistered
  // functions can be named by address.
  virtual bool forked() const = 0;
  virtual int processes() const = 0;
  // ValueError("Pool not running") unless the pool accepts work.
  virtual void CheckRunning() const = 0;
  // Queues the chunks of `job`; with `function` for process pools.
  virtual void Submit(const std::shared_ptr<JobBase>& job,
                      const FunctionRef& function,
                      std::vector<Chunk> chunks) = 0;
  virtual void close() = 0;
  virtual void terminate() = 0;
  virtual void join() = 0;

  // A synchronous call (apply, map) about to submit work and wait for it:
  // the calling thread may handle results itself while it waits, which saves
  // the hop through the result-handling thread. BeginHelp() before the
  // submission, then HelpUntil(), which returns once `ready()` holds, then
  // EndHelp() (also when the submission threw).
  virtual void BeginHelp() {}
  virtual void HelpUntil(const std::function<bool()>& ready) { (void)ready; }
  virtual void EndHelp() {}
};

// BeginHelp() ... EndHelp() as a scope.
class HelpScope {
 public:
  explicit HelpScope(PoolCore& core) : core_(core) { core_.BeginHelp(); }
  ~HelpScope() { core_.EndHelp(); }
  HelpScope(const HelpScope&) = delete;
  HelpScope& operator=(const HelpScope&) = delete;
  void Wait(const std::function<bool()>& ready) { core_.HelpUntil(ready); }

 private:
  PoolCore& core_;
};

// A chunk runner: decodes the argument list, calls `fn` on each element and
// returns the pickled list of results. Exceptions of `fn` propagate.
using RunnerFn = std::string (*)(const void* fn, std::string_view payload);

// Registers `runner` under `key` in this process; returns true.
bool RegisterRunner(const char* key, RunnerFn runner);
// nullptr if unknown.
RunnerFn FindRunner(std::string_view key);

// Results of void functions are None.
template <class R>
using ResultType = std::conditional_t<std::is_void_v<R>, std::nullptr_t, R>;

// One runner per (star, signature): `kStar` calls fn(*args) on tuples, else
// fn(arg) on single values. The static member makes every process that holds
// this instantiation register it before main(), so a spawned worker (the same
// program) finds it by name.
template <bool kStar, class R, class... P>
struct Runner {
  static std::string Run(const void* address, std::string_view payload) {
    auto fn = reinterpret_cast<R (*)(P...)>(const_cast<void*>(address));
    reduction::Writer w;
    w.begin_list();
    auto save_call = [&](auto&&... args) {
      if constexpr (std::is_void_v<R> || !reduction::Picklable<R>) {
        fn(static_cast<P&&>(args)...);
        w.write_none();
      } else {
        w.save(fn(static_cast<P&&>(args)...));
      }
    };
    if constexpr (kStar) {
      auto items =
          reduction::loads<std::vector<std::tuple<std::decay_t<P>...>>>(
              payload);
      for (auto& item : items) std::apply(save_call, item);
    } else {
      static_assert(sizeof...(P) == 1);
      auto items = reduction::loads<
          std::vector<std::decay_t<std::tuple_element_t<0, std::tuple<P...>>>>>(
          payload);
      for (auto& item : items) save_call(item);
    }
    w.end_list();
    return w.finish();
  }
  static const char* Key() { return typeid(Runner).name(); }
  static inline const bool registered = RegisterRunner(Key(), &Run);
};

// The pickled list of `items` (each converted to T first).
template <class T, class Range>
std::string PickleList(const Range& items, size_t begin, size_t end) {
  reduction::Writer w;
  w.begin_list();
  auto it = std::begin(items);
  std::advance(it, begin);
  for (size_t i = begin; i < end; ++i, ++it) {
    if constexpr (std::is_same_v<std::decay_t<decltype(*it)>, T>) {
      w.save(*it);
    } else {
      w.save(T(*it));
    }
  }
  w.end_list();
  return w.finish();
}

// CPython's default chunksize for map: ceil(n / (4 * workers)).
inline size_t DefaultChunksize(size_t n, int workers) {
  if (n == 0) return 0;
  size_t per = 4 * static_cast<size_t>(workers > 0 ? workers : 1);
  size_t chunksize = n / per;
  if (n % per != 0) ++chunksize;
  return chunksize;
}

// The exception `e` as its Python class, for a result crossing a boundary.
std::exception_ptr Rebuild(std::string_view python_name,
                           const std::string& message);

// Calls a user's callback, reporting (not propagating) what it throws.
void RunCallback(const std::function<void()>& call);

}  // namespace multiprocessing::pool::internal

#endif  // MULTIPROCESSING_POOL_INTERNAL_CORE_H_
