// Python's concurrent.futures.Future and the functions that wait on several
// futures (wait, as_completed), without the executors (futures/futures.h).
//
//   Future<int> f = executor.submit(square, 7);
//   f.add_done_callback([](const Future<int>& done) { ... });
//   int r = f.result(std::chrono::seconds(5));  // TimeoutError if not done
//
//   for (Future<int> done : as_completed(fs, std::chrono::seconds(10)))
//     std::cout << done.result() << "\n";
//   auto [done, not_done] = wait(fs, std::nullopt, FIRST_EXCEPTION);
//
// A future is pending, then running, then finished (with a result or an
// exception), or cancelled while still pending. Handles are cheap to copy and
// share one state, like Python references. Functions returning void give
// Future<std::nullptr_t> (Python's None), as the pool does.
#ifndef MULTIPROCESSING_FUTURES_FUTURE_H_
#define MULTIPROCESSING_FUTURES_FUTURE_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "errors/errors.h"

namespace multiprocessing::futures {

// Seconds; std::nullopt waits for ever.
using Timeout = std::optional<std::chrono::duration<double>>;

// concurrent.futures.TimeoutError is the library's TimeoutError.
using multiprocessing::TimeoutError;

// concurrent.futures.Error, the base of the module's own exceptions.
class Error : public Exception {
 public:
  explicit Error(const std::string& message) : Exception(message) {}
  const char* python_name() const noexcept override { return "Error"; }
};
// The future was cancelled.
class CancelledError : public Error {
 public:
  explicit CancelledError(const std::string& message) : Error(message) {}
  const char* python_name() const noexcept override { return "CancelledError"; }
};
// set_result() / set_exception() on a future that is already done.
class InvalidStateError : public Error {
 public:
  explicit InvalidStateError(const std::string& message) : Error(message) {}
  const char* python_name() const noexcept override {
    return "InvalidStateError";
  }
};
// An executor whose workers failed; it takes no more work.
class BrokenExecutor : public RuntimeError {
 public:
  explicit BrokenExecutor(const std::string& message) : RuntimeError(message) {}
  const char* python_name() const noexcept override { return "BrokenExecutor"; }
};
// A worker process died abruptly, or could not start (its initializer failed).
class BrokenProcessPool : public BrokenExecutor {
 public:
  explicit BrokenProcessPool(const std::string& message)
      : BrokenExecutor(message) {}
  const char* python_name() const noexcept override {
    return "BrokenProcessPool";
  }
};
// A worker thread's initializer failed.
class BrokenThreadPool : public BrokenExecutor {
 public:
  explicit BrokenThreadPool(const std::string& message)
      : BrokenExecutor(message) {}
  const char* python_name() const noexcept override {
    return "BrokenThreadPool";
  }
};

namespace internal {

using Clock = std::chrono::steady_clock;

// The time point `timeout` from now; nullopt for none. Long timeouts saturate.
std::optional<Clock::time_point> DeadlineAfter(Timeout timeout);

// An input iterator over `owner->next()` (std::nullopt ends it), so that
// range-for works on the lazy result sequences.
template <class Owner, class T>
class NextIterator {
 public:
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  NextIterator() = default;
  explicit NextIterator(Owner* owner) : owner_(owner) { ++*this; }
  const T& operator*() const { return *value_; }
  NextIterator& operator++() {
    value_ = owner_->next();
    return *this;
  }
  void operator++(int) { ++*this; }
  bool operator==(std::default_sentinel_t) const { return !value_; }

 private:
  Owner* owner_ = nullptr;
  std::optional<T> value_;
};

class StateBase;

// What wait() and as_completed() block on: each watched future reports here
// when it becomes done.
class Waiter {
 public:
  void Notify(const StateBase* future);
  // Moves what arrived into `out`; false if nothing arrived by `deadline`.
  bool Take(std::optional<Clock::time_point> deadline,
            std::vector<const StateBase*>& out);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<const StateBase*> arrived_;
};

// The state every Future<T> shares, without the value.
class StateBase {
 public:
  StateBase() = default;
  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;
  virtual ~StateBase() = default;

  bool cancel();
  bool cancelled() const;
  bool running() const;
  bool done() const;
  // done() and it holds an exception (not a cancellation).
  bool failed() const;
  std::exception_ptr exception(Timeout timeout) const;
  bool set_running_or_notify_cancel();
  // False (and nothing changes) if already done.
  bool TrySetException(std::exception_ptr error);
  // Waits until done; false at the deadline.
  bool WaitDone(std::optional<Clock::time_point> deadline) const;

  // Runs `callback` when done, or now if already done.
  void AddDoneCallback(std::function<void()> callback);
  // Registers `waiter` unless already done (then returns false).
  bool AddWaiter(const std::shared_ptr<Waiter>& waiter);
  void RemoveWaiter(const Waiter* waiter);

 protected:
  enum class State { kPending, kRunning, kCancelled, kFinished };

