// Pool and ThreadPool across the start methods: every call, callbacks, errors,
// initializer, maxtasksperchild, and workers dying in the middle of a task.
#include "pool/pool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "pool/internal/watchdog.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using mp::pool::PoolOptions;
using namespace std::chrono_literals;

namespace pool_test {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
int fail_on_five(int x) {
  if (x == 5) throw mp::ValueError("five is not allowed");
  return x;
}
struct CustomError : std::exception {
  const char* what() const noexcept override { return "custom trouble"; }
};
int throw_custom(int) { throw CustomError(); }
int throw_out_of_range(int) {
  throw std::out_of_range("index 7 is out of range");
}
int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
int get_pid() { return static_cast<int>(getpid()); }
int pid_after_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(getpid());
}
void nothing(int) {}
std::string bad_utf8(int) { return std::string("\xff\xfe", 2); }
std::string greet(const std::string& name) { return "hello " + name; }
size_t length(const std::string& s) { return s.size(); }

// Dies the way `how` says when x == 3.
int die_on_three(int x, int how) {
  if (x == 3) {
    switch (how) {
      case 0:
        raise(SIGKILL);
        break;
      case 1: {
        volatile int* p = nullptr;
        *p = 1;
        break;
      }
      case 2:
        std::abort();
      case 3:
        _exit(7);
    }
  }
  return x;
}

// Atomic: ThreadPool workers all run the initializer on this one global.
std::atomic<int> g_initialized{0};
void init_worker(int value) { g_initialized.store(value); }
int read_initialized() { return g_initialized.load(); }
void init_throws() { throw mp::ValueError("initializer trouble"); }

// Counts its runs in the file named by $POOL_TEST_RUNS (one byte a run, so
// that runs in every worker process add up), takes a few ms, and fails on a
// negative item: -1 kills its worker, -2 throws.
int count_run(int x) {
  int fd = open(std::getenv("POOL_TEST_RUNS"), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd >= 0) {
    [[maybe_unused]] ssize_t n = write(fd, "r", 1);
    close(fd);
  }
  if (x == -1) raise(SIGKILL);
  if (x == -2) throw mp::ValueError("minus two");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return x;
}

// Writes its pid to `path` (made under another name, then renamed, so that
// the file is whole once it exists), then sleeps: a task the test can see
// running.
int announce_and_sleep(std::string path) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::string pid = std::to_string(getpid());
  [[maybe_unused]] ssize_t n = write(fd, pid.data(), pid.size());
  close(fd);
  rename(tmp.c_str(), path.c_str());
  std::this_thread::sleep_for(std::chrono::seconds(20));
  return 0;
}

// Blocks a ThreadPool worker until the test lets it go (at most 20 s).
std::atomic<bool> g_release{false};
std::atomic<bool> g_waiting{false};  // a worker thread waits for g_release
int wait_for_release(int x) {
  g_waiting = true;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!g_release.load() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return x;
}

int unregistered_square(int x) { return x * x; }

struct NoPickle {
  int v = 0;
};
int take_no_pickle(NoPickle p) { return p.v; }
NoPickle make_no_pickle(int x) { return NoPickle{x}; }

}  // namespace pool_test

MP_REGISTER_FUNCTION(pool_test::square);
MP_REGISTER_FUNCTION(pool_test::add);
MP_REGISTER_FUNCTION(pool_test::fail_on_five);
MP_REGISTER_FUNCTION(pool_test::throw_custom);
MP_REGISTER_FUNCTION(pool_test::throw_out_of_range);
MP_REGISTER_FUNCTION(pool_test::sleep_ms);
MP_REGISTER_FUNCTION(pool_test::get_pid);
MP_REGISTER_FUNCTION(pool_test::pid_after_ms);
MP_REGISTER_FUNCTION(pool_test::nothing);
MP_REGISTER_FUNCTION(pool_test::bad_utf8);
MP_REGISTER_FUNCTION(pool_test::greet);
MP_REGISTER_FUNCTION(pool_test::length);
MP_REGISTER_FUNCTION(pool_test::die_on_three);
MP_REGISTER_FUNCTION(pool_test::init_worker);
MP_REGISTER_FUNCTION(pool_test::read_initialized);
MP_REGISTER_FUNCTION(pool_test::init_throws);
MP_REGISTER_FUNCTION(pool_test::count_run);
MP_REGISTER_FUNCTION(pool_test::announce_and_sleep);

