// ProcessPoolExecutor under fork, spawn and forkserver, and ThreadPoolExecutor:
// results, errors, timeouts, cancellation, as_completed, wait, map, shutdown,
// max_tasks_per_child, and workers that die (BrokenProcessPool).
//
// Calls that must stay running while the test looks at them wait on a Gate:
// a FIFO the test writes one byte into per call it releases (every wait in a
// call is bounded, so a bug fails the test instead of hanging it).
#include "futures/futures.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
namespace cf = multiprocessing::futures;
using namespace std::chrono_literals;

namespace futures_test {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
void nothing(int) {}
std::string greet(const std::string& name) { return "hello " + name; }
int fail_on_five(int x) {
  if (x == 5) throw mp::ValueError("five is not allowed");
  return x;
}
int throw_key_error(int) { throw mp::KeyError("missing"); }
int throw_out_of_range(int) {
  throw std::out_of_range("index 7 is out of range");
}
int get_pid() { return static_cast<int>(getpid()); }
int kill_self() {
  raise(SIGKILL);
  return 0;
}
int not_registered(int x) { return x; }

// Opens `name` in `dir`, a FIFO the test holds open.
int OpenFifo(const std::string& dir, const char* name, int flags) {
  return open((dir + "/" + name).c_str(), flags | O_NONBLOCK | O_CLOEXEC);
}

// Says "started" (with the pid) on dir/started, then waits up to 60 s for a
// byte on dir/go. Returns the pid, or -1 if never released.
int gated(const std::string& dir) {
  const int pid = static_cast<int>(getpid());
  int started = OpenFifo(dir, "started", O_WRONLY);
  if (started >= 0) {
    [[maybe_unused]] ssize_t n = write(started, &pid, sizeof pid);
    close(started);
  }
  int go = OpenFifo(dir, "go", O_RDONLY);
  if (go < 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  int result = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{go, POLLIN, 0};
    poll(&p, 1, 1000);
    char c;
    if (read(go, &c, 1) == 1) {
      result = pid;
      break;
    }
  }
  close(go);
  return result;
}

std::atomic<int> g_initialized{0};
void init_worker(int value) { g_initialized.store(value); }
int read_initialized() { return g_initialized.load(); }
void init_throws() { throw mp::ValueError("initializer refuses"); }
void init_exits() { _exit(3); }

}  // namespace futures_test

MP_REGISTER_FUNCTION(futures_test::square);
MP_REGISTER_FUNCTION(futures_test::add);
MP_REGISTER_FUNCTION(futures_test::nothing);
MP_REGISTER_FUNCTION(futures_test::greet);
MP_REGISTER_FUNCTION(futures_test::fail_on_five);
MP_REGISTER_FUNCTION(futures_test::throw_key_error);
MP_REGISTER_FUNCTION(futures_test::throw_out_of_range);
MP_REGISTER_FUNCTION(futures_test::get_pid);
MP_REGISTER_FUNCTION(futures_test::kill_self);
MP_REGISTER_FUNCTION(futures_test::gated);
MP_REGISTER_FUNCTION(futures_test::init_worker);
MP_REGISTER_FUNCTION(futures_test::read_initialized);
MP_REGISTER_FUNCTION(futures_test::init_throws);
MP_REGISTER_FUNCTION(futures_test::init_exits);

namespace {

using namespace futures_test;

constexpr auto kLong = 60s;

// The FIFOs gated() waits on, in a temporary directory removed at the end.
class Gate {
 public:
  Gate() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string tmpl =
        std::string(base != nullptr ? base : "/tmp") + "/futures_test.XXXXXX";
    dir_ = mkdtemp(tmpl.data());
    for (const char* name : {"go", "started"})
      mkfifo((dir_ + "/" + name).c_str(), 0600);
    // Read-write: never blocks, keeps the FIFOs' bytes while nobody reads.
    go_ = OpenFifo(dir_, "go", O_RDWR);
    started_ = OpenFifo(dir_, "started", O_RDWR);
  }
  ~Gate() {
    close(go_);
    close(started_);
    std::filesystem::remove_all(dir_);
  }
  const std::string& dir() const { return dir_; }
  // Lets `n` gated calls return.
  void Release(int n = 1) {
    for (int i = 0; i < n; ++i) {
      char c = 'x';
      ASSERT_EQ(write(go_, &c, 1), 1);
    }
  }
  // The pid of the next gated call to start; -1 if none within `timeout`.
  int WaitStarted(std::chrono::milliseconds timeout = 60s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int pid;
      if (read(started_, &pid, sizeof pid) == sizeof pid) return pid;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return -1;
      pollfd p{started_, POLLIN, 0};
      poll(&p, 1, static_cast<int>(left.count()));
    }
  }

 private:
  std::string dir_;
  int go_ = -1;
  int started_ = -1;
};