  // Makes it finished, with `store` run under the lock to keep the outcome.
  template <class Store>
  bool Finish(Store&& store) {
    std::unique_lock<std::mutex> lock(mu_);
    if (state_ == State::kCancelled || state_ == State::kFinished) return false;
    store();
    state_ = State::kFinished;
    Announce(lock);
    return true;
  }
  // Wakes blocked callers, then waiters, then runs the callbacks (unlocked).
  void Announce(std::unique_lock<std::mutex>& lock);
  // Throws CancelledError or TimeoutError unless finished by the deadline.
  void WaitFinished(Timeout timeout, std::unique_lock<std::mutex>& lock) const;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  State state_ = State::kPending;
  std::exception_ptr error_;

 private:
  std::vector<std::function<void()>> callbacks_;
  std::vector<std::shared_ptr<Waiter>> waiters_;
};

template <class T>
class FutureState final : public StateBase {
 public:
  T Result(Timeout timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    WaitFinished(timeout, lock);
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }
  bool TrySetResult(T value) {
    return Finish([&] { value_.emplace(std::move(value)); });
  }

 private:
  std::optional<T> value_;
};

}  // namespace internal

// Python's concurrent.futures.Future. Executors create them; a
// default-constructed Future is pending, for code that implements its own
// executor or tests (set_result / set_exception then complete it).
template <class T>
class Future {
 public:
  using value_type = T;

  Future() : state_(std::make_shared<internal::FutureState<T>>()) {}
  explicit Future(std::shared_ptr<internal::FutureState<T>> state)
      : state_(std::move(state)) {}

  // Cancels the call if it has not started: true if it is (now) cancelled,
  // false if it is running or finished.
  bool cancel() { return state_->cancel(); }
  bool cancelled() const { return state_->cancelled(); }
  // A worker took the call (see the executors for when exactly).
  bool running() const { return state_->running(); }
  // Finished or cancelled.
  bool done() const { return state_->done(); }

  // The call's result, or its exception raised again. CancelledError if it
  // was cancelled; TimeoutError if not done within `timeout`.
  T result(Timeout timeout = std::nullopt) const {
    return state_->Result(timeout);
  }
  // The call's exception, null if it returned. CancelledError / TimeoutError
  // as for result().
  std::exception_ptr exception(Timeout timeout = std::nullopt) const {
    return state_->exception(timeout);
  }

  // Calls `fn(future)` once the future is done (finished or cancelled), in
  // the thread that completes it, or at once in this thread if it is already
  // done. Callbacks run in the order added; what one throws is printed to
  // stderr and ignored, as in Python. An executor's futures complete on its
  // pool's result-handling thread: a callback must not block there (waiting
  // for another future of the same executor would wait for ever).
  void add_done_callback(std::function<void(const Future&)> fn) {
    std::weak_ptr<internal::FutureState<T>> weak = state_;
    state_->AddDoneCallback([fn = std::move(fn), weak] {
      if (auto state = weak.lock()) fn(Future(std::move(state)));
    });
  }

  // For executors and tests, as in Python. Marks a pending future running
  // and returns true, or returns false for a cancelled one (whose waiters were
  // told already). InvalidStateError if running or finished.
  bool set_running_or_notify_cancel() {
    return state_->set_running_or_notify_cancel();
  }
  // InvalidStateError if already done.
  void set_result(T value) {
    if (!state_->TrySetResult(std::move(value))) ThrowDone();
  }
  void set_exception(std::exception_ptr error) {
    if (!state_->TrySetException(error)) ThrowDone();
  }

  bool operator==(const Future& other) const { return state_ == other.state_; }
  const std::shared_ptr<internal::FutureState<T>>& state() const {
    return state_;
  }

 private:
  [[noreturn]] static void ThrowDone() {
    throw InvalidStateError(
        "the future is already done (finished or cancelled); a future takes "
        "one outcome");
  }

  std::shared_ptr<internal::FutureState<T>> state_;
};

// wait()'s return_when.
enum ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };

// wait()'s result: the futures done and those not done, each in the order
// given (Python returns two sets); a future given twice appears once.
template <class T>
struct DoneAndNotDoneFutures {
  std::vector<Future<T>> done;
  std::vector<Future<T>> not_done;
};

namespace internal {

// T of a range of Future<T>.
template <class Range>
using FutureValueOf = typename std::decay_t<decltype(*std::begin(
    std::declval<const Range&>()))>::value_type;

// The distinct futures of `fs`, in order, with their states as keys.
template <class T, class Range>
std::vector<Future<T>> Distinct(const Range& fs) {
  std::vector<Future<T>> out;
  std::unordered_map<const StateBase*, bool> seen;
  for (const Future<T>& f : fs)
    if (seen.emplace(f.state().get(), true).second) out.push_back(f);
  return out;
}

}  // namespace internal