namespace {

using namespace pool_test;

using multiprocessing::pool::internal::Watchdog;

// A Pool or a ThreadPool behind the shared API.
class AnyPool {
 public:
  AnyPool(const std::string& kind, PoolOptions options) {
    if (kind == "thread") {
      threads_ = std::make_unique<mp::pool::ThreadPool>(std::move(options));
    } else {
      options.context = &mp::get_context(kind);
      processes_ = std::make_unique<mp::Pool>(std::move(options));
    }
  }
  mp::pool::internal::PoolApi& operator*() {
    if (threads_) return *threads_;
    return *processes_;
  }
  mp::pool::internal::PoolApi* operator->() { return &**this; }
  void reset() {
    threads_.reset();
    processes_.reset();
  }

 private:
  std::unique_ptr<mp::pool::ThreadPool> threads_;
  std::unique_ptr<mp::Pool> processes_;
};

class PoolTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool threads() const { return GetParam() == "thread"; }
  AnyPool Make(PoolOptions options = {.processes = 2}) {
    return AnyPool(GetParam(), std::move(options));
  }
  Watchdog watchdog_{std::chrono::seconds(60)};
};

constexpr auto kLong = 20s;

std::vector<int> Range(int n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

std::vector<int> Squares(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i * i;
  return v;
}

TEST_P(PoolTest, ApplyAndApplyAsync) {
  AnyPool pool = Make();
  EXPECT_EQ(pool->apply(square, {7}), 49);
  EXPECT_EQ(pool->apply(add, {2, 3}), 5);
  EXPECT_EQ(pool->apply(greet, {"bob"}), "hello bob");
  auto r = pool->apply_async(square, {9});
  EXPECT_EQ(r.get(kLong), 81);
  EXPECT_TRUE(r.ready());
  EXPECT_TRUE(r.successful());
  EXPECT_EQ(r.get(kLong), 81);  // again
  auto v = pool->apply_async(nothing, {1});
  EXPECT_EQ(v.get(kLong), nullptr);
}

TEST_P(PoolTest, MapStarmapAndChunksizes) {
  AnyPool pool = Make();
  EXPECT_EQ(pool->map(square, Range(10)), Squares(10));
  EXPECT_EQ(pool->map(square, Range(1000), 7), Squares(1000));
  EXPECT_EQ(pool->map(square, Range(100), 1), Squares(100));
  EXPECT_EQ(pool->map(square, std::vector<int>{}), std::vector<int>{});
  std::vector<std::tuple<int, int>> pairs = {{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool->starmap(add, pairs), (std::vector<int>{3, 7, 11}));
  auto m = pool->map_async(square, Range(50));
  EXPECT_EQ(m.get(kLong), Squares(50));
  auto s = pool->starmap_async(add, pairs, 2);
  EXPECT_EQ(s.get(kLong), (std::vector<int>{3, 7, 11}));
  EXPECT_THROW(pool->map(square, Range(3), 0), mp::ValueError);
  // The first chunk finishes last; results still come in input order.
  EXPECT_EQ(
      pool->map_async(sleep_ms, std::vector<int>{200, 0, 0, 0}, 1).get(kLong),
      (std::vector<int>{200, 0, 0, 0}));
}

TEST(ChunksizeTest, DefaultIsCPythons) {
  using mp::pool::internal::DefaultChunksize;
  EXPECT_EQ(DefaultChunksize(0, 4), 0u);
  EXPECT_EQ(DefaultChunksize(10, 4), 1u);  // divmod(10, 16) -> (0, 10)
  EXPECT_EQ(DefaultChunksize(200000, 2), 25000u);
  EXPECT_EQ(DefaultChunksize(17, 2), 3u);  // divmod(17, 8) -> (2, 1)
  EXPECT_EQ(DefaultChunksize(16, 2), 2u);
}

TEST_P(PoolTest, ImapInOrderAndUnordered) {
  AnyPool pool = Make();
  auto it = pool->imap(square, Range(20));
  std::vector<int> got;
  while (auto x = it.next(kLong)) got.push_back(*x);
  EXPECT_EQ(got, Squares(20));
  got.clear();
  for (int x : pool->imap(square, Range(30), 4)) got.push_back(x);
  EXPECT_EQ(got, Squares(30));
  auto un = pool->imap_unordered(square, Range(25), 3);
  std::multiset<int> set;
  while (auto x = un.next(kLong)) set.insert(*x);
  std::vector<int> want = Squares(25);
  EXPECT_EQ(set, std::multiset<int>(want.begin(), want.end()));
}

TEST_P(PoolTest, TimeoutsRaiseTimeoutError) {
  AnyPool pool = Make();
  auto r = pool->apply_async(sleep_ms, {300});
  EXPECT_FALSE(r.ready());
  EXPECT_THROW(r.successful(), mp::ValueError);
  EXPECT_THROW(r.get(10ms), mp::TimeoutError);
  r.wait(10ms);
  EXPECT_EQ(r.get(kLong), 300);
  auto it = pool->imap(sleep_ms, std::vector<int>{300, 0});
  EXPECT_THROW(it.next(10ms), mp::TimeoutError);
  EXPECT_EQ(it.next(kLong), 300);
  EXPECT_EQ(it.next(kLong), 0);
  EXPECT_EQ(it.next(kLong), std::nullopt);
}

TEST_P(PoolTest, CallbacksRunOnOneThreadInCompletionOrder) {
  AnyPool pool = Make();
  std::mutex mu;
  std::vector<int> seen;
  std::set<std::thread::id> callback_threads;
  std::vector<std::string> errors;
  std::vector<mp::pool::AsyncResult<int>> results;
  for (int i = 0; i < 10; ++i) {
    results.push_back(pool->apply_async(
        fail_on_five, {i},
        {.callback =
             [&](const int& v) {
               std::lock_guard<std::mutex> lock(mu);
               seen.push_back(v);
               callback_threads.insert(std::this_thread::get_id());
             },
         .error_callback =
             [&](const std::exception& e) {
               std::lock_guard<std::mutex> lock(mu);
               errors.push_back(mp::PythonNameOf(e) + ": " + e.what());
               callback_threads.insert(std::this_thread::get_id());
             }}));
  }
  for (auto& r : results) r.wait(kLong);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(seen.size(), 9u);
  EXPECT_EQ(errors,
            std::vector<std::string>{"ValueError: five is not allowed"});
  EXPECT_EQ(callback_threads.size(), 1u);
  EXPECT_EQ(callback_threads.count(std::this_thread::get_id()), 0u);
  std::vector<int> mapped;
  auto m = pool->map_async(
      square, Range(5), std::nullopt,
      {.callback = [&](const std::vector<int>& v) { mapped = v; }});
  m.wait(kLong);
  EXPECT_EQ(mapped, Squares(5));
}

TEST_P(PoolTest, ExceptionsKeepTheirType) {
  AnyPool pool = Make();
  auto r = pool->apply_async(fail_on_five, {5});
  r.wait(kLong);
  EXPECT_FALSE(r.successful());
  try {
    r.get(kLong);
    ADD_FAILURE() << "no exception";
  } catch (const mp::ValueError& e) {
    EXPECT_STREQ(e.what(), "five is not allowed");
  }
  if (threads()) {
    // Threads hand back the very exception.
    EXPECT_THROW(pool->apply(throw_out_of_range, {1}), std::out_of_range);
  } else {
    EXPECT_THROW(pool->apply(throw_out_of_range, {1}), mp::IndexError);
  }
  if (threads()) {
    EXPECT_THROW(pool->apply(throw_custom, {1}), CustomError);
  } else {
    try {
      pool->apply(throw_custom, {1});
      ADD_FAILURE() << "no exception";
    } catch (const mp::RemoteError& e) {
      EXPECT_NE(std::string(e.what()).find("CustomError"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("custom trouble"),
                std::string::npos);
    }
  }
  // map fails as a whole; the pool keeps working.
  EXPECT_THROW(pool->map_async(fail_on_five, Range(10)).get(kLong),
               mp::ValueError);
  auto it = pool->imap(fail_on_five, Range(8));
  std::vector<int> got;
  for (int i = 0; i < 8; ++i) {
    try {
      got.push_back(*it.next(kLong));
    } catch (const mp::ValueError&) {
      got.push_back(-1);
    }
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, -1, 6, 7}));
  EXPECT_EQ(pool->apply(square, {3}), 9);
}

TEST_P(PoolTest, PicklingErrors) {
  if (threads()) {
    AnyPool pool = Make();
    EXPECT_EQ(pool->apply(take_no_pickle, {NoPickle{4}}), 4);
    return;
  }
  AnyPool pool = Make();
  EXPECT_THROW(pool->apply_async(take_no_pickle, {NoPickle{1}}),
               mp::PicklingError);
  auto r = pool->apply_async(make_no_pickle, {1});
  EXPECT_THROW(r.get(kLong), mp::PicklingError);
  EXPECT_THROW(pool->apply(bad_utf8, {1}), mp::PicklingError);
  if (GetParam() != "fork") {
    try {
      pool->apply_async(unregistered_square, {2});
      ADD_FAILURE() << "no exception";
    } catch (const mp::PicklingError& e) {
      EXPECT_NE(std::string(e.what()).find("MP_REGISTER_FUNCTION"),
                std::string::npos)
          << e.what();
    }
  } else {
    EXPECT_EQ(pool->apply(unregistered_square, {2}), 4);
  }
  EXPECT_EQ(pool->apply(square, {3}), 9);
}

TEST_P(PoolTest, InitializerRunsInEachWorker) {
  AnyPool pool = Make({.processes = 2, .initializer = {init_worker, 42}});
  if (threads()) {
    // Threads share the global: it was set.
    EXPECT_EQ(pool->apply(read_initialized, {}), 42);
    g_initialized = 0;
    return;
  }
  for (int v : pool->map(sleep_ms, std::vector<int>(4, 20), 1))
    EXPECT_EQ(v, 20);
  auto values = pool->starmap(read_initialized, std::vector<std::tuple<>>(6));
  for (int v : values) EXPECT_EQ(v, 42);
  EXPECT_EQ(g_initialized, 0);  // not in the parent
}

TEST_P(PoolTest, FailingInitializerFailsTasksInsteadOfHanging) {
  if (threads()) GTEST_SKIP() << "a thread's initializer error is reported";
  AnyPool pool = Make({.processes = 2, .initializer = init_throws});
  auto r = pool->apply_async(square, {2});
  try {
    r.get(kLong);
    ADD_FAILURE() << "no exception";
  } catch (const mp::ProcessError& e) {
    EXPECT_NE(std::string(e.what()).find("initializer"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(pool->apply_async(square, {2}), mp::ProcessError);
}

TEST_P(PoolTest, CloseJoinTerminateAndState) {
  AnyPool pool = Make();
  EXPECT_THROW(pool->join(), mp::ValueError);
  auto r = pool->apply_async(sleep_ms, {100});
  pool->close();
  EXPECT_THROW(pool->apply(square, {1}), mp::ValueError);
  EXPECT_THROW(pool->map(square, Range(3)), mp::ValueError);
  pool->join();
  EXPECT_EQ(r.get(kLong), 100);  // close lets queued work finish

  // A thread cannot be stopped: its running task completes; queued ones fail.
  const int slow_ms = threads() ? 200 : 5000;
  AnyPool other = Make({.processes = 1});
  auto slow = other->apply_async(sleep_ms, {slow_ms});
  auto queued = other->apply_async(sleep_ms, {slow_ms});
  other->terminate();
  other->join();
  if (!threads()) EXPECT_THROW(slow.get(kLong), mp::ProcessError);
  EXPECT_THROW(queued.get(kLong), mp::ProcessError);
  EXPECT_THROW(other->apply(square, {1}), mp::ValueError);

  AnyPool destroyed = Make({.processes = 1});
  auto pending = destroyed->apply_async(sleep_ms, {slow_ms});
  auto pending2 = destroyed->apply_async(sleep_ms, {slow_ms});
  destroyed.reset();  // terminates
  EXPECT_TRUE(pending.ready());
  EXPECT_TRUE(pending2.ready());
}

TEST_P(PoolTest, BadOptions) {
  EXPECT_THROW(Make({.processes = 0}), mp::ValueError);
  if (!threads()) {
    EXPECT_THROW(Make({.processes = 1, .maxtasksperchild = 0}), mp::ValueError);
  }
  AnyPool pool = Make({});
  EXPECT_EQ(pool->processes(), mp::cpu_count());
}

TEST_P(PoolTest, MaxTasksPerChildReplacesWorkers) {
  if (threads()) GTEST_SKIP() << "threads have no maxtasksperchild";
  AnyPool pool = Make({.processes = 2, .maxtasksperchild = 2});
  std::set<int> pids;
  for (int i = 0; i < 8; ++i) pids.insert(pool->apply(get_pid, {}));
  EXPECT_GE(pids.size(), 4u);
  EXPECT_EQ(pool->map(square, Range(40), 1), Squares(40));
}

class WorkerDeathTest
    : public ::testing::TestWithParam<std::tuple<std::string, int>> {
 protected:
  Watchdog watchdog_{std::chrono::seconds(60)};
};

TEST_P(WorkerDeathTest, TaskFailsOthersComplete) {
  const auto& [method, how] = GetParam();
  mp::Pool pool({.processes = 2, .context = &mp::get_context(method)});
  std::vector<mp::pool::AsyncResult<int>> results;
  for (int i = 0; i < 8; ++i)
    results.push_back(pool.apply_async(die_on_three, {i, how}));
  for (int i = 0; i < 8; ++i) {
    if (i == 3) {
      try {
        results[i].get(kLong);
        ADD_FAILURE() << "no exception";
      } catch (const mp::ProcessError& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("PoolWorker-"), std::string::npos) << what;
        const char* expected[] = {"killed by SIGKILL", "killed by SIGSEGV",
                                  "killed by SIGABRT", "exited with code 7"};
        // (AddressSanitizer turns a segfault into exit code 1.)
        EXPECT_TRUE(
            what.find(expected[how]) != std::string::npos ||
            (how == 1 && what.find("exited with code") != std::string::npos))
            << what;
      }
    } else {
      EXPECT_EQ(results[i].get(kLong), i);
    }
  }
  // The same from a synchronous call, whose caller may be reading results.
  EXPECT_THROW(pool.apply(die_on_three, {3, how}), mp::ProcessError);
  EXPECT_EQ(pool.apply(die_on_three, {4, how}), 4);
  // map over a death: it fails, as one of its chunks did; the pool goes on.
  auto m = pool.starmap_async(
      die_on_three,
      std::vector<std::tuple<int, int>>{{1, how}, {2, how}, {3, how}, {4, how}},
      1);
  EXPECT_THROW(m.get(kLong), mp::ProcessError);
  EXPECT_EQ(pool.map_async(square, Range(100)).get(kLong), Squares(100));
  pool.close();
  pool.join();
}

TEST_P(PoolTest, TaskTimeoutKillsAndReplaces) {
  if (threads()) GTEST_SKIP() << "threads cannot be stopped";
  AnyPool pool = Make({.processes = 2, .task_timeout = 300ms});
  auto slow = pool->apply_async(sleep_ms, {10000});
  auto fast = pool->apply_async(sleep_ms, {10});
  EXPECT_THROW(slow.get(kLong), mp::TimeoutError);
  EXPECT_EQ(fast.get(kLong), 10);
  EXPECT_EQ(pool->map_async(square, Range(20)).get(kLong), Squares(20));
}

TEST_P(PoolTest, ManyConcurrentCallers) {
  AnyPool pool = Make();
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i)
        if (pool->apply_async(add, {t, i}).get(kLong) == t + i) ++ok;
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(ok.load(), 200);
}

// Synchronous calls (which may handle results on the calling thread) from
// several threads at once, beside asynchronous calls with callbacks: every
// call gets its own result and callbacks stay on one thread, not a caller's.
TEST_P(PoolTest, SyncCallersBesideCallbacks) {
  AnyPool pool = Make();
  std::mutex mu;
  std::set<std::thread::id> callback_threads, caller_threads;
  std::atomic<int> called_back{0};
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&, t] {
      {
        std::lock_guard<std::mutex> lock(mu);
        caller_threads.insert(std::this_thread::get_id());
      }
      for (int i = 0; i < 40; ++i) {
        if (pool->apply(add, {t, i}) == t + i) ++ok;
        if (i % 10 == 0 && pool->map(square, Range(30), 1) == Squares(30)) ++ok;
      }
    });
  }
  std::vector<mp::pool::AsyncResult<int>> results;
  for (int i = 0; i < 60; ++i) {
    results.push_back(
        pool->apply_async(square, {i}, {.callback = [&](const int&) {
                            std::lock_guard<std::mutex> lock(mu);
                            callback_threads.insert(std::this_thread::get_id());
                            ++called_back;
                          }}));
  }
  for (auto& c : callers) c.join();
  for (int i = 0; i < 60; ++i) EXPECT_EQ(results[i].get(kLong), i * i);
  EXPECT_EQ(ok.load(), 3 * (40 + 4));
  EXPECT_EQ(called_back.load(), 60);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(callback_threads.size(), 1u);
  for (auto id : caller_threads) EXPECT_EQ(callback_threads.count(id), 0u);
  EXPECT_EQ(callback_threads.count(std::this_thread::get_id()), 0u);
}