std::string NameOf(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return mp::PythonNameOf(x);
  } catch (...) {
    return "?";
  }
}

struct Options {
  std::optional<int> max_workers = 2;
  mp::pool::Initializer initializer;
  std::optional<int> max_tasks_per_child;
};

class ExecutorTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool threads() const { return GetParam() == "thread"; }
  // Runs body(executor) with an executor of this test's kind.
  template <class Body>
  void With(Options o, Body body) {
    if (threads()) {
      cf::ThreadPoolExecutor ex(
          {.max_workers = o.max_workers, .initializer = o.initializer});
      body(ex);
    } else {
      cf::ProcessPoolExecutor ex(
          {.max_workers = o.max_workers,
           .mp_context = &mp::get_context(GetParam()),
           .initializer = o.initializer,
           .max_tasks_per_child = o.max_tasks_per_child});
      body(ex);
    }
  }
  // A hung test ends the program (SIGALRM) rather than the whole run.
  void SetUp() override { alarm(120); }
  void TearDown() override {
    alarm(0);
    // Every executor shut down and joined its workers.
    EXPECT_TRUE(mp::active_children().empty());
  }
};

TEST_P(ExecutorTest, SubmitResults) {
  With({}, [](auto& ex) {
    EXPECT_EQ(ex.max_workers(), 2);
    cf::Future<int> a = ex.submit(square, 7);
    cf::Future<int> b = ex.submit(add, 2, 3);
    cf::Future<std::nullptr_t> c = ex.submit(nothing, 1);
    cf::Future<std::string> d = ex.submit(greet, "world");
    EXPECT_EQ(a.result(kLong), 49);
    EXPECT_EQ(b.result(kLong), 5);
    EXPECT_EQ(c.result(kLong), nullptr);
    EXPECT_EQ(d.result(kLong), "hello world");
    EXPECT_TRUE(a.done());
    EXPECT_FALSE(a.running());
    EXPECT_FALSE(a.cancelled());
    EXPECT_EQ(a.exception(kLong), nullptr);
    EXPECT_FALSE(a.cancel());  // finished
  });
}

TEST_P(ExecutorTest, ExceptionsKeepPythonNames) {
  With({}, [](auto& ex) {
    auto f = ex.submit(fail_on_five, 5);
    EXPECT_THROW(f.result(kLong), mp::ValueError);
    EXPECT_EQ(NameOf(f.exception(kLong)), "ValueError");
    EXPECT_EQ(NameOf(ex.submit(throw_key_error, 0).exception(kLong)),
              "KeyError");
    EXPECT_EQ(NameOf(ex.submit(throw_out_of_range, 0).exception(kLong)),
              "IndexError");
    // The executor carries on.
    EXPECT_EQ(ex.submit(fail_on_five, 4).result(kLong), 4);
  });
}

TEST_P(ExecutorTest, ResultAndExceptionTimeOut) {
  Gate gate;
  With({.max_workers = 1}, [&](auto& ex) {
    auto f = ex.submit(gated, gate.dir());
    ASSERT_GT(gate.WaitStarted(), 0);
    EXPECT_TRUE(f.running());
    EXPECT_THROW(f.result(50ms), mp::TimeoutError);
    EXPECT_THROW(f.exception(0s), mp::TimeoutError);
    EXPECT_FALSE(f.done());
    gate.Release();
    EXPECT_GT(f.result(kLong), 0);
  });
}

TEST_P(ExecutorTest, CancelBeforeStart) {
  Gate gate;
  With({.max_workers = 1}, [&](auto& ex) {
    auto running = ex.submit(gated, gate.dir());
    ASSERT_GT(gate.WaitStarted(), 0);
    auto waiting = ex.submit(square, 3);
    auto also_waiting = ex.submit(square, 4);
    bool called = false;
    waiting.add_done_callback(
        [&](const cf::Future<int>& f) { called = f.cancelled(); });
    EXPECT_TRUE(running.running());
    EXPECT_FALSE(running.cancel());
    EXPECT_FALSE(waiting.running());
    EXPECT_FALSE(waiting.done());
    EXPECT_TRUE(waiting.cancel());
    EXPECT_TRUE(called);
    EXPECT_TRUE(waiting.cancelled());
    EXPECT_TRUE(waiting.done());
    EXPECT_THROW(waiting.result(kLong), cf::CancelledError);
    EXPECT_THROW(waiting.exception(kLong), cf::CancelledError);
    gate.Release();
    EXPECT_GT(running.result(kLong), 0);
    EXPECT_EQ(also_waiting.result(kLong), 16);  // skipped the cancelled one
    EXPECT_TRUE(waiting.cancelled());
  });
}

