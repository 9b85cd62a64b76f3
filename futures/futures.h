// Python's concurrent.futures over the library's pools: ProcessPoolExecutor
// runs calls in worker processes (a pool::Pool), ThreadPoolExecutor in worker
// threads (a pool::ThreadPool). Futures, wait() and as_completed() are in
// futures/future.h, included here.
//
//   bool is_prime(int64_t n);
//   MP_REGISTER_FUNCTION(is_prime);  // needed under spawn and forkserver only
//
//   int main(int argc, char** argv) {
//     multiprocessing::freeze_support(argc, argv);
//     namespace cf = multiprocessing::futures;
//     cf::ProcessPoolExecutor executor({.max_workers = 4});
//     cf::Future<bool> f = executor.submit(is_prime, int64_t{97});
//     std::cout << f.result(std::chrono::seconds(5)) << "\n";
//     for (bool prime : executor.map(is_prime, numbers)) ...
//     auto it = executor.map(is_prime, numbers,
//                            cf::MapOptions{.timeout = 60s, .chunksize = 8});
//   }  // the destructor waits for the calls: shutdown(wait = true)
//
// What a submit() accepts: ProcessPoolExecutor, what the pool accepts (any
// function under fork; under spawn and forkserver a function registered with
// MP_REGISTER_FUNCTION, else PicklingError from submit()), with picklable
// arguments and result. ThreadPoolExecutor, any callable with any copyable
// arguments; nothing is pickled.
//
// Calls wait in the executor and go to the pool only as workers free up (at
// most max_workers calls in the pool), so a call still waiting can be
// cancelled. CPython lets one more call wait in its call queue; here that call
// would be given to a busy worker (the pool assigns a call to a worker when it
// receives it) and could wait behind a long call while another worker idles.
// A future is running once its call is handed to the pool, which gives it to
// an idle worker: ProcessPoolExecutor marks it then (the worker starts it
// after the hand-over); ThreadPoolExecutor when a thread starts it.
//
// A worker process that dies while running a call (killed, crashed, exited),
// or workers that die before they can start (a failing initializer), break a
// ProcessPoolExecutor, as in CPython: every pending and running future fails
// with BrokenProcessPool, so does every later submit(), and shutdown() stops
// the remaining workers. A failing initializer breaks a ThreadPoolExecutor
// (BrokenThreadPool).
#ifndef MULTIPROCESSING_FUTURES_FUTURES_H_
#define MULTIPROCESSING_FUTURES_FUTURES_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "errors/errors.h"
#include "futures/future.h"
#include "pool/pool.h"
#include "reduction/registry.h"

namespace multiprocessing {

class Context;

namespace futures {

// map()'s keyword arguments, given last: `map(f, xs, MapOptions{...})`.
struct MapOptions {
  // For all the results, measured from the map() call; unset: no limit.
  Timeout timeout;
  // ProcessPoolExecutor: how many items one task carries (at least 1).
  // ThreadPoolExecutor ignores it, as CPython's does.
  size_t chunksize = 1;
};

struct ProcessPoolExecutorOptions {
  // Unset: cpu_count(). At least 1.
  std::optional<int> max_workers;
  // The start method (get_context("spawn")); null: the default context.
  const Context* mp_context = nullptr;
  // Run in each worker when it starts: `.initializer = {init, args...}` is
  // Python's initializer and initargs.
  pool::Initializer initializer;
  // Unset: workers live as long as the executor; else each is replaced after
  // that many calls (at least 1). Unlike CPython, fork is allowed too.
  std::optional<int> max_tasks_per_child;
};

struct ThreadPoolExecutorOptions {
  // Unset: min(32, cpu_count() + 4), as CPython.
  std::optional<int> max_workers;
  pool::Initializer initializer;
};

namespace internal {

// The result type of fn(args...): void is None (std::nullptr_t).
template <class F, class... A>
using ResultOf = std::conditional_t<
    std::is_void_v<std::invoke_result_t<std::decay_t<F>&, std::decay_t<A>&...>>,
    std::nullptr_t,
    std::invoke_result_t<std::decay_t<F>&, std::decay_t<A>&...>>;

// A submitted call that waits in the executor for a place in the pool.
struct WorkItem {
  std::shared_ptr<StateBase> future;
  // Hands the call to the pool; the pool then reports exactly once.
  std::function<void()> dispatch;
};

// The executor's queue of calls and its state, shared with the pool's
// callbacks (which may outlive a call to the executor's methods).
class ExecutorCore {
 public:
  ExecutorCore(size_t in_flight_limit, bool threads)
      : limit_(in_flight_limit), threads_(threads) {}