// A caller blocked in apply() while another thread terminates the pool gets
// an error, never a hang.
TEST_P(PoolTest, TerminateWhileACallerWaits) {
  AnyPool pool = Make();
  std::atomic<bool> raised{false};
  std::thread caller([&] {
    try {
      pool->apply(sleep_ms, {threads() ? 100 : 10000});
      raised = threads();  // a thread's running task completes
    } catch (const mp::ProcessError&) {
      raised = true;
    } catch (const mp::ValueError&) {
      raised = true;  // terminated before the call
    }
  });
  EXPECT_EQ(pool->apply(square, {4}), 16);
  pool->terminate();
  caller.join();
  EXPECT_TRUE(raised.load());
}

// Arguments too large for a worker's buffer fail the call with ValueError,
// from apply() as from get(), and the pool carries on.
TEST_P(PoolTest, TooLargeArgumentsFailTheCall) {
  if (threads()) GTEST_SKIP() << "threads pass arguments without copying";
  AnyPool pool = Make();
  const std::string big(size_t{5} << 20, 'x');
  EXPECT_THROW(pool->apply(length, {big}), mp::ValueError);
  auto r = pool->apply_async(length, {big});
  EXPECT_THROW(r.get(kLong), mp::ValueError);
  EXPECT_EQ(pool->apply(length, {std::string(1000, 'y')}), 1000u);
}