TEST_P(ExecutorTest, AsCompletedYieldsInCompletionOrder) {
  Gate gate;
  With({.max_workers = 2}, [&](auto& ex) {
    auto slow = ex.submit(gated, gate.dir());
    ASSERT_GT(gate.WaitStarted(), 0);
    auto fast = ex.submit(square, 5);
    std::vector<cf::Future<int>> fs{slow, fast};
    auto it = cf::as_completed(fs, kLong);
    std::optional<cf::Future<int>> first = it.next();
    ASSERT_TRUE(first);
    EXPECT_TRUE(*first == fast);
    gate.Release();
    std::optional<cf::Future<int>> second = it.next();
    ASSERT_TRUE(second);
    EXPECT_TRUE(*second == slow);
    EXPECT_FALSE(it.next());
  });
}

TEST_P(ExecutorTest, AsCompletedTimesOut) {
  Gate gate;
  With({.max_workers = 1}, [&](auto& ex) {
    std::vector<cf::Future<int>> fs{ex.submit(gated, gate.dir())};
    auto it = cf::as_completed(fs, 100ms);
    EXPECT_THROW(it.next(), mp::TimeoutError);
    gate.Release();
    EXPECT_GT(fs[0].result(kLong), 0);
  });
}

TEST_P(ExecutorTest, WaitModes) {
  Gate gate;
  With({.max_workers = 2}, [&](auto& ex) {
    auto slow = ex.submit(gated, gate.dir());
    ASSERT_GT(gate.WaitStarted(), 0);
    auto fast = ex.submit(square, 3);
    std::vector<cf::Future<int>> fs{slow, fast};
    auto first = cf::wait(fs, kLong, cf::FIRST_COMPLETED);
    ASSERT_EQ(first.done.size(), 1u);
    EXPECT_TRUE(first.done[0] == fast);
    EXPECT_TRUE(first.not_done[0] == slow);

    auto timed_out = cf::wait(fs, 50ms, cf::ALL_COMPLETED);
    EXPECT_EQ(timed_out.not_done.size(), 1u);

    auto failing = ex.submit(fail_on_five, 5);
    fs.push_back(failing);
    auto on_error = cf::wait(fs, kLong, cf::FIRST_EXCEPTION);
    EXPECT_EQ(on_error.done.size(), 2u);
    ASSERT_EQ(on_error.not_done.size(), 1u);
    EXPECT_TRUE(on_error.not_done[0] == slow);

    gate.Release();
    auto all = cf::wait(fs, kLong, cf::ALL_COMPLETED);
    EXPECT_EQ(all.done.size(), 3u);
    EXPECT_TRUE(all.not_done.empty());
  });
}

TEST_P(ExecutorTest, ShutdownCancelsQueuedCalls) {
  Gate gate;
  std::vector<cf::Future<int>> rest;
  cf::Future<int> running, queued;
  With({.max_workers = 1}, [&](auto& ex) {
    running = ex.submit(gated, gate.dir());
    ASSERT_GT(gate.WaitStarted(), 0);
    queued = ex.submit(square, 6);
    for (int i = 0; i < 5; ++i) rest.push_back(ex.submit(square, i));
    ex.shutdown(/*wait=*/false, /*cancel_futures=*/true);
    for (auto& f : rest) EXPECT_TRUE(f.cancelled());
    EXPECT_THROW(ex.submit(square, 1), mp::RuntimeError);
    EXPECT_FALSE(running.done());
    gate.Release();
    ex.shutdown();  // waits
    EXPECT_TRUE(running.done());
  });
  EXPECT_GT(running.result(0s), 0);
  EXPECT_TRUE(queued.cancelled());
}

TEST_P(ExecutorTest, DestructorWaitsForEveryCall) {
  std::vector<cf::Future<int>> fs;
  With({.max_workers = 2}, [&](auto& ex) {
    for (int i = 0; i < 20; ++i) fs.push_back(ex.submit(square, i));
  });
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(fs[i].done());
    EXPECT_EQ(fs[i].result(0s), i * i);
  }
}