  // Dispatches the call now if the pool has room, else queues it.
  // RuntimeError after shutdown; BrokenProcessPool / BrokenThreadPool when
  // broken.
  void Submit(std::shared_ptr<WorkItem> item);
  // The pool reported on `future`: its place goes to the next queued call.
  void Settled(const StateBase* future);
  // The pool failed `future`: the error is its outcome, unless it says that a
  // worker process was lost, which breaks the executor.
  void Failed(const std::shared_ptr<StateBase>& future,
              std::exception_ptr error);
  // Fails every queued and running call and refuses new ones; `why` says
  // what happened.
  void Break(const std::string& why);
  // Throws the executor's Broken* error if it is broken.
  void CheckNotBroken() const;
  bool broken() const;
  // Refuses new calls; `cancel_futures` cancels the queued ones; `wait`
  // returns once no call is queued or in the pool, or the executor broke.
  void Shutdown(bool wait, bool cancel_futures);

 private:
  // Dispatches `item`, then each call that takes the place of one whose
  // dispatch failed.
  void Launch(std::shared_ptr<WorkItem> item);
  // Under mu_: the next queued call that is not cancelled, now in the pool.
  std::shared_ptr<WorkItem> TakeNextLocked();
  bool StartLocked(const std::shared_ptr<WorkItem>& item);
  std::exception_ptr BrokenError(bool at_submit) const;

  const size_t limit_;
  const bool threads_;
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::deque<std::shared_ptr<WorkItem>> pending_;
  std::unordered_map<const StateBase*, std::shared_ptr<StateBase>> in_flight_;
  bool shutdown_ = false;
  std::string broken_;  // why, once broken
};

// The error the pool's error callback was given, as an exception_ptr (the
// callback runs while the pool handles it, so it is the current exception).
std::exception_ptr CurrentError(const std::exception& e);

// Python's pool callbacks that settle `state` and free its place.
template <class V>
pool::Callbacks<V> SettleCallbacks(
    const std::shared_ptr<ExecutorCore>& core,
    const std::shared_ptr<FutureState<V>>& state) {
  pool::Callbacks<V> callbacks;
  callbacks.callback = [core, state](const V& value) {
    state->TrySetResult(value);
    core->Settled(state.get());
  };
  callbacks.error_callback = [core, state](const std::exception& e) {
    core->Failed(state, CurrentError(e));
    core->Settled(state.get());
  };
  return callbacks;
}

// A call on a ThreadPoolExecutor: the pool runs RunThreadCall(task) on a
// worker thread, which starts the future unless it was cancelled meanwhile.
template <class V>
struct ThreadTask {
  std::shared_ptr<std::function<V()>> call;
  std::shared_ptr<FutureState<V>> state;
  std::shared_ptr<ExecutorCore> core;
};

[[noreturn]] void ThrowCancelledBeforeStart();
[[noreturn]] void ThrowForeignException();

template <class V>
V RunThreadCall(ThreadTask<V> task) {
  task.core->CheckNotBroken();
  if (!task.state->set_running_or_notify_cancel()) ThrowCancelledBeforeStart();
  try {
    return (*task.call)();
  } catch (const std::exception&) {
    throw;
  } catch (...) {
    // The pool reports std::exceptions only.
    ThrowForeignException();
  }
}

// The thread pool's initializer: runs the user's initializer of the
// executor registered as `id`, and breaks that executor if it throws. (An id,
// not a pointer: the pool's Initializer wants picklable arguments.)
struct ThreadInitializer {
  pool::Initializer user;
  std::weak_ptr<ExecutorCore> core;
};
uint64_t RegisterThreadInitializer(std::shared_ptr<ThreadInitializer> init);
void UnregisterThreadInitializer(uint64_t id);
void RunThreadInitializer(uint64_t id);

// Whether the last of `Rest` is a MapOptions.
template <class... Rest>
struct LastIsMapOptions : std::false_type {};
template <class Last>
struct LastIsMapOptions<Last> : std::is_same<std::decay_t<Last>, MapOptions> {};
template <class First, class Second, class... Rest>
struct LastIsMapOptions<First, Second, Rest...>
    : LastIsMapOptions<Second, Rest...> {};

// One item of map(): the element of the one iterable, or a tuple of one
// element of each.
template <class... E>
struct MapItem {
  using type = std::tuple<E...>;
};
template <class E>
struct MapItem<E> {
  using type = E;
};

template <class Range>
using ElementOf = std::decay_t<decltype(*std::begin(std::declval<Range&>()))>;

std::optional<Clock::time_point> MapDeadline(Timeout timeout);
[[noreturn]] void ThrowMapTimeout();

}  // namespace internal

// Executor.map()'s results, in order, as they are needed (Python's
// generator): next() waits for the next one until the deadline of the map()
// call (TimeoutError), and raises a call's exception. After an error, or when
// this object is destroyed, the calls not yet returned are cancelled. Also an
// input range: `for (bool prime : executor.map(is_prime, numbers))`.
template <class T>
class MapIterator {
 public:
  MapIterator(std::vector<Future<std::vector<T>>> chunks,
              std::optional<internal::Clock::time_point> deadline)
      : chunks_(std::move(chunks)), deadline_(deadline) {}
  MapIterator(const MapIterator&) = delete;
  MapIterator& operator=(const MapIterator&) = delete;
  MapIterator(MapIterator&& other) noexcept { *this = std::move(other); }
  MapIterator& operator=(MapIterator&& other) noexcept {
    CancelRest();
    chunks_ = std::move(other.chunks_);
    deadline_ = other.deadline_;
    next_chunk_ = other.next_chunk_;
    current_ = std::move(other.current_);
    position_ = other.position_;
    other.chunks_.clear();
    other.next_chunk_ = 0;
    return *this;
  }
  ~MapIterator() { CancelRest(); }