// What a callback may not do: wait on its own pool, whose results only the
// thread running the callback delivers. Each such call raises RuntimeError
// (CPython's pool hangs), submitting more work still works, and the pool's
// destructor returns. (Before the fix this test hung; the watchdog bounds it.)
TEST_P(PoolTest, BlockingCallsFromACallbackRaise) {
  AnyPool pool = Make();
  std::mutex mu;
  std::vector<std::string> raised;  // "call: message"
  std::vector<mp::pool::AsyncResult<int>> chained;
  auto expect_runtime_error = [&](const char* call, auto&& f) {
    std::string outcome = std::string(call) + ": did not raise";
    try {
      f();
    } catch (const mp::RuntimeError& e) {
      outcome = std::string(call) + ": " + e.what();
    } catch (const std::exception& e) {
      outcome = std::string(call) + ": wrong exception " + e.what();
    }
    std::lock_guard<std::mutex> lock(mu);
    raised.push_back(outcome);
  };
  auto in_callback = [&] {
    expect_runtime_error("apply", [&] { pool->apply(square, {2}); });
    expect_runtime_error("map", [&] { pool->map(square, Range(3)); });
    expect_runtime_error("starmap", [&] {
      pool->starmap(add, std::vector<std::tuple<int, int>>{{1, 2}});
    });
    auto next = pool->apply_async(square, {5});  // allowed
    expect_runtime_error("get", [&] { next.get(); });
    expect_runtime_error("get(timeout)", [&] { next.get(kLong); });
    expect_runtime_error("wait", [&] { next.wait(); });
    auto it = pool->imap(square, Range(2));
    expect_runtime_error("imap next", [&] { it.next(); });
    expect_runtime_error("join", [&] { pool->join(); });
    std::lock_guard<std::mutex> lock(mu);
    chained.push_back(next);
  };
  auto ok = pool->apply_async(square, {3},
                              {.callback = [&](const int&) { in_callback(); }});
  auto failed = pool->apply_async(
      fail_on_five, {5},
      {.error_callback = [&](const std::exception&) { in_callback(); }});
  EXPECT_EQ(ok.get(kLong), 9);
  EXPECT_THROW(failed.get(kLong), mp::ValueError);
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(raised.size(), 16u);
    for (const std::string& r : raised) {
      EXPECT_NE(r.find("result-handling thread"), std::string::npos) << r;
    }
    ASSERT_EQ(chained.size(), 2u);
  }
  // What the callbacks submitted ran, and the pool still works.
  for (auto& r : chained) EXPECT_EQ(r.get(kLong), 25);
  EXPECT_EQ(pool->map(square, Range(10)), Squares(10));
  pool.reset();  // returns
}