// Waits until `return_when` holds for `fs` or `timeout` passed, then says
// which are done. FIRST_EXCEPTION returns when one finishes with an exception,
// or when all are done.
template <class Range, class T = internal::FutureValueOf<Range>>
DoneAndNotDoneFutures<T> wait(const Range& fs, Timeout timeout = std::nullopt,
                              ReturnWhen return_when = ALL_COMPLETED) {
  const auto deadline = internal::DeadlineAfter(timeout);
  std::vector<Future<T>> all = internal::Distinct<T>(fs);
  auto waiter = std::make_shared<internal::Waiter>();
  std::unordered_map<const internal::StateBase*, bool> done;  // -> failed
  bool any_failed = false;
  auto record = [&](const internal::StateBase* s) {
    bool failed = s->failed();
    any_failed = any_failed || failed;
    done.emplace(s, failed);
  };
  for (const Future<T>& f : all)
    if (!f.state()->AddWaiter(waiter)) record(f.state().get());
  auto satisfied = [&] {
    if (done.size() == all.size()) return true;
    if (return_when == FIRST_COMPLETED) return !done.empty();
    if (return_when == FIRST_EXCEPTION) return any_failed;
    return false;
  };
  std::vector<const internal::StateBase*> arrived;
  while (!satisfied()) {
    arrived.clear();
    if (!waiter->Take(deadline, arrived)) break;
    for (const internal::StateBase* s : arrived) record(s);
  }
  DoneAndNotDoneFutures<T> out;
  for (const Future<T>& f : all) {
    f.state()->RemoveWaiter(waiter.get());
    // Done now counts even if its report is still on the way.
    (done.count(f.state().get()) || f.done() ? out.done : out.not_done)
        .push_back(f);
  }
  return out;
}

// The futures of `fs` as they complete (finished or cancelled): first those
// already done, then each as it becomes done. Iterating past `timeout` (from
// the call) raises TimeoutError. Also an input range:
// `for (Future<int> f : as_completed(fs)) ...`.
template <class T>
class AsCompleted {
 public:
  template <class Range>
  AsCompleted(const Range& fs, Timeout timeout)
      : deadline_(internal::DeadlineAfter(timeout)),
        waiter_(std::make_shared<internal::Waiter>()) {
    for (const Future<T>& f : internal::Distinct<T>(fs)) {
      if (f.state()->AddWaiter(waiter_)) {
        waiting_.emplace(f.state().get(), f);
      } else {
        ready_.push_back(f);
      }
    }
    total_ = waiting_.size() + ready_.size();
  }
  AsCompleted(const AsCompleted&) = delete;
  AsCompleted& operator=(const AsCompleted&) = delete;
  AsCompleted(AsCompleted&&) = default;
  AsCompleted& operator=(AsCompleted&&) = default;
  ~AsCompleted() {
    if (!waiter_) return;
    for (auto& [state, f] : waiting_) f.state()->RemoveWaiter(waiter_.get());
  }

  // The next future done; std::nullopt after the last. TimeoutError when
  // the deadline passed first.
  std::optional<Future<T>> next() {
    while (ready_.empty()) {
      if (waiting_.empty()) return std::nullopt;
      std::vector<const internal::StateBase*> arrived;
      if (!waiter_->Take(deadline_, arrived)) {
        throw TimeoutError(std::to_string(waiting_.size()) + " (of " +
                           std::to_string(total_) +
                           ") futures unfinished at as_completed()'s "
                           "timeout; give it a longer timeout");
      }
      for (const internal::StateBase* s : arrived) {
        auto it = waiting_.find(s);
        if (it == waiting_.end()) continue;
        ready_.push_back(std::move(it->second));
        waiting_.erase(it);
      }
    }
    Future<T> f = std::move(ready_.front());
    ready_.pop_front();
    return f;
  }

  using iterator = internal::NextIterator<AsCompleted, Future<T>>;
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::optional<internal::Clock::time_point> deadline_;
  std::shared_ptr<internal::Waiter> waiter_;
  std::unordered_map<const internal::StateBase*, Future<T>> waiting_;
  std::deque<Future<T>> ready_;
  size_t total_ = 0;
};

template <class Range, class T = internal::FutureValueOf<Range>>
AsCompleted<T> as_completed(const Range& fs, Timeout timeout = std::nullopt) {
  return AsCompleted<T>(fs, timeout);
}
// `as_completed({f, g})` and `wait({f, g})`.
template <class T>
AsCompleted<T> as_completed(std::initializer_list<Future<T>> fs,
                            Timeout timeout = std::nullopt) {
  return AsCompleted<T>(fs, timeout);
}
template <class T>
DoneAndNotDoneFutures<T> wait(std::initializer_list<Future<T>> fs,
                              Timeout timeout = std::nullopt,
                              ReturnWhen return_when = ALL_COMPLETED) {
  return wait<std::initializer_list<Future<T>>, T>(fs, timeout, return_when);
}

}  // namespace multiprocessing::futures

#endif  // MULTIPROCESSING_FUTURES_FUTURE_H_