  // The next result; std::nullopt after the last.
  std::optional<T> next() {
    for (;;) {
      if (position_ < current_.size()) return std::move(current_[position_++]);
      if (next_chunk_ >= chunks_.size()) return std::nullopt;
      Timeout left;
      if (deadline_) {
        auto now = internal::Clock::now();
        left = std::chrono::duration<double>(
            *deadline_ > now ? *deadline_ - now : internal::Clock::duration{});
      }
      try {
        current_ = chunks_[next_chunk_].result(left);
      } catch (const TimeoutError&) {
        CancelRest();
        internal::ThrowMapTimeout();
      } catch (...) {
        CancelRest();
        throw;
      }
      position_ = 0;
      ++next_chunk_;
    }
  }

  using iterator = internal::NextIterator<MapIterator, T>;
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  void CancelRest() {
    for (size_t i = next_chunk_; i < chunks_.size(); ++i) chunks_[i].cancel();
    next_chunk_ = chunks_.size();
    current_.clear();
    position_ = 0;
  }

  std::vector<Future<std::vector<T>>> chunks_;
  std::optional<internal::Clock::time_point> deadline_;
  size_t next_chunk_ = 0;
  std::vector<T> current_;
  size_t position_ = 0;
};

namespace internal {

// What both executors share, over their pool type.
template <class PoolT>
class ExecutorApi {
 public:
  static constexpr bool kThreads = std::is_same_v<PoolT, pool::ThreadPool>;

  ExecutorApi(const ExecutorApi&) = delete;
  ExecutorApi& operator=(const ExecutorApi&) = delete;

  // Schedules fn(args...) and returns its future. RuntimeError after
  // shutdown(); BrokenProcessPool / BrokenThreadPool once broken;
  // PicklingError for an unregistered function under spawn / forkserver.
  template <class F, class... A>
  Future<ResultOf<F, A...>> submit(F&& fn, A&&... args) {
    using V = ResultOf<F, A...>;
    if constexpr (kThreads) {
      return SubmitThreadCall<V>([fn = std::decay_t<F>(std::forward<F>(fn)),
                                  args = std::make_tuple(std::decay_t<A>(
                                      std::forward<A>(args))...)]() -> V {
        auto copy = args;
        return Invoke(fn, copy);
      });
    } else {
      CheckFunction(fn);
      return Enqueue<V>(
          [fn = std::decay_t<F>(std::forward<F>(fn)),
           args = std::make_tuple(std::decay_t<A>(std::forward<A>(args))...)](
              PoolT& pool, const auto&, pool::Callbacks<V> callbacks,
              const auto&) {
            pool.apply_async(fn, args, std::move(callbacks));
          });
    }
  }

