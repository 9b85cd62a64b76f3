// Pools of worker processes or threads, as Python's multiprocessing.Pool and
// multiprocessing.pool.ThreadPool.
//
//   int square(int x) { return x * x; }
//   MP_REGISTER_FUNCTION(square);  // needed under spawn and forkserver only
//
//   int main(int argc, char** argv) {
//     multiprocessing::freeze_support(argc, argv);
//     multiprocessing::Pool pool(4);                        // or Pool({...})
//     std::vector<int> squares = pool.map(square, std::vector{1, 2, 3});
//     auto r = pool.apply_async(square, {10});              // args as a tuple
//     std::cout << r.get(std::chrono::seconds(1)) << "\n";  // 100
//   }
//
// Tasks are plain function pointers. Under the fork start method (the default)
// any function works; under spawn and forkserver the function must be
// registered with MP_REGISTER_FUNCTION, or the call raises PicklingError.
// Arguments and results travel pickled (reduction/pickle.h); an argument type
// with no pickle encoding raises PicklingError from the call, a result type
// with none fails the task (get() raises PicklingError). ThreadPool has the
// same API and calls the functions in threads, without pickling.
//
// A task that throws fails its result: get() raises the same Python class
// (errors/errors.h; other exceptions become RemoteError "Type: what()"). map
// fails with the first failure to arrive, as CPython's does.
//
// Beyond CPython, whose Pool hangs when a worker dies: a worker killed in the
// middle of a task (SIGKILL, a crash, abort(), _exit()) fails that task with
// ProcessError naming the worker and how it ended, a new worker replaces it and
// every other task completes. `task_timeout` kills and replaces a worker whose
// task runs too long; that task fails with TimeoutError.
//
// Callbacks run on the pool's result-handling thread in completion order, and
// must not block for long (they hold up every other result). A callback may
// submit work (apply_async, map_async) but not wait on its own pool: there
// apply(), map(), starmap(), join(), AsyncResult::get() / wait() and imap's
// next() raise RuntimeError instead of waiting for a result that only the
// blocked thread could deliver (CPython's pool hangs). A callback may call
// terminate(). The destructor terminates the pool, as leaving Python's
// `with Pool() as p:` block does, and always returns.
//
// A map whose chunk failed has its outcome: its chunks not yet started are
// dropped instead of run.
#ifndef MULTIPROCESSING_POOL_POOL_H_
#define MULTIPROCESSING_POOL_POOL_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "errors/errors.h"
#include "pool/internal/core.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace multiprocessing {

class Context;

namespace pool {

// Python's concurrent.futures.CancelledError: get() of a call withdrawn by
// AsyncResult::cancel().
class CancelledError : public Exception {
 public:
  explicit CancelledError(const std::string& message) : Exception(message) {}
  const char* python_name() const noexcept override { return "CancelledError"; }
};

// Seconds; std::nullopt waits for ever.
using Timeout = std::optional<std::chrono::duration<double>>;

// apply_async / map_async / starmap_async callbacks: `callback` gets the
// result, `error_callback` the exception of a failed call.
template <class T>
struct Callbacks {
  std::function<void(const T&)> callback;
  std::function<void(const std::exception&)> error_callback;
};

// A function run once in each worker when it starts, with its arguments:
// `.initializer = init` or `.initializer = {init, arg1, arg2}` (Python's
// initializer and initargs). Under spawn and forkserver the function must be
// registered and the arguments picklable.
class Initializer {
 public:
  Initializer() = default;
  template <class R, class... P, class... A>
  Initializer(R (*fn)(P...), A&&... args);  // NOLINT: implicit by design

  explicit operator bool() const { return static_cast<bool>(call_); }
  // Runs it here (fork workers, thread workers).
  void operator()() const { call_(); }
  // The call for spawn / forkserver workers; PicklingError if the function
  // is not registered or an argument cannot be pickled.
  internal::PickledCall Pickled() const { return pickled_(); }