TEST_P(ExecutorTest, MapInOrder) {
  std::vector<int> xs(25);
  for (int i = 0; i < 25; ++i) xs[i] = i;
  std::vector<int> want;
  for (int x : xs) want.push_back(x * x);
  With({}, [&](auto& ex) {
    for (size_t chunksize : {1, 3, 100}) {
      std::vector<int> got;
      for (int r : ex.map(square, xs, cf::MapOptions{.chunksize = chunksize}))
        got.push_back(r);
      EXPECT_EQ(got, want) << "chunksize " << chunksize;
    }
    std::vector<int> got;
    for (int r : ex.map(square, xs)) got.push_back(r);
    EXPECT_EQ(got, want);
    // Several iterables: zipped, the shortest ends it.
    std::vector<int> ys{10, 20, 30};
    std::vector<int> sums;
    for (int r : ex.map(add, xs, ys, cf::MapOptions{.chunksize = 2}))
      sums.push_back(r);
    EXPECT_EQ(sums, (std::vector<int>{10, 21, 32}));
    EXPECT_FALSE(ex.map(square, std::vector<int>{}).next());
    EXPECT_THROW(ex.map(square, xs, cf::MapOptions{.chunksize = 0}),
                 mp::ValueError);
  });
}

TEST_P(ExecutorTest, MapRaisesTheFirstFailureInOrder) {
  With({}, [&](auto& ex) {
    std::vector<int> xs{0, 1, 2, 3, 4, 5, 6, 7};
    auto results = ex.map(fail_on_five, xs);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(results.next(), i);
    EXPECT_THROW(results.next(), mp::ValueError);
    EXPECT_FALSE(results.next());  // over, as a Python generator that raised
    // A chunk fails as a whole (threads ignore chunksize).
    auto chunked = ex.map(fail_on_five, xs, cf::MapOptions{.chunksize = 2});
    for (int i = 0; i < (threads() ? 5 : 4); ++i) EXPECT_EQ(chunked.next(), i);
    EXPECT_THROW(chunked.next(), mp::ValueError);
  });
}

TEST_P(ExecutorTest, MapTimeoutFromTheCall) {
  Gate gate;
  With({.max_workers = 1}, [&](auto& ex) {
    std::vector<std::string> dirs{gate.dir(), gate.dir(), gate.dir()};
    auto results = ex.map(gated, dirs, cf::MapOptions{.timeout = 200ms});
    EXPECT_THROW(results.next(), mp::TimeoutError);
    EXPECT_FALSE(results.next());
    gate.Release(3);  // whatever started may finish
  });
}

TEST_P(ExecutorTest, DoneCallbackGetsTheFuture) {
  With({}, [&](auto& ex) {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<int> seen;
    auto f = ex.submit(square, 9);
    f.add_done_callback([&](const cf::Future<int>& done) {
      std::lock_guard<std::mutex> lock(mu);
      seen = done.result(0s);
      cv.notify_all();
    });
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kLong, [&] { return seen.has_value(); }));
    EXPECT_EQ(*seen, 81);
  });
}

TEST_P(ExecutorTest, InitializerRunsInEveryWorker) {
  With({.max_workers = 2, .initializer = {init_worker, 17}}, [](auto& ex) {
    EXPECT_EQ(ex.submit(read_initialized).result(kLong), 17);
  });
  g_initialized = 0;
}

TEST_P(ExecutorTest, FailingInitializerBreaksTheExecutor) {
  for (auto init : {init_throws, init_exits}) {
    if (threads() && init == init_exits) continue;  // would end this process
    With({.max_workers = 1, .initializer = init}, [&](auto& ex) {
      // Whether the breakage is noticed before submit() or after.
      try {
        auto f = ex.submit(square, 2);
        std::exception_ptr e = f.exception(kLong);
        EXPECT_EQ(NameOf(e),
                  threads() ? "BrokenThreadPool" : "BrokenProcessPool");
      } catch (const cf::BrokenExecutor& e) {
        EXPECT_EQ(std::string(e.python_name()),
                  threads() ? "BrokenThreadPool" : "BrokenProcessPool");
      }
      EXPECT_THROW(ex.submit(square, 3), cf::BrokenExecutor);
    });
  }
}