  // fn applied to the items of the iterables taken together (zip; the
  // shortest ends it), with MapOptions last if any:
  // `map(f, xs)`, `map(g, xs, ys, MapOptions{.timeout = 10s})`.
  // Every call is submitted now; the results come lazily (MapIterator).
  template <class F, class... Rest>
  auto map(F&& fn, Rest&&... rest) {
    if constexpr (LastIsMapOptions<Rest...>::value) {
      auto all = std::forward_as_tuple(rest...);
      const MapOptions& options = std::get<sizeof...(Rest) - 1>(all);
      return [&]<size_t... I>(std::index_sequence<I...>) {
        return Map(fn, options, std::get<I>(all)...);
      }
      (std::make_index_sequence<sizeof...(Rest) - 1>{});
    } else {
      return Map(fn, MapOptions{}, rest...);
    }
  }

  // No more calls. `cancel_futures` cancels those still queued in the
  // executor; `wait` blocks until the others completed and the workers
  // exited. A broken executor stops its workers instead of waiting.
  void shutdown(bool wait = true, bool cancel_futures = false) {
    core_->Shutdown(wait, cancel_futures);
    if (!wait) return;
    std::lock_guard<std::mutex> lock(join_mu_);
    if (joined_) return;
    joined_ = true;
    if (core_->broken()) {
      pool_->terminate();
    } else {
      pool_->close();
      pool_->join();
    }
  }

  // The number of workers.
  int max_workers() const { return pool_->processes(); }

 protected:
  // What a constructor builds: the core first (a thread pool's initializer
  // reports to it), then the pool.
  struct Parts {
    std::shared_ptr<ExecutorCore> core;
    std::unique_ptr<PoolT> pool;
    bool forked = false;
    uint64_t initializer_id = 0;  // RegisterThreadInitializer's
  };
  explicit ExecutorApi(Parts parts)
      : core_(std::move(parts.core)),
        pool_(std::move(parts.pool)),
        forked_(parts.forked),
        initializer_id_(parts.initializer_id) {}
  // shutdown(wait = true), as leaving Python's `with` block.
  ~ExecutorApi() {
    try {
      shutdown(true);
    } catch (const std::exception& e) {
      std::cerr << "executor shutdown failed: " << e.what() << std::endl;
    }
    pool_.reset();  // its threads ran the initializer
    if (initializer_id_ != 0) UnregisterThreadInitializer(initializer_id_);
  }

 private:
  template <class F, class Tuple>
  static auto Invoke(F& fn, Tuple& args) {
    if constexpr (std::is_void_v<decltype(std::apply(fn, args))>) {
      std::apply(fn, args);
      return nullptr;
    } else {
      return std::apply(fn, args);
    }
  }

  // Under spawn / forkserver a function travels by its registered name:
  // refuse an unregistered one now rather than in a worker.
  template <class F>
  void CheckFunction(const F& fn) const {
    using D = std::decay_t<F>;
    if constexpr (std::is_pointer_v<D> &&
                  std::is_function_v<std::remove_pointer_t<D>>) {
      if (!forked_) reduction::RequireFunction(static_cast<D>(fn));
    }
  }

  // Queues a call whose `dispatch(pool, state, callbacks)` hands it to the
  // pool.
  template <class V, class Dispatch>
  Future<V> Enqueue(Dispatch dispatch) {
    auto state = std::make_shared<FutureState<V>>();
    auto item = std::make_shared<WorkItem>();
    item->future = state;
    // Weak: the core holds the item; the pool's callbacks hold the core.
    std::weak_ptr<ExecutorCore> weak = core_;
    item->dispatch = [pool = pool_.get(), weak, state,
                      dispatch = std::move(dispatch)] {
      std::shared_ptr<ExecutorCore> core = weak.lock();
      dispatch(*pool, state, SettleCallbacks<V>(core, state), core);
    };
    core_->Submit(std::move(item));
    return Future<V>(std::move(state));
  }

  template <class V, class Call>
  Future<V> SubmitThreadCall(Call call) {
    auto shared = std::make_shared<std::function<V()>>(std::move(call));
    return Enqueue<V>([shared](PoolT& pool,
                               const std::shared_ptr<FutureState<V>>& state,
                               pool::Callbacks<V> callbacks,
                               const std::shared_ptr<ExecutorCore>& core) {
      pool.apply_async(&RunThreadCall<V>,
                       std::make_tuple(ThreadTask<V>{shared, state, core}),
                       std::move(callbacks));
    });
  }