 private:
  std::function<void()> call_;
  std::function<internal::PickledCall()> pickled_;
};

// Python's Pool keyword arguments.
struct PoolOptions {
  // Unset: cpu_count(). Must be at least 1.
  std::optional<int> processes;
  Initializer initializer;
  // Unset: workers live as long as the pool. Else each worker exits after
  // that many tasks (chunks) and a fresh one replaces it. Processes only.
  std::optional<int> maxtasksperchild;
  // The start method's context (get_context("spawn")); null: the default.
  const Context* context = nullptr;
  // Beyond CPython: a task (chunk) running longer is stopped by killing its
  // worker, and fails with TimeoutError. Processes only.
  Timeout task_timeout;
};

namespace internal {

// The outcome of an apply or map, shared by AsyncResult handles and the job.
template <class V>
class ResultState {
 public:
  // `owner`: the pool whose result thread delivers the outcome (waiting for
  // it on that thread raises RuntimeError), or null.
  explicit ResultState(Callbacks<V> callbacks, const PoolCore* owner = nullptr)
      : callbacks_(std::move(callbacks)), owner_(owner) {}

  // The first outcome wins; later ones are ignored. Callbacks run before
  // waiters wake, as in CPython.
  void Set(V value) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (settled_) return;
      settled_ = true;
      value_.emplace(std::move(value));
    }
    if (callbacks_.callback) RunCallback([&] { callbacks_.callback(*value_); });
    Publish();
  }
  // False if an outcome was already chosen. `cancelled`: the error is the
  // CancelledError of AsyncResult::cancel().
  bool SetError(std::exception_ptr error, bool cancelled = false) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (settled_) return false;
      settled_ = true;
      cancelled_ = cancelled;
      error_ = error;
    }
    if (callbacks_.error_callback) {
      RunCallback([&] {
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          callbacks_.error_callback(e);
        }
      });
    }
    Publish();
    return true;
  }

  bool ready() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ready_;
  }
  bool has_callbacks() const {
    return callbacks_.callback || callbacks_.error_callback;
  }
  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }
  bool wait(Timeout timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    if (ready_) return true;
    // A zero timeout only polls, which is harmless anywhere.
    if (!timeout || timeout->count() > 0) {
      CheckNotResultThread(owner_, "AsyncResult.get() or wait()");
    }
    if (!timeout) {
      cv_.wait(lock, [&] { return ready_; });
      return true;
    }
    return cv_.wait_for(lock, *timeout, [&] { return ready_; });
  }
  bool successful() const {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ready_) {
      throw ValueError(
          "the result is not ready yet; call successful() after ready() is "
          "true or after wait()");
    }
    return error_ == nullptr;
  }
  const V& get(Timeout timeout) const {
    if (!wait(timeout)) {
      throw TimeoutError(
          "the result was not ready within the timeout; wait longer or check "
          "that the pool is running");
    }
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }

 private:
  void Publish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready_ = true;
    }
    cv_.notify_all();
  }

  Callbacks<V> callbacks_;
  const PoolCore* const owner_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool settled_ = false;    // an outcome was chosen
  bool cancelled_ = false;  // ... by cancel()
  bool ready_ = false;      // ... and its callbacks ran
  std::optional<V> value_;
  std::exception_ptr error_;
};

// A job whose chunks produce lists of T.
template <class T>
class TypedJob : public JobBase {
 public:
  virtual void DeliverValues(uint32_t chunk, std::vector<T> values) = 0;
  void Deliver(uint32_t chunk, std::string_view payload) override {
    if constexpr (reduction::Picklable<T>) {
      std::vector<T> values;
      try {
        values = reduction::loads<std::vector<T>>(payload);
      } catch (...) {
        Fail(chunk, std::current_exception());
        return;
      }
      DeliverValues(chunk, std::move(values));
    }
  }
};

template <class T>
class ApplyJob final : public TypedJob<T> {
 public:
  explicit ApplyJob(std::shared_ptr<ResultState<T>> state)
      : state_(std::move(state)) {}
  void DeliverValues(uint32_t, std::vector<T> values) override {
    if (values.size() != 1) {
      state_->SetError(std::make_exception_ptr(
          TypeError("a worker returned a malformed result")));
      return;
    }
    state_->Set(std::move(values[0]));
  }
  void Fail(uint32_t, std::exception_ptr error) override {
    state_->SetError(error);
  }
  bool has_callbacks() const override { return state_->has_callbacks(); }

 private:
  std::shared_ptr<ResultState<T>> state_;
};

