// Future, wait() and as_completed() on their own, completed by hand from
// threads (the executors are tested in futures_test.cc).
#include "futures/future.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace cf = multiprocessing::futures;
using namespace std::chrono_literals;

namespace {

std::string NameOf(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const multiprocessing::Exception& x) {
    return x.python_name();
  } catch (...) {
    return "?";
  }
}

TEST(FutureTest, ResultAndStates) {
  cf::Future<int> f;
  EXPECT_FALSE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_THROW(f.result(10ms), cf::TimeoutError);
  EXPECT_THROW(f.exception(0s), cf::TimeoutError);
  EXPECT_TRUE(f.set_running_or_notify_cancel());
  EXPECT_TRUE(f.running());
  EXPECT_FALSE(f.cancel());
  f.set_result(42);
  EXPECT_TRUE(f.done());
  EXPECT_FALSE(f.running());
  EXPECT_EQ(f.result(0s), 42);
  EXPECT_EQ(f.exception(0s), nullptr);
  EXPECT_THROW(f.set_result(1), cf::InvalidStateError);
  EXPECT_THROW(f.set_running_or_notify_cancel(), cf::InvalidStateError);
}

TEST(FutureTest, ExceptionKeepsItsClass) {
  cf::Future<int> f;
  f.set_exception(std::make_exception_ptr(multiprocessing::ValueError("bad")));
  EXPECT_THROW(f.result(1s), multiprocessing::ValueError);
  EXPECT_EQ(NameOf(f.exception(1s)), "ValueError");
}

TEST(FutureTest, CancelPending) {
  cf::Future<int> f;
  std::vector<bool> seen;
  f.add_done_callback(
      [&](const cf::Future<int>& g) { seen.push_back(g.cancelled()); });
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancel());  // again: still true
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.done());
  EXPECT_EQ(seen, std::vector<bool>{true});
  EXPECT_THROW(f.result(1s), cf::CancelledError);
  EXPECT_THROW(f.exception(1s), cf::CancelledError);
  EXPECT_FALSE(f.set_running_or_notify_cancel());
  EXPECT_THROW(f.set_result(1), cf::InvalidStateError);
}

TEST(FutureTest, CallbacksRunOnceInOrderAndAtOnceWhenDone) {
  cf::Future<std::string> f;
  std::vector<std::string> calls;
  f.add_done_callback([&](const cf::Future<std::string>& g) {
    calls.push_back("a:" + g.result(0s));
  });
  f.add_done_callback([&](const cf::Future<std::string>&) {
    throw multiprocessing::ValueError("ignored, printed");
  });
  f.add_done_callback(
      [&](const cf::Future<std::string>&) { calls.push_back("c"); });
  f.set_result("x");
  f.add_done_callback([&](const cf::Future<std::string>& g) {
    calls.push_back("late:" + g.result(0s));
  });
  EXPECT_EQ(calls, (std::vector<std::string>{"a:x", "c", "late:x"}));
}

TEST(FutureTest, ResultWakesWhenSetFromAnotherThread) {
  cf::Future<int> f;
  std::thread t([f]() mutable { f.set_result(7); });
  EXPECT_EQ(f.result(30s), 7);
  t.join();
}

TEST(WaitTest, Modes) {
  std::vector<cf::Future<int>> fs(3);
  auto r = cf::wait(fs, 10ms, cf::FIRST_COMPLETED);
  EXPECT_TRUE(r.done.empty());
  EXPECT_EQ(r.not_done.size(), 3u);

  fs[1].set_result(1);
  r = cf::wait(fs, 10s, cf::FIRST_COMPLETED);
  ASSERT_EQ(r.done.size(), 1u);
  EXPECT_TRUE(r.done[0] == fs[1]);

  // FIRST_EXCEPTION: a result alone does not end it; an exception does.
  r = cf::wait(fs, 10ms, cf::FIRST_EXCEPTION);
  EXPECT_EQ(r.done.size(), 1u);
  std::thread t([f = fs[2]]() mutable {
    f.set_exception(std::make_exception_ptr(multiprocessing::KeyError("k")));
  });
  r = cf::wait(fs, 30s, cf::FIRST_EXCEPTION);
  t.join();
  EXPECT_EQ(r.done.size(), 2u);
  EXPECT_EQ(r.not_done.size(), 1u);

  r = cf::wait(fs, 10ms, cf::ALL_COMPLETED);
  EXPECT_EQ(r.not_done.size(), 1u);
  fs[0].cancel();  // cancelled counts as done
  r = cf::wait(fs, 10s, cf::ALL_COMPLETED);
  EXPECT_EQ(r.done.size(), 3u);
  EXPECT_TRUE(r.not_done.empty());
}

TEST(WaitTest, DuplicatesOnceAndInitializerList) {
  cf::Future<int> a, b;
  a.set_result(1);
  auto r = cf::wait({a, a, b}, 0s);
  EXPECT_EQ(r.done.size(), 1u);
  EXPECT_EQ(r.not_done.size(), 1u);
}

TEST(AsCompletedTest, DoneFirstThenInCompletionOrder) {
  std::vector<cf::Future<int>> fs(4);
  fs[2].set_result(2);
  auto it = cf::as_completed(fs, 30s);
  std::optional<cf::Future<int>> first = it.next();
  ASSERT_TRUE(first);
  EXPECT_TRUE(*first == fs[2]);
  // The rest complete in the order 3, 0, 1, each after the previous was
  // yielded.
  for (int i : {3, 0, 1}) {
    std::thread t([f = fs[i], i]() mutable { f.set_result(i); });
    std::optional<cf::Future<int>> next = it.next();
    t.join();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->result(0s), i);
  }
  EXPECT_FALSE(it.next());
}

TEST(AsCompletedTest, TimeoutCountsUnfinished) {
  std::vector<cf::Future<int>> fs(3);
  fs[0].set_result(0);
  auto it = cf::as_completed(fs, 50ms);
  EXPECT_TRUE(it.next());
  try {
    it.next();
    FAIL() << "no TimeoutError";
  } catch (const cf::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("2 (of 3) futures unfinished"),
              std::string::npos)
        << e.what();
  }
}

TEST(AsCompletedTest, RangeFor) {
  std::vector<cf::Future<int>> fs(3);
  for (int i = 0; i < 3; ++i) fs[i].set_result(i);
  int sum = 0;
  for (const cf::Future<int>& f : cf::as_completed(fs, 1s)) sum += f.result();
  EXPECT_EQ(sum, 3);
}

}  // namespace