// terminate() from a callback stops the pool; the destructor returns.
TEST_P(PoolTest, TerminateFromACallback) {
  AnyPool pool = Make();
  std::atomic<bool> terminated{false};
  auto r = pool->apply_async(square, {3}, {.callback = [&](const int&) {
                               pool->terminate();
                               terminated = true;
                             }});
  EXPECT_EQ(r.get(kLong), 9);
  EXPECT_TRUE(terminated.load());
  EXPECT_THROW(pool->apply_async(square, {1}), mp::ValueError);
  pool.reset();
}

// A map that failed does not run its other chunks: the next map is not
// queued behind them. Counted in runs, not time.
TEST_P(PoolTest, FailedMapDropsItsUnstartedChunks) {
  const char* runs = std::getenv("POOL_TEST_RUNS");
  ASSERT_NE(runs, nullptr);
  close(open(runs, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  AnyPool pool = Make();
  std::vector<int> items = Range(200);
  items[2] = threads() ? -2 : -1;  // a worker dies (a thread throws)
  auto failed = pool->map_async(count_run, items, 1);
  if (threads()) {
    EXPECT_THROW(failed.get(kLong), mp::ValueError);
  } else {
    EXPECT_THROW(failed.get(kLong), mp::ProcessError);
  }
  // Runs behind the failed map's chunks that were already handed out.
  EXPECT_EQ(pool->map(square, Range(20), 1), Squares(20));
  struct stat st {};
  ASSERT_EQ(stat(runs, &st), 0);
  std::cout << "chunks of the failed map that ran: " << st.st_size << " of 200"
            << std::endl;
  // Without the cancellation all 200 run before the second map.
  EXPECT_LT(st.st_size, 40);
  EXPECT_GE(st.st_size, 3);
}

// A file in the test's temporary directory, removed now and at the end.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& name)
      : path_(std::string(std::getenv("TEST_TMPDIR")) + "/" + name) {
    unlink(path_.c_str());
  }
  ~ScratchFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Waits (at most kLong) for announce_and_sleep to announce itself at `path`;
// returns the pid it wrote, 0 if none.
int WaitForAnnouncement(const std::string& path) {
  auto deadline = std::chrono::steady_clock::now() + kLong;
  while (access(path.c_str(), F_OK) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);  // polls a condition, with a deadline
  }
  int pid = 0;
  std::ifstream in(path);
  in >> pid;
  return pid;
}

// After terminate(), a task that was running says the pool was terminated,
// not that its worker was replaced.
TEST_P(PoolTest, TerminateSaysWhatHappened) {
  if (threads()) GTEST_SKIP() << "a thread's running task is not stopped";
  ScratchFile started("started-" + GetParam());
  AnyPool pool = Make();
  auto r = pool->apply_async(announce_and_sleep, {started.path()});
  ASSERT_NE(WaitForAnnouncement(started.path()), 0);
  pool->terminate();
  try {
    r.get(kLong);
    ADD_FAILURE() << "no exception";
  } catch (const mp::ProcessError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("terminated"), std::string::npos) << what;
    EXPECT_EQ(what.find("replaced"), std::string::npos) << what;
    EXPECT_EQ(what.find("new worker"), std::string::npos) << what;
  }
}