template <class T>
class MapJob final : public TypedJob<T> {
 public:
  MapJob(std::shared_ptr<ResultState<std::vector<T>>> state, size_t length,
         size_t chunksize)
      : state_(std::move(state)),
        length_(length),
        chunksize_(chunksize),
        left_(chunksize == 0 ? 0 : (length + chunksize - 1) / chunksize) {
    if (left_ == 0) state_->Set({});
  }
  void DeliverValues(uint32_t chunk, std::vector<T> values) override {
    size_t begin = static_cast<size_t>(chunk) * chunksize_;
    size_t expected = std::min(chunksize_, length_ - begin);
    if (values.size() != expected) {
      Fail(chunk, std::make_exception_ptr(
                      TypeError("a worker returned a malformed result")));
      return;
    }
    if (!failed_) {
      if constexpr (kDirect) {
        if (chunksize_ >= length_) {
          values_ = std::move(values);  // one chunk: no copy at all
          values.clear();
        }
      }
      if (!values.empty()) {
        if (values_.empty()) Prepare();
        std::move(values.begin(), values.end(), Slot(begin));
      }
    }
    if (--left_ == 0 && !failed_) Finish();
  }
  void Fail(uint32_t, std::exception_ptr error) override {
    --left_;
    failed_ = true;
    values_.clear();
    // The map's outcome is this error whatever its other chunks do, so
    // those not started yet need not run (CPython runs them all).
    this->Abandon();
    state_->SetError(error);
  }
  bool has_callbacks() const override { return state_->has_callbacks(); }

 private:
  // Results go straight to their final place; types that cannot be
  // default-constructed take a detour through optionals.
  static constexpr bool kDirect = std::is_default_constructible_v<T>;
  using Storage = std::conditional_t<kDirect, std::vector<T>,
                                     std::vector<std::optional<T>>>;

  void Prepare() { values_.resize(length_); }
  auto Slot(size_t i) {
    return values_.begin() + static_cast<std::ptrdiff_t>(i);
  }
  void Finish() {
    if constexpr (kDirect) {
      state_->Set(std::move(values_));
    } else {
      std::vector<T> all;
      all.reserve(length_);
      for (auto& v : values_) all.push_back(std::move(*v));
      state_->Set(std::move(all));
    }
    values_.clear();
  }

  std::shared_ptr<ResultState<std::vector<T>>> state_;
  size_t length_;
  size_t chunksize_;
  size_t left_;  // only the thread handling results touches these
  bool failed_ = false;
  Storage values_;
};

// The imap / imap_unordered results, chunk by chunk.
template <class T>
class IMapJob final : public TypedJob<T> {
 public:
  using Outcome = std::variant<std::vector<T>, std::exception_ptr>;
  // `chunks`: how many there are, or kUnknown until SetTotal().
  static constexpr size_t kUnknown = static_cast<size_t>(-1);
  IMapJob(size_t chunks, bool ordered, const PoolCore* owner = nullptr)
      : chunks_(chunks), ordered_(ordered), owner_(owner) {}

  // The number of chunks, once the input is used up.
  void SetTotal(size_t chunks) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      chunks_ = chunks;
    }
    cv_.notify_all();
  }
  // Chunks whose results next() moved on to.
  size_t taken() {
    std::lock_guard<std::mutex> lock(mu_);
    return taken_;
  }

  void DeliverValues(uint32_t chunk, std::vector<T> values) override {
    Put(chunk, Outcome(std::move(values)));
  }
  void Fail(uint32_t chunk, std::exception_ptr error) override {
    Put(chunk, Outcome(error));
  }

  std::optional<T> Next(Timeout timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (current_ && position_ < current_->size())
        return std::move((*current_)[position_++]);
      current_.reset();
      if (taken_ == chunks_) return std::nullopt;
      auto ready = [&] {
        return taken_ == chunks_ ||
               (ordered_ ? done_.count(static_cast<uint32_t>(taken_)) > 0
                         : !arrived_.empty());
      };
      if (!ready() && (!timeout || timeout->count() > 0)) {
        CheckNotResultThread(owner_, "IMapIterator.next()");
      }
      if (!timeout) {
        cv_.wait(lock, ready);
      } else if (!cv_.wait_for(lock, *timeout, ready)) {
        throw TimeoutError(
            "no result arrived within the timeout; call next() again to keep "
            "waiting");
      }
      if (taken_ == chunks_) return std::nullopt;
      Outcome outcome;
      if (ordered_) {
        auto it = done_.find(static_cast<uint32_t>(taken_));
        outcome = std::move(it->second);
        done_.erase(it);
      } else {
        outcome = std::move(arrived_.front());
        arrived_.pop_front();
      }
      ++taken_;
      position_ = 0;
      if (auto* error = std::get_if<std::exception_ptr>(&outcome))
        std::rethrow_exception(*error);
      current_ = std::move(std::get<std::vector<T>>(outcome));
    }
  }

 private:
  void Put(uint32_t chunk, Outcome outcome) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ordered_) {
        done_.emplace(chunk, std::move(outcome));
      } else {
        arrived_.push_back(std::move(outcome));
      }
    }
    cv_.notify_all();
  }

  size_t chunks_;
  const bool ordered_;
  const PoolCore* const owner_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint32_t, Outcome> done_;  // ordered: by chunk
  std::deque<Outcome> arrived_;       // unordered: by arrival
  size_t taken_ = 0;                  // chunks handed out
  std::optional<std::vector<T>> current_;
  size_t position_ = 0;
};

}  // namespace internal

