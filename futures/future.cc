#include "futures/future.h"

#include <iostream>

namespace multiprocessing::futures::internal {
namespace {

// A done callback's exception is printed and dropped, as CPython logs it.
void RunDoneCallback(const std::function<void()>& callback) {
  try {
    callback();
  } catch (const std::exception& e) {
    std::cerr << "exception calling callback for future: " << PythonNameOf(e)
              << ": " << e.what() << std::endl;
  } catch (...) {
    std::cerr << "exception calling callback for future" << std::endl;
  }
}

}  // namespace

std::optional<Clock::time_point> DeadlineAfter(Timeout timeout) {
  if (!timeout) return std::nullopt;
  const auto now = Clock::now();
  if (timeout->count() <= 0) return now;
  // A century is "for ever" without overflowing the clock.
  const std::chrono::duration<double> limit = std::chrono::hours(24 * 36525);
  return now + std::chrono::duration_cast<Clock::duration>(
                   *timeout < limit ? *timeout : limit);
}

void Waiter::Notify(const StateBase* future) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    arrived_.push_back(future);
  }
  cv_.notify_all();
}

bool Waiter::Take(std::optional<Clock::time_point> deadline,
                  std::vector<const StateBase*>& out) {
  std::unique_lock<std::mutex> lock(mu_);
  auto ready = [&] { return !arrived_.empty(); };
  if (!deadline) {
    cv_.wait(lock, ready);
  } else if (!cv_.wait_until(lock, *deadline, ready)) {
    return false;
  }
  out.insert(out.end(), arrived_.begin(), arrived_.end());
  arrived_.clear();
  return true;
}

bool StateBase::cancel() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kRunning || state_ == State::kFinished) return false;
  if (state_ == State::kCancelled) return true;
  state_ = State::kCancelled;
  Announce(lock);
  return true;
}

bool StateBase::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kCancelled;
}

bool StateBase::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kRunning;
}

bool StateBase::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kCancelled || state_ == State::kFinished;
}

bool StateBase::failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kFinished && error_ != nullptr;
}

std::exception_ptr StateBase::exception(Timeout timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  WaitFinished(timeout, lock);
  return error_;
}

bool StateBase::set_running_or_notify_cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kPending) {
    state_ = State::kRunning;
    return true;
  }
  if (state_ == State::kCancelled) return false;
  throw InvalidStateError(
      "set_running_or_notify_cancel() on a future that is already running or "
      "finished; call it once, before the call starts");
}

bool StateBase::TrySetException(std::exception_ptr error) {
  return Finish([&] { error_ = error; });
}

bool StateBase::WaitDone(std::optional<Clock::time_point> deadline) const {
  std::unique_lock<std::mutex> lock(mu_);
  auto done = [&] {
    return state_ == State::kCancelled || state_ == State::kFinished;
  };
  if (!deadline) {
    cv_.wait(lock, done);
    return true;
  }
  return cv_.wait_until(lock, *deadline, done);
}

void StateBase::WaitFinished(Timeout timeout,
                             std::unique_lock<std::mutex>& lock) const {
  auto done = [&] {
    return state_ == State::kCancelled || state_ == State::kFinished;
  };
  if (!done()) {
    const auto deadline = DeadlineAfter(timeout);
    if (!deadline) {
      cv_.wait(lock, done);
    } else {
      cv_.wait_until(lock, *deadline, done);
    }
  }
  if (state_ == State::kCancelled) {
    throw CancelledError(
        "the future was cancelled before its call started, so it has no "
        "result");
  }
  if (state_ != State::kFinished) {
    throw TimeoutError(
        "the future was not done within the timeout; wait longer, or check "
        "that the executor has workers free");
  }
}

void StateBase::AddDoneCallback(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kCancelled && state_ != State::kFinished) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  RunDoneCallback(callback);
}

bool StateBase::AddWaiter(const std::shared_ptr<Waiter>& waiter) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kCancelled || state_ == State::kFinished) return false;
  waiters_.push_back(waiter);
  return true;
}

void StateBase::RemoveWaiter(const Waiter* waiter) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->get() == waiter) {
      waiters_.erase(it);
      return;
    }
  }
}

void StateBase::Announce(std::unique_lock<std::mutex>& lock) {
  std::vector<std::function<void()>> callbacks;
  callbacks.swap(callbacks_);
  std::vector<std::shared_ptr<Waiter>> waiters;
  waiters.swap(waiters_);
  cv_.notify_all();
  lock.unlock();
  for (const auto& w : waiters) w->Notify(this);
  for (const auto& callback : callbacks) RunDoneCallback(callback);
}

}  // namespace multiprocessing::futures::internal