// cancel() withdraws a call that no worker was handed yet, as
// concurrent.futures does; a call already handed out is not cancelled.
TEST_P(PoolTest, CancelACallNotYetStarted) {
  ScratchFile started("cancel-" + GetParam());
  g_release = false;
  g_waiting = false;
  AnyPool pool = Make({.processes = 1});
  // The only worker is busy, and holds one more task ahead (see Depth).
  mp::pool::AsyncResult<int> busy =
      threads() ? pool->apply_async(wait_for_release, {0})
                : pool->apply_async(announce_and_sleep, {started.path()});
  if (threads()) {
    // A thread takes its task only when free: wait until it took this one.
    auto deadline = std::chrono::steady_clock::now() + kLong;
    while (!g_waiting && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);  // polls a condition, with a deadline
    ASSERT_TRUE(g_waiting.load());
  }
  auto ahead = pool->apply_async(square, {2});
  auto waiting = pool->apply_async(square, {7});
  std::atomic<int> error_callbacks{0};
  auto waiting_map = pool->map_async(
      square, Range(10), 2, {.error_callback = [&](const std::exception& e) {
        if (dynamic_cast<const mp::pool::CancelledError*>(&e))
          ++error_callbacks;
      }});
  EXPECT_FALSE(busy.cancel());
  EXPECT_TRUE(waiting.cancel());
  EXPECT_TRUE(waiting.cancelled());
  EXPECT_TRUE(waiting.ready());
  EXPECT_FALSE(waiting.successful());
  EXPECT_THROW(waiting.get(kLong), mp::pool::CancelledError);
  EXPECT_FALSE(waiting.cancel());  // once
  EXPECT_TRUE(waiting_map.cancel());
  EXPECT_THROW(waiting_map.get(kLong), mp::pool::CancelledError);
  EXPECT_EQ(error_callbacks.load(), 1);
  EXPECT_FALSE(busy.cancelled());
  if (threads()) {
    g_release = true;
    EXPECT_EQ(busy.get(kLong), 0);
    EXPECT_EQ(ahead.get(kLong), 4);
    EXPECT_FALSE(ahead.cancel());  // done
    // The cancelled calls never ran; the pool goes on.
    EXPECT_EQ(pool->map(square, Range(5)), Squares(5));
  }
  pool.reset();
}