// The handle of an asynchronous call (Python's AsyncResult); copies share it.
template <class T>
class AsyncResult {
 public:
  // Python's concurrent.futures Future.cancel(): withdraws the call if no
  // worker has been handed any of it yet, and returns true (get() then raises
  // CancelledError and the error callback runs with it); false once it was
  // handed out, runs or ran. A pool hands a few tasks ahead to each worker,
  // so only calls still waiting behind others can be cancelled.
  bool cancel() const {
    if (job_ == nullptr || !job_->Cancel()) return false;
    return state_->SetError(
        std::make_exception_ptr(CancelledError(
            "the call was cancelled (AsyncResult::cancel()) before it "
            "started")),
        /*cancelled=*/true);
  }
  // Whether cancel() withdrew it.
  bool cancelled() const { return state_->cancelled(); }

  // billiard's AsyncResult.terminate(): stops the call now. get() raises
  // ProcessError saying so, its chunks not yet started are dropped, and the
  // worker processes running one are killed and replaced. A ThreadPool's
  // running chunks cannot be stopped (they run to the end, unused). No effect
  // on a call that is done.
  void terminate() const {
    if (job_ == nullptr) return;
    job_->Abandon();
    if (!state_->SetError(std::make_exception_ptr(ProcessError(
            "the call was terminated (AsyncResult::terminate()) before it "
            "completed; the pool workers running it were killed and "
            "replaced")))) {
      return;  // done already
    }
    if (link_ == nullptr) return;
    std::lock_guard<std::mutex> lock(link_->mu);
    if (link_->core != nullptr) link_->core->KillRunning(*job_);
  }

  // The result, or the call's exception raised again; TimeoutError if not
  // ready within `timeout`.
  T get(Timeout timeout = std::nullopt) const { return state_->get(timeout); }
  // Waits until ready or `timeout` passed.
  void wait(Timeout timeout = std::nullopt) const { state_->wait(timeout); }
  bool ready() const { return state_->ready(); }
  // Whether the call completed without raising; ValueError before ready().
  bool successful() const { return state_->successful(); }

  explicit AsyncResult(std::shared_ptr<internal::ResultState<T>> state,
                       std::shared_ptr<internal::JobBase> job = nullptr,
                       std::shared_ptr<internal::PoolLink> link = nullptr)
      : state_(std::move(state)),
        job_(std::move(job)),
        link_(std::move(link)) {}

 private:
  std::shared_ptr<internal::ResultState<T>> state_;
  std::shared_ptr<internal::JobBase> job_;  // null: cannot be cancelled
  std::shared_ptr<internal::PoolLink> link_;
};

template <class T>
using MapResult = AsyncResult<std::vector<T>>;

// imap / imap_unordered results (Python's IMapIterator). next() returns the
// next result, std::nullopt at the end, raises the task's exception for a
// failed one (then moves on), and TimeoutError when nothing arrived within
// `timeout`. Also an input range: `for (int x : pool.imap(f, v))`.
template <class T>
class IMapIterator {
 public:
  explicit IMapIterator(std::shared_ptr<internal::IMapJob<T>> job)
      : job_(std::move(job)) {}
  // A lazy input: `feed(k)` submits up to k more chunks and returns how many
  // it submitted (0 once the input is used up); at most `read_ahead` chunks
  // are submitted and not yet taken by next().
  IMapIterator(std::shared_ptr<internal::IMapJob<T>> job,
               std::function<size_t(size_t)> feed, size_t read_ahead)
      : job_(std::move(job)), feed_(std::move(feed)), read_ahead_(read_ahead) {
    Refill();
  }

  std::optional<T> next(Timeout timeout = std::nullopt) {
    Refill();
    return job_->Next(timeout);
  }

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(IMapIterator* owner) : owner_(owner) { ++*this; }
    const T& operator*() const { return *value_; }
    iterator& operator++() {
      value_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !value_; }