  template <class F, class... Ranges>
  auto Map(F& fn, const MapOptions& options, const Ranges&... ranges) {
    static_assert(sizeof...(Ranges) >= 1,
                  "map(f, iterables...) needs at least one iterable");
    using V = ResultOf<F, ElementOf<const Ranges>...>;
    using Item = typename MapItem<ElementOf<const Ranges>...>::type;
    const auto deadline = MapDeadline(options.timeout);
    if (options.chunksize < 1) {
      throw ValueError(
          "map(): chunksize must be at least 1; got 0 (MapOptions.chunksize)");
    }
    if constexpr (!kThreads) CheckFunction(fn);
    const size_t chunksize = kThreads ? 1 : options.chunksize;
    std::vector<Future<std::vector<V>>> chunks;
    try {
      auto its = std::make_tuple(std::begin(ranges)...);
      auto ends = std::make_tuple(std::end(ranges)...);
      auto at_end = [&]<size_t... I>(std::index_sequence<I...>) {
        return ((std::get<I>(its) == std::get<I>(ends)) || ...);
      };
      auto take = [&]<size_t... I>(std::index_sequence<I...>)->Item {
        Item item{*std::get<I>(its)...};
        (++std::get<I>(its), ...);
        return item;
      };
      constexpr auto kIndex = std::index_sequence_for<Ranges...>{};
      std::vector<Item> chunk;
      while (!at_end(kIndex)) {
        chunk.push_back(take(kIndex));
        if (chunk.size() == chunksize) {
          chunks.push_back(SubmitChunk<V>(fn, std::move(chunk)));
          chunk.clear();
        }
      }
      if (!chunk.empty())
        chunks.push_back(SubmitChunk<V>(fn, std::move(chunk)));
    } catch (...) {
      for (auto& f : chunks) f.cancel();
      throw;
    }
    return MapIterator<V>(std::move(chunks), deadline);
  }

  // One map task: the results of fn on each item of `chunk`.
  template <class V, class F, class Item>
  Future<std::vector<V>> SubmitChunk(F& fn, std::vector<Item> chunk) {
    if constexpr (kThreads) {
      return SubmitThreadCall<std::vector<V>>(
          [fn, chunk = std::move(chunk)]() -> std::vector<V> {
            std::vector<V> out;
            out.reserve(chunk.size());
            for (const Item& item : chunk) {
              auto copy = item;
              if constexpr (IsTuple<Item>::value) {
                out.push_back(Invoke(fn, copy));
              } else {
                auto one = std::forward_as_tuple(copy);
                out.push_back(Invoke(fn, one));
              }
            }
            return out;
          });
    } else {
      return Enqueue<std::vector<V>>(
          [fn = std::decay_t<F>(fn), chunk = std::move(chunk)](
              PoolT& pool, const auto&,
              pool::Callbacks<std::vector<V>> callbacks, const auto&) {
            if constexpr (IsTuple<Item>::value) {
              pool.starmap_async(fn, chunk, chunk.size(), std::move(callbacks));
            } else {
              pool.map_async(fn, chunk, chunk.size(), std::move(callbacks));
            }
          });
    }
  }

  template <class X>
  struct IsTuple : std::false_type {};
  template <class... X>
  struct IsTuple<std::tuple<X...>> : std::true_type {};

  // Declared first: the pool (and its callbacks) go before the core.
  std::shared_ptr<ExecutorCore> core_;
  std::unique_ptr<PoolT> pool_;
  const bool forked_;
  const uint64_t initializer_id_;
  std::mutex join_mu_;
  bool joined_ = false;
};

}  // namespace internal

// Python's concurrent.futures.ProcessPoolExecutor over a pool::Pool.
class ProcessPoolExecutor : public internal::ExecutorApi<pool::Pool> {
 public:
  explicit ProcessPoolExecutor(ProcessPoolExecutorOptions options = {})
      : ExecutorApi(Build(std::move(options))) {}
  explicit ProcessPoolExecutor(int max_workers)
      : ProcessPoolExecutor(
            ProcessPoolExecutorOptions{.max_workers = max_workers}) {}

 private:
  static Parts Build(ProcessPoolExecutorOptions options);
};

// Python's concurrent.futures.ThreadPoolExecutor over a pool::ThreadPool.
class ThreadPoolExecutor : public internal::ExecutorApi<pool::ThreadPool> {
 public:
  explicit ThreadPoolExecutor(ThreadPoolExecutorOptions options = {})
      : ExecutorApi(Build(std::move(options))) {}
  explicit ThreadPoolExecutor(int max_workers)
      : ThreadPoolExecutor(
            ThreadPoolExecutorOptions{.max_workers = max_workers}) {}

 private:
  static Parts Build(ThreadPoolExecutorOptions options);
};

}  // namespace futures
}  // namespace multiprocessing

#endif  // MULTIPROCESSING_FUTURES_FUTURES_H_