// terminate() of a running call kills its worker, which the pool replaces;
// get() says what happened.
TEST_P(PoolTest, TerminateARunningCall) {
  if (threads()) GTEST_SKIP() << "a thread cannot be stopped";
  ScratchFile started("terminate-" + GetParam());
  AnyPool pool = Make();
  auto r = pool->apply_async(announce_and_sleep, {started.path()});
  const int pid = WaitForAnnouncement(started.path());
  ASSERT_NE(pid, 0);
  auto deadline = std::chrono::steady_clock::now() + kLong;
  r.terminate();
  try {
    r.get(kLong);
    ADD_FAILURE() << "no exception";
  } catch (const mp::ProcessError& e) {
    EXPECT_NE(std::string(e.what()).find("AsyncResult::terminate()"),
              std::string::npos)
        << e.what();
  }
  // The worker is gone (reaped by the pool) ...
  while (kill(pid, 0) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_NE(kill(pid, 0), 0) << "the worker running the call still runs";
  // ... and replaced: both workers serve tasks again.
  std::set<int> pids;
  // (A spawned replacement takes a while to start.)
  while (pids.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    // Two at once go to the two workers (least loaded first).
    auto a = pool->apply_async(pid_after_ms, {20});
    auto b = pool->apply_async(pid_after_ms, {20});
    pids = {a.get(kLong), b.get(kLong)};
  }
  EXPECT_EQ(pids.size(), 2u);
  EXPECT_EQ(pids.count(pid), 0u);
  EXPECT_EQ(pool->map(square, Range(20), 1), Squares(20));
  r.terminate();  // done: nothing happens
  EXPECT_FALSE(r.cancel());
}

// A lazy input range, read once: `limit` numbers from 0 (unbounded if
// negative), counting how many were read. (The toolchain's clang cannot
// compile libstdc++'s std::views::iota; any range type takes the same path.)
class Numbers {
 public:
  explicit Numbers(int limit, std::atomic<int>* pulled = nullptr)
      : limit_(limit), pulled_(pulled) {}
  class iterator {
   public:
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Numbers* owner) : owner_(owner) {}
    int operator*() const { return owner_->next_; }
    iterator& operator++() {
      ++owner_->next_;
      if (owner_->pulled_ != nullptr) ++*owner_->pulled_;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const {
      return owner_->limit_ >= 0 && owner_->next_ >= owner_->limit_;
    }

   private:
    Numbers* owner_ = nullptr;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  int limit_;
  std::atomic<int>* pulled_;
  int next_ = 0;
};
static_assert(std::ranges::input_range<Numbers>);
static_assert(!std::ranges::sized_range<Numbers>);

// imap over inputs read as results are taken: an unbounded one whose
// consumer stops early (the pool then closes cleanly), read-ahead bounded,
// a finite lazy one, an empty one.
TEST_P(PoolTest, ImapOverLazyAndUnboundedInputs) {
  AnyPool pool = Make();
  auto first = pool->imap(square, Numbers(-1));  // moved in
  for (int i = 0; i < 50; ++i) {
    std::optional<int> v = first.next(kLong);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, i * i);
  }
  // Read-ahead is a few chunks per worker (2 workers: 4 chunks of 3 items).
  std::atomic<int> pulled{0};
  Numbers counted(-1, &pulled);  // an lvalue: referred to
  auto second = pool->imap_unordered(square, counted, 3);
  std::set<int> got;
  for (int i = 0; i < 30; ++i) got.insert(*second.next(kLong));
  EXPECT_EQ(got.size(), 30u);
  EXPECT_LE(pulled.load(), 30 + 6 * 3) << "read too far ahead";
  std::vector<int> squares;
  for (int v : pool->imap(square, Numbers(50), 4)) squares.push_back(v);
  ASSERT_EQ(squares.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(squares[i], i * i);
  auto none = pool->imap(square, Numbers(0));
  EXPECT_FALSE(none.next(kLong).has_value());
  // The unbounded inputs were left unfinished; the pool still closes, and
  // reading on says the pool stopped, once what was sent is taken.
  pool->close();
  pool->join();
  bool raised = false;
  for (int i = 0; i < 100 && !raised; ++i) {
    try {
      if (!first.next(kLong)) break;
    } catch (const mp::ValueError& e) {
      raised = true;
      EXPECT_NE(std::string(e.what()).find("not running"), std::string::npos);
    }
  }
  EXPECT_TRUE(raised);
}

INSTANTIATE_TEST_SUITE_P(Methods, PoolTest,
                         ::testing::Values("fork", "spawn", "forkserver",
                                           "thread"));
INSTANTIATE_TEST_SUITE_P(Methods, WorkerDeathTest,
                         ::testing::Combine(::testing::Values("fork", "spawn",
                                                              "forkserver"),
                                            ::testing::Values(0, 1, 2, 3)));

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  // Before any worker (or the forkserver) starts, so that every worker has it.
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string runs = std::string(tmp != nullptr ? tmp : "/tmp") + "/runs-" +
                     std::to_string(getpid());
  setenv("POOL_TEST_RUNS", runs.c_str(), 1);
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  unlink(runs.c_str());
  return rc;
}