   private:
    IMapIterator* owner_ = nullptr;
    std::optional<T> value_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  void Refill() {
    if (!feed_) return;
    const size_t in_flight = fed_ - job_->taken();
    if (in_flight >= read_ahead_) return;
    size_t fed = feed_(read_ahead_ - in_flight);
    if (fed == 0) {
      feed_ = nullptr;  // the input is used up
    } else {
      fed_ += fed;
    }
  }

  std::shared_ptr<internal::IMapJob<T>> job_;
  std::function<size_t(size_t)> feed_;  // null: everything was submitted
  size_t read_ahead_ = 0;
  size_t fed_ = 0;
};

namespace internal {

[[noreturn]] void ThrowUnpicklableArgument(const std::type_info& type);
std::exception_ptr UnpicklableResult(const std::type_info& type);
std::string TypeNameOf(const std::type_info& type);

template <class T>
using Decay = std::decay_t<T>;

// What one element of a task's argument list is: a tuple for apply and
// starmap, the single argument for map and imap.
template <bool kStar, class... P>
struct ArgOf {
  using type = std::tuple<P...>;
};
template <class P>
struct ArgOf<false, P> {
  using type = P;
};

// What Pool and ThreadPool share: the typed calls, over a PoolCore.
class PoolApi {
 public:
  // Calls fn(args...) in a worker and returns its result (Python's apply).
  template <class R, class... P>
  ResultType<R> apply(R (*fn)(P...),
                      std::type_identity_t<std::tuple<Decay<P>...>> args = {}) {
    CheckNotResultThread(core_.get(), "Pool.apply()");
    HelpScope help(*core_);
    AsyncResult<ResultType<R>> result = apply_async(fn, std::move(args));
    help.Wait([&] { return result.ready(); });
    return result.get();
  }

  template <class R, class... P>
  AsyncResult<ResultType<R>> apply_async(
      R (*fn)(P...), std::type_identity_t<std::tuple<Decay<P>...>> args = {},
      std::type_identity_t<Callbacks<ResultType<R>>> callbacks = {}) {
    using T = ResultType<R>;
    core_->CheckRunning();
    auto state =
        std::make_shared<ResultState<T>>(std::move(callbacks), core_.get());
    auto job = std::make_shared<ApplyJob<T>>(state);
    std::vector<std::tuple<Decay<P>...>> one;
    one.push_back(std::move(args));
    SubmitChunks<true>(fn, job, one, 1, 1);
    return AsyncResult<T>(std::move(state), std::move(job), link_);
  }

  // fn applied to each element, in order (Python's map). Elements convert to
  // fn's parameter type. chunksize unset: CPython's default.
  template <class R, class P, class Range>
  std::vector<ResultType<R>> map(
      R (*fn)(P), const Range& iterable,
      std::optional<size_t> chunksize = std::nullopt) {
    CheckNotResultThread(core_.get(), "Pool.map()");
    // The result thread handles results while this thread is still pickling
    // arguments; this thread helps once all are submitted.
    auto result = map_async(fn, iterable, chunksize);
    HelpScope help(*core_);
    help.Wait([&] { return result.ready(); });
    return result.get();
  }
  template <class R, class P, class Range>
  MapResult<ResultType<R>> map_async(
      R (*fn)(P), const Range& iterable,
      std::optional<size_t> chunksize = std::nullopt,
      std::type_identity_t<Callbacks<std::vector<ResultType<R>>>> callbacks =
          {}) {
    return MapAsync<false>(fn, iterable, chunksize, std::move(callbacks));
  }

  // fn(*args) for each tuple (Python's starmap).
  template <class R, class... P, class Range>
  std::vector<ResultType<R>> starmap(
      R (*fn)(P...), const Range& iterable,
      std::optional<size_t> chunksize = std::nullopt) {
    CheckNotResultThread(core_.get(), "Pool.starmap()");
    // The result thread handles results while this thread is still pickling
    // arguments; this thread helps once all are submitted.
    auto result = starmap_async(fn, iterable, chunksize);
    HelpScope help(*core_);
    help.Wait([&] { return result.ready(); });
    return result.get();
  }
  template <class R, class... P, class Range>
  MapResult<ResultType<R>> starmap_async(
      R (*fn)(P...), const Range& iterable,
      std::optional<size_t> chunksize = std::nullopt,
      std::type_identity_t<Callbacks<std::vector<ResultType<R>>>> callbacks =
          {}) {
    return MapAsync<true>(fn, iterable, chunksize, std::move(callbacks));
  }

