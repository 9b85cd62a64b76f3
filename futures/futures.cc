#include "futures/futures.h"

#include <algorithm>
#include <iostream>
#include <string_view>
#include <typeinfo>
#include <unordered_map>

#include "process/context.h"
#include "process/process.h"

namespace multiprocessing::futures {
namespace internal {
namespace {

// The pool fails the task of a worker that died with a ProcessError saying
// so, and every task with one once its workers keep dying at start; a task
// that raises ProcessError itself says something else. (The pool has no
// distinct class for these; see pool/pool.cc DescribeDeath and the broken
// pool's message.)
bool IsWorkerLoss(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ProcessError& e) {
    if (typeid(e) != typeid(ProcessError)) return false;
    std::string_view what = e.what();
    return (what.rfind("pool worker ", 0) == 0 &&
            what.find(" while running this task") != std::string_view::npos) ||
           what.rfind("the pool's workers keep dying before they start", 0) ==
               0;
  } catch (...) {
    return false;
  }
}

std::string WhatOf(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

void PrintException(std::string_view where, std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::cerr << where << ": " << PythonNameOf(e) << ": " << e.what()
              << std::endl;
  } catch (...) {
    std::cerr << where << ": an exception not derived from std::exception"
              << std::endl;
  }
}

}  // namespace

std::exception_ptr CurrentError(const std::exception& e) {
  std::exception_ptr current = std::current_exception();
  if (current) return current;
  return std::make_exception_ptr(
      RemoteError(PythonNameOf(e) + ": " + e.what()));
}

void ThrowCancelledBeforeStart() {
  throw CancelledError("the call was cancelled before a worker started it");
}

void ThrowForeignException() {
  throw Exception(
      "the call threw an exception not derived from std::exception; throw a "
      "std::exception (or a multiprocessing exception) to see what failed");
}

std::optional<Clock::time_point> MapDeadline(Timeout timeout) {
  return DeadlineAfter(timeout);
}

void ThrowMapTimeout() {
  throw TimeoutError(
      "map(): the results were not all ready within the timeout given to "
      "map() (measured from the call); the calls not yet returned were "
      "cancelled");
}

namespace {

struct ThreadInitializers {
  std::mutex mu;
  uint64_t last = 0;
  std::unordered_map<uint64_t, std::shared_ptr<ThreadInitializer>> by_id;
};
ThreadInitializers& Initializers() {
  static auto* all = new ThreadInitializers;
  return *all;
}

}  // namespace

uint64_t RegisterThreadInitializer(std::shared_ptr<ThreadInitializer> init) {
  ThreadInitializers& all = Initializers();
  std::lock_guard<std::mutex> lock(all.mu);
  uint64_t id = ++all.last;
  all.by_id.emplace(id, std::move(init));
  return id;
}

void UnregisterThreadInitializer(uint64_t id) {
  ThreadInitializers& all = Initializers();
  std::lock_guard<std::mutex> lock(all.mu);
  all.by_id.erase(id);
}

void RunThreadInitializer(uint64_t id) {
  std::shared_ptr<ThreadInitializer> init;
  {
    ThreadInitializers& all = Initializers();
    std::lock_guard<std::mutex> lock(all.mu);
    auto it = all.by_id.find(id);
    if (it == all.by_id.end()) return;
    init = it->second;
  }
  try {
    if (init->user) init->user();
  } catch (...) {
    std::exception_ptr error = std::current_exception();
    PrintException("Exception in initializer", error);
    if (auto core = init->core.lock())
      core->Break("the initializer raised " + WhatOf(error));
  }
}

void ExecutorCore::Submit(std::shared_ptr<WorkItem> item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!broken_.empty()) std::rethrow_exception(BrokenError(true));
    if (shutdown_) {
      throw RuntimeError(
          "cannot schedule new futures after shutdown; submit before "
          "shutdown() or use a new executor");
    }
    if (in_flight_.size() >= limit_ || !pending_.empty()) {
      pending_.push_back(std::move(item));
      return;
    }
    StartLocked(item);
  }
  Launch(std::move(item));
}

bool ExecutorCore::StartLocked(const std::shared_ptr<WorkItem>& item) {
  if (threads_) {
    // Threads mark it running when they start it.
    if (item->future->done()) return false;
  } else {
    try {
      if (!item->future->set_running_or_notify_cancel()) return false;
    } catch (const InvalidStateError&) {
      return false;  // completed by hand (set_result)
    }
  }
  in_flight_.emplace(item->future.get(), item->future);
  return true;
}

std::shared_ptr<WorkItem> ExecutorCore::TakeNextLocked() {
  while (broken_.empty() && in_flight_.size() < limit_ && !pending_.empty()) {
    std::shared_ptr<WorkItem> item = std::move(pending_.front());
    pending_.pop_front();
    if (StartLocked(item)) return item;
  }
  if (in_flight_.empty() && pending_.empty()) idle_cv_.notify_all();
  return nullptr;
}

