// For pool tests: aborts the test program when a test outlives its deadline,
// so that a hang fails the test instead of stalling CI.
#ifndef MULTIPROCESSING_POOL_INTERNAL_WATCHDOG_H_
#define MULTIPROCESSING_POOL_INTERNAL_WATCHDOG_H_

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

namespace multiprocessing::pool::internal {

class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds limit) {
    thread_ = std::thread([this, limit] {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, limit, [&] { return done_; })) {
        std::cerr << "watchdog: test exceeded its deadline" << std::endl;
        std::abort();
      }
    });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace multiprocessing::pool::internal

#endif  // MULTIPROCESSING_POOL_INTERNAL_WATCHDOG_H_