  // Lazy results in order (imap) or in completion order (imap_unordered).
  // A sized range (a vector, a list) is taken whole now. Any other input
  // range (a std::views pipeline, an unbounded std::views::iota, a generator)
  // is read as results are taken: a few chunks per worker ahead of next(), so
  // an infinite input with a consumer that stops early works. Such a range is
  // kept (moved in if an rvalue; an lvalue must outlive the iterator); if the
  // pool stops before the input is used up, next() raises ProcessError there.
  template <class R, class P, class Range>
  IMapIterator<ResultType<R>> imap(R (*fn)(P), Range&& iterable,
                                   size_t chunksize = 1) {
    return IMap(fn, std::forward<Range>(iterable), chunksize, true);
  }
  template <class R, class P, class Range>
  IMapIterator<ResultType<R>> imap_unordered(R (*fn)(P), Range&& iterable,
                                             size_t chunksize = 1) {
    return IMap(fn, std::forward<Range>(iterable), chunksize, false);
  }

  // No more tasks; workers exit once the queued tasks are done.
  void close() { core_->close(); }
  // Stops the workers now; unfinished tasks fail. From a callback it stops
  // the workers and fails the tasks, and the destructor finishes the rest.
  void terminate() { core_->terminate(); }
  // Waits for the workers to exit; after close() or terminate() only.
  // RuntimeError from a callback (it would wait for its own thread).
  void join() {
    CheckNotResultThread(core_.get(), "Pool.join()");
    core_->join();
  }
  // The number of workers.
  int processes() const { return core_->processes(); }

 protected:
  explicit PoolApi(std::unique_ptr<PoolCore> core)
      : core_(std::move(core)), link_(std::make_shared<PoolLink>()) {
    link_->core = core_.get();
  }
  ~PoolApi() = default;
  // The pool is going: handles that outlive it no longer reach it.
  void Unlink() {
    std::lock_guard<std::mutex> lock(link_->mu);
    link_->core = nullptr;
  }
  std::unique_ptr<PoolCore> core_;
  std::shared_ptr<PoolLink> link_;

 private:
  template <bool kStar, class R, class... P, class Range>
  MapResult<ResultType<R>> MapAsync(
      R (*fn)(P...), const Range& iterable, std::optional<size_t> chunksize,
      Callbacks<std::vector<ResultType<R>>> callbacks) {
    using T = ResultType<R>;
    core_->CheckRunning();
    const size_t n = static_cast<size_t>(
        std::distance(std::begin(iterable), std::end(iterable)));
    size_t size =
        chunksize ? *chunksize : DefaultChunksize(n, core_->processes());
    if (n > 0 && size == 0)
      throw ValueError("chunksize must be at least 1; got 0");
    auto state = std::make_shared<ResultState<std::vector<T>>>(
        std::move(callbacks), core_.get());
    auto job = std::make_shared<MapJob<T>>(state, n, size);
    if (n > 0) SubmitChunks<kStar>(fn, job, iterable, n, size);
    return MapResult<T>(std::move(state), std::move(job), link_);
  }

  template <class R, class P, class Range>
  IMapIterator<ResultType<R>> IMap(R (*fn)(P), Range&& input, size_t chunksize,
                                   bool ordered) {
    using T = ResultType<R>;
    using Plain = std::remove_cvref_t<Range>;
    core_->CheckRunning();
    if (chunksize < 1) throw ValueError("chunksize must be at least 1; got 0");
    if constexpr (!(std::ranges::sized_range<const Plain> &&
                    std::ranges::forward_range<const Plain>)) {
      return LazyIMap(fn, std::forward<Range>(input), chunksize, ordered);
    } else {
      const Plain& iterable = input;
      const size_t n = static_cast<size_t>(
          std::distance(std::begin(iterable), std::end(iterable)));
      auto job = std::make_shared<IMapJob<T>>((n + chunksize - 1) / chunksize,
                                              ordered, core_.get());
      if (n > 0) SubmitChunks<false>(*core_, fn, job, iterable, n, chunksize);
      return IMapIterator<T>(std::move(job));
    }
  }