TEST_P(ExecutorTest, BadArguments) {
  if (threads()) {
    EXPECT_THROW(cf::ThreadPoolExecutor({.max_workers = 0}), mp::ValueError);
  } else {
    EXPECT_THROW(
        cf::ProcessPoolExecutor(
            {.max_workers = 0, .mp_context = &mp::get_context(GetParam())}),
        mp::ValueError);
    EXPECT_THROW(
        cf::ProcessPoolExecutor({.max_workers = 1,
                                 .mp_context = &mp::get_context(GetParam()),
                                 .max_tasks_per_child = 0}),
        mp::ValueError);
  }
}

// --- Process pools only.

class ProcessExecutorTest : public ExecutorTest {};

TEST_P(ProcessExecutorTest, MaxTasksPerChildReplacesWorkers) {
  With({.max_workers = 1, .max_tasks_per_child = 2}, [](auto& ex) {
    std::vector<int> pids;
    for (int i = 0; i < 6; ++i)
      pids.push_back(ex.submit(get_pid).result(kLong));
    EXPECT_EQ(pids[0], pids[1]);
    EXPECT_EQ(pids[2], pids[3]);
    EXPECT_EQ(pids[4], pids[5]);
    EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), 3u);
  });
}

TEST_P(ProcessExecutorTest, WorkerKilledBreaksThePool) {
  Gate gate;
  With({.max_workers = 2}, [&](auto& ex) {
    auto held = ex.submit(gated, gate.dir());
    ASSERT_GT(gate.WaitStarted(), 0);
    auto pending = ex.submit(square, 1);  // may run or not: it fails either way
    auto dies = ex.submit(kill_self);
    EXPECT_EQ(NameOf(dies.exception(kLong)), "BrokenProcessPool");
    // Every other call fails with it too, without waiting for them.
    EXPECT_EQ(NameOf(held.exception(kLong)), "BrokenProcessPool");
    try {
      pending.result(kLong);
    } catch (const cf::BrokenProcessPool&) {
    }
    try {
      ex.submit(square, 2);
      FAIL() << "submit() on a broken executor";
    } catch (const cf::BrokenProcessPool& e) {
      EXPECT_NE(std::string(e.what()).find("SIGKILL"), std::string::npos)
          << e.what();
    }
  });  // shutdown stops the gated worker
}

TEST_P(ProcessExecutorTest, WorkerKilledFromOutside) {
  Gate gate;
  With({.max_workers = 1}, [&](auto& ex) {
    auto f = ex.submit(gated, gate.dir());
    int pid = gate.WaitStarted();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    EXPECT_THROW(f.result(kLong), cf::BrokenProcessPool);
    EXPECT_THROW(ex.submit(square, 1), cf::BrokenProcessPool);
  });
}

TEST_P(ProcessExecutorTest, UnregisteredFunction) {
  With({}, [&](auto& ex) {
    if (GetParam() == "fork") {
      EXPECT_EQ(ex.submit(not_registered, 3).result(kLong), 3);
    } else {
      EXPECT_THROW(ex.submit(not_registered, 3), mp::PicklingError);
      EXPECT_THROW(ex.map(not_registered, std::vector<int>{1}),
                   mp::PicklingError);
    }
  });
}

// --- Thread pools only.

TEST(ThreadPoolExecutorTest, AnyCallable) {
  cf::ThreadPoolExecutor ex(2);
  int base = 40;
  auto f = ex.submit([base](int x) { return base + x; }, 2);
  EXPECT_EQ(f.result(kLong), 42);
  std::function<std::string(std::string)> twice = [](std::string s) {
    return s + s;
  };
  EXPECT_EQ(ex.submit(twice, "ab").result(kLong), "abab");
  std::vector<int> got;
  for (int r : ex.map([&](int x) { return x + base; }, std::vector<int>{1, 2}))
    got.push_back(r);
  EXPECT_EQ(got, (std::vector<int>{41, 42}));
  // Something not derived from std::exception still fails the future.
  auto odd = ex.submit([] {
    throw 7;
    return 0;
  });
  EXPECT_THROW(odd.result(kLong), mp::Exception);
}

TEST(ThreadPoolExecutorTest, DefaultWorkers) {
  cf::ThreadPoolExecutor ex;
  EXPECT_EQ(ex.max_workers(), std::min(32, mp::cpu_count() + 4));
}

INSTANTIATE_TEST_SUITE_P(Methods, ExecutorTest,
                         ::testing::Values("fork", "spawn", "forkserver",
                                           "thread"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Methods, ProcessExecutorTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