void ExecutorCore::Launch(std::shared_ptr<WorkItem> item) {
  while (item) {
    try {
      item->dispatch();
      return;
    } catch (...) {
      // The pool refused it and will not report on it.
      Failed(item->future, std::current_exception());
    }
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(item->future.get());
    item = TakeNextLocked();
  }
}

void ExecutorCore::Settled(const StateBase* future) {
  std::shared_ptr<WorkItem> next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(future);
    next = TakeNextLocked();
  }
  Launch(std::move(next));
}

void ExecutorCore::Failed(const std::shared_ptr<StateBase>& future,
                          std::exception_ptr error) {
  if (!threads_ && IsWorkerLoss(error)) {
    Break(WhatOf(error));
    return;
  }
  future->TrySetException(error);
}

std::exception_ptr ExecutorCore::BrokenError(bool at_submit) const {
  if (threads_) {
    return std::make_exception_ptr(BrokenThreadPool(
        "A thread initializer failed, the thread pool is not usable anymore (" +
        broken_ + ")"));
  }
  if (at_submit) {
    return std::make_exception_ptr(BrokenProcessPool(
        "A child process terminated abruptly, the process pool is not usable "
        "anymore (" +
        broken_ + "); create a new executor"));
  }
  return std::make_exception_ptr(BrokenProcessPool(
      "A process in the process pool was terminated abruptly while the future "
      "was running or pending (" +
      broken_ + ")"));
}

void ExecutorCore::Break(const std::string& why) {
  std::deque<std::shared_ptr<WorkItem>> pending;
  std::vector<std::shared_ptr<StateBase>> running;
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!broken_.empty()) return;
    broken_ = why.empty() ? "a worker failed" : why;
    pending.swap(pending_);
    for (auto& [key, future] : in_flight_) running.push_back(future);
    error = BrokenError(false);
    idle_cv_.notify_all();
  }
  for (auto& future : running) future->TrySetException(error);
  for (auto& item : pending) item->future->TrySetException(error);
}

void ExecutorCore::CheckNotBroken() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!broken_.empty()) std::rethrow_exception(BrokenError(false));
}

bool ExecutorCore::broken() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !broken_.empty();
}

void ExecutorCore::Shutdown(bool wait, bool cancel_futures) {
  std::deque<std::shared_ptr<WorkItem>> cancelled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    if (cancel_futures) cancelled.swap(pending_);
  }
  for (auto& item : cancelled) item->future->cancel();
  if (!wait) return;
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] {
    return !broken_.empty() || (in_flight_.empty() && pending_.empty());
  });
}

}  // namespace internal

namespace {

int CheckMaxWorkers(std::optional<int> max_workers, int fallback) {
  if (!max_workers) return fallback;
  if (*max_workers <= 0) {
    throw ValueError("max_workers must be greater than 0; got " +
                     std::to_string(*max_workers));
  }
  return *max_workers;
}

}  // namespace

ProcessPoolExecutor::Parts ProcessPoolExecutor::Build(
    ProcessPoolExecutorOptions options) {
  const Context& context = options.mp_context != nullptr
                               ? *options.mp_context
                               : multiprocessing::get_context();
  const int workers = CheckMaxWorkers(options.max_workers, context.cpu_count());
  if (options.max_tasks_per_child && *options.max_tasks_per_child < 1) {
    throw ValueError("max_tasks_per_child must be at least 1; got " +
                     std::to_string(*options.max_tasks_per_child));
  }
  Parts parts;
  parts.forked = context.get_start_method().value_or("fork") == "fork";
  parts.core = std::make_shared<internal::ExecutorCore>(
      static_cast<size_t>(workers), false);
  parts.pool = std::make_unique<pool::Pool>(pool::PoolOptions{
      .processes = workers,
      .initializer = std::move(options.initializer),
      .maxtasksperchild = options.max_tasks_per_child,
      .context = &context,
  });
  return parts;
}

ThreadPoolExecutor::Parts ThreadPoolExecutor::Build(
    ThreadPoolExecutorOptions options) {
  const int workers = CheckMaxWorkers(
      options.max_workers, std::min(32, multiprocessing::cpu_count() + 4));
  Parts parts;
  parts.forked = true;
  parts.core = std::make_shared<internal::ExecutorCore>(
      static_cast<size_t>(workers), true);
  pool::PoolOptions pool_options{.processes = workers};
  if (options.initializer) {
    parts.initializer_id = internal::RegisterThreadInitializer(
        std::make_shared<internal::ThreadInitializer>(
            internal::ThreadInitializer{std::move(options.initializer),
                                        parts.core}));
    pool_options.initializer = pool::Initializer(
        &internal::RunThreadInitializer, parts.initializer_id);
  }
  try {
    parts.pool = std::make_unique<pool::ThreadPool>(std::move(pool_options));
  } catch (...) {
    internal::UnregisterThreadInitializer(parts.initializer_id);
    throw;
  }
  return parts;
}

}  // namespace multiprocessing::futures