  // imap over an input read on demand, by the thread calling next().
  template <class R, class P, class Range>
  IMapIterator<ResultType<R>> LazyIMap(R (*fn)(P), Range&& input,
                                       size_t chunksize, bool ordered) {
    using T = ResultType<R>;
    using Arg = Decay<P>;
    // The range (moved in, or referred to) and where reading stopped.
    struct Source {
      explicit Source(Range&& r) : range(std::forward<Range>(r)) {}
      std::conditional_t<std::is_lvalue_reference_v<Range>, Range,
                         std::remove_cvref_t<Range>>
          range;
      std::optional<std::ranges::iterator_t<decltype(range)>> it;
      uint32_t next_chunk = 0;
    };
    auto source = std::make_shared<Source>(std::forward<Range>(input));
    auto job = std::make_shared<IMapJob<T>>(IMapJob<T>::kUnknown, ordered,
                                            core_.get());
    std::shared_ptr<PoolLink> link = link_;
    auto feed = [fn, job, source, link, chunksize](size_t chunks) -> size_t {
      Source& s = *source;
      if (!s.it) s.it.emplace(std::ranges::begin(s.range));
      std::vector<Arg> items;
      while (items.size() < chunks * chunksize &&
             *s.it != std::ranges::end(s.range)) {
        items.push_back(Arg(**s.it));
        ++*s.it;
      }
      const uint32_t first = s.next_chunk;
      const size_t n = items.size();
      const uint32_t fed =
          static_cast<uint32_t>((n + chunksize - 1) / chunksize);
      try {
        std::lock_guard<std::mutex> lock(link->mu);
        if (link->core == nullptr) {
          throw ProcessError(
              "the pool was destroyed before the input of this imap was used "
              "up");
        }
        if (n > 0) {
          SubmitChunks<false>(*link->core, fn, job, items, n, chunksize, first);
        }
      } catch (...) {
        // The pool stopped (or an item could not be sent): next() raises
        // this where the input stopped, then ends.
        job->Fail(first, std::current_exception());
        job->SetTotal(first + 1);
        return 0;
      }
      s.next_chunk += fed;
      if (fed < chunks) job->SetTotal(s.next_chunk);  // used up
      return fed;
    };
    const size_t read_ahead =
        std::max<size_t>(4, 2 * static_cast<size_t>(core_->processes()));
    return IMapIterator<T>(std::move(job), std::move(feed), read_ahead);
  }

  // Splits `items` (n of them) into chunks and submits them in batches that
  // grow from one chunk (and end at 64 KiB of arguments), so that workers
  // start while later chunks are still being pickled and a long map of small
  // chunks takes the pool's lock rarely.
  template <bool kStar, class R, class... P, class Range>
  void SubmitChunks(R (*fn)(P...),
                    const std::shared_ptr<TypedJob<ResultType<R>>>& job,
                    const Range& items, size_t n, size_t chunksize) {
    SubmitChunks<kStar>(*core_, fn, job, items, n, chunksize);
  }
  // The same on `core`, numbering the chunks from `first`.
  template <bool kStar, class R, class... P, class Range>
  static void SubmitChunks(PoolCore& core, R (*fn)(P...),
                           const std::shared_ptr<TypedJob<ResultType<R>>>& job,
                           const Range& items, size_t n, size_t chunksize,
                           uint32_t first = 0) {
    using T = ResultType<R>;
    using Arg = typename ArgOf<kStar, Decay<P>...>::type;
    const uint32_t chunks =
        static_cast<uint32_t>((n + chunksize - 1) / chunksize);
    if (core.threads()) {
      // Thread workers share the arguments; no pickling.
      auto args = std::make_shared<std::vector<Arg>>();
      args->reserve(n);
      for (const auto& item : items) args->push_back(Arg(item));
      std::vector<Chunk> all(chunks);
      for (uint32_t c = 0; c < chunks; ++c) {
        size_t begin = c * chunksize, end = std::min(n, begin + chunksize);
        const uint32_t index = first + c;
        all[c].index = index;
        all[c].run = [fn, args, job, index, begin,
                      end]() -> std::function<void()> {
          try {
            std::vector<T> out;
            out.reserve(end - begin);
            for (size_t i = begin; i < end; ++i) {
              auto call = [&](auto&... a) {
                if constexpr (std::is_void_v<R>) {
                  fn(a...);
                  out.push_back(nullptr);
                } else {
                  out.push_back(fn(a...));
                }
              };
              if constexpr (kStar) {
                auto copy = (*args)[i];
                std::apply(call, copy);
              } else {
                auto copy = (*args)[i];
                call(copy);
              }
            }
            return [job, index, out = std::move(out)]() mutable {
              job->DeliverValues(index, std::move(out));
            };
          } catch (...) {
            return [job, index, e = std::current_exception()] {
              job->Fail(index, e);
            };
          }
        };
      }
      core.Submit(job, FunctionRef{}, std::move(all));
      return;
    }
    if constexpr (!(reduction::Picklable<Decay<P>> && ...)) {
      ThrowUnpicklableArgument(typeid(Arg));
    } else if constexpr (!reduction::Picklable<T>) {
      // The task could run but its result could not come back.
      for (uint32_t c = 0; c < chunks; ++c)
        job->Fail(first + c, UnpicklableResult(typeid(T)));
    } else {
      FunctionRef ref;
      ref.runner = Runner<kStar, R, P...>::Key();
      (void)Runner<kStar, R, P...>::registered;
      if (core.forked()) {
        ref.address = reduction::internal::FunctionAddress(fn);
      } else {
        const reduction::RegisteredFunction& registered =
            reduction::RequireFunction(fn);
        ref.name = registered.name;
      }
      auto it = std::begin(items);
      std::vector<Chunk> batch;
      size_t batch_size = 1, batch_bytes = 0;
      for (uint32_t c = 0; c < chunks; ++c) {
        size_t begin = c * chunksize, end = std::min(n, begin + chunksize);
        Chunk& chunk = batch.emplace_back();
        chunk.index = first + c;
        reduction::Writer w;
        w.begin_list();
        for (size_t i = begin; i < end; ++i, ++it) {
          if constexpr (std::is_same_v<Decay<decltype(*it)>, Arg>) {
            w.save(*it);
          } else {
            w.save(Arg(*it));
          }
        }
        w.end_list();
        chunk.payload = w.finish();
        batch_bytes += chunk.payload.size();
        if (batch.size() >= batch_size || batch_bytes >= (64 << 10) ||
            c + 1 == chunks) {
          core.Submit(job, ref, std::move(batch));
          batch.clear();
          batch_size = std::min<size_t>(batch_size * 2, 256);
          batch_bytes = 0;
        }
      }
    }
  }
};

}  // namespace internal

// Python's multiprocessing.Pool: `processes` worker processes.
class Pool : public internal::PoolApi {
 public:
  explicit Pool(PoolOptions options = {});
  explicit Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  // terminate(), as Python's __exit__.
  ~Pool();
};

// Python's multiprocessing.pool.ThreadPool (multiprocessing.dummy.Pool): the
// same API on worker threads of this process. `maxtasksperchild`, `context`
// and `task_timeout` do not apply to threads (ValueError if set).
class ThreadPool : public internal::PoolApi {
 public:
  explicit ThreadPool(PoolOptions options = {});
  explicit ThreadPool(int processes)
      : ThreadPool(PoolOptions{.processes = processes}) {}
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();
};

template <class R, class... P, class... A>
Initializer::Initializer(R (*fn)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A),
                "Initializer(f, args...): the number of arguments must match "
                "the parameters of f");
  auto bound = std::make_shared<std::tuple<std::decay_t<P>...>>(
      std::forward<A>(args)...);
  call_ = [fn, bound] {
    auto copy = *bound;
    std::apply([fn](auto&... a) { fn(a...); }, copy);
  };
  pickled_ = [fn, bound]() -> internal::PickledCall {
    if constexpr ((reduction::Picklable<std::decay_t<P>> && ...)) {
      using Runner = internal::Runner<true, R, P...>;
      (void)Runner::registered;
      const reduction::RegisteredFunction& registered =
          reduction::RequireFunction(fn);
      std::vector<std::tuple<std::decay_t<P>...>> one{*bound};
      return {registered.name, Runner::Key(), reduction::dumps(one)};
    } else {
      internal::ThrowUnpicklableArgument(
          typeid(std::tuple<std::decay_t<P>...>));
    }
  };
}

}  // namespace pool

using pool::Pool;

namespace internal {
// ctx.Pool(options) (process/context.h): workers started by that context.
struct ContextPool {
  static pool::Pool Pool(const Context& ctx, pool::PoolOptions options = {}) {
    options.context = &ctx;
    return pool::Pool(std::move(options));
  }
  static pool::Pool Pool(const Context& ctx, int processes) {
    return pool::Pool(
        pool::PoolOptions{.processes = processes, .context = &ctx});
  }
};
}  // namespace internal

}  // namespace multiprocessing

#endif  // MULTIPROCESSING_POOL_POOL_H_
