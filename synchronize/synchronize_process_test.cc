// The primitives between processes.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "synchronize/internal/heap.h"
#include "synchronize/internal/test_util.h"
#include "synchronize/synchronize.h"

namespace multiprocessing {
namespace {

using namespace std::chrono_literals;
using internal::SharedBlock;

// Starts `p`, joins it with a deadline and returns its exit code.
int RunToEnd(Process p) {
  p.start();
  p.join(60s);
  if (!p.exitcode()) {
    p.kill();
    p.join(10s);
    return -1000;
  }
  return *p.exitcode();
}

TEST(SynchronizeProcessTest, ProcessesIncrementUnderLock) {
  Lock lock;
  auto block = SharedBlock::Allocate(sizeof(long));
  long* counter = static_cast<long*>(block->data());
  constexpr int kProcesses = 4;
  constexpr int kIncrements = 5000;
  std::vector<Process> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.emplace_back([lock, counter]() mutable {
      for (int j = 0; j < kIncrements; ++j) {
        std::lock_guard<Lock> guard(lock);
        long v = *static_cast<volatile long*>(counter);
        *static_cast<volatile long*>(counter) = v + 1;
      }
    });
    children.back().start();
  }
  for (auto& p : children) {
    p.join(60s);
    ASSERT_EQ(p.exitcode(), 0);
  }
  EXPECT_EQ(*counter, kProcesses * kIncrements);
}

TEST(SynchronizeProcessTest, LockHeldByKilledProcessStaysHeld) {
  Lock lock;
  Event held;
  Event never;
  Process p([lock, held, never]() mutable {
    lock.acquire();
    held.set();
    never.wait(60s);
  });
  p.start();
  ASSERT_TRUE(held.wait(30s));
  EXPECT_EQ(lock.repr(), "<Lock(owner=SomeOtherProcess)>");
  EXPECT_FALSE(lock.acquire(true, 100ms));
  p.kill();
  p.join(30s);
  ASSERT_EQ(p.exitcode(), -SIGKILL);
  // The dead process's lock is still held, as in CPython: waiters with a
  // timeout give up, nothing else is affected.
  EXPECT_FALSE(lock.acquire(true, 50ms));
  Lock other;
  EXPECT_TRUE(other.acquire(true, 1s));
  other.release();
  // Any process may release a Lock, which repairs it.
  lock.release();
  EXPECT_TRUE(lock.acquire(true, 1s));
  lock.release();
}

TEST(SynchronizeProcessTest, RLockOwnedByAnotherProcess) {
  RLock lock;
  Event held, done;
  Process p([lock, held, done]() mutable {
    lock.acquire();
    lock.acquire();
    held.set();
    done.wait(60s);
    lock.release();
    lock.release();
  });
  p.start();
  ASSERT_TRUE(held.wait(30s));
  EXPECT_EQ(lock.repr(), "<RLock(SomeOtherProcess, nonzero)>");
  EXPECT_THROW(lock.release(), AssertionError);
  EXPECT_FALSE(lock.acquire(false));
  done.set();
  EXPECT_TRUE(lock.acquire(true, 30s));
  EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 1)>");
  lock.release();
  p.join(30s);
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(SynchronizeProcessTest, ChildNamesItselfInRepr) {
  Lock lock;
  auto block = SharedBlock::Allocate(128);
  char* out = static_cast<char*>(block->data());
  Process p(ProcessOptions{.name = "Worker"}, [lock, out]() mutable {
    lock.acquire();
    std::string r = lock.repr();
    lock.release();
    std::strncpy(out, r.c_str(), 127);
  });
  ASSERT_EQ(RunToEnd(p), 0);
  EXPECT_STREQ(out, "<Lock(owner=Worker)>");
}

TEST(SynchronizeProcessTest, SemaphoreAcrossProcesses) {
  Semaphore s(0);
  BoundedSemaphore b(1);
  Process p([s, b]() mutable {
    for (int i = 0; i < 3; ++i) s.release();
    b.acquire();
  });
  ASSERT_EQ(RunToEnd(p), 0);
  EXPECT_EQ(s.get_value(), 3);
  EXPECT_FALSE(b.acquire(false));
  b.release();
  EXPECT_THROW(b.release(), ValueError);
}

TEST(SynchronizeProcessTest, ConditionPingPong) {
  Condition c;
  constexpr int kRounds = 2000;
  Process p([c]() mutable {
    std::lock_guard<Condition> guard(c);
    c.notify();
    for (int i = 0; i < kRounds; ++i) {
      if (!c.wait(30s)) multiprocessing::exit(2);
      c.notify();
    }
  });
  {
    std::lock_guard<Condition> guard(c);
    p.start();
    ASSERT_TRUE(c.wait(30s));
    for (int i = 0; i < kRounds; ++i) {
      c.notify();
      ASSERT_TRUE(c.wait(30s)) << "round " << i;
    }
  }
  p.join(30s);
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(SynchronizeProcessTest, ConditionNotifyCountsAndTimeouts) {
  Condition c{Lock()};
  Semaphore ready(0), woke(0), timed_out(0);
  std::vector<Process> children;
  for (int i = 0; i < 3; ++i) {
    children.emplace_back([c, ready, woke]() mutable {
      std::lock_guard<Condition> guard(c);
      ready.release();
      if (!c.wait(60s)) multiprocessing::exit(3);
      woke.release();
    });
    children.back().start();
  }
  Process lonely([c, timed_out]() mutable {
    std::lock_guard<Condition> guard(c);
    if (!c.wait(50ms)) timed_out.release();
  });
  lonely.start();
  ASSERT_TRUE(timed_out.acquire(true, 30s));
  lonely.join(30s);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ready.acquire(true, 30s));
  {
    std::lock_guard<Condition> guard(c);
    EXPECT_EQ(c.repr(), "<Condition(<Lock(owner=MainProcess)>, 3)>");
    c.notify(1);
  }
  ASSERT_TRUE(woke.acquire(true, 30s));
  EXPECT_FALSE(woke.acquire(true, 50ms));
  {
    std::lock_guard<Condition> guard(c);
    c.notify_all();
  }
  ASSERT_TRUE(woke.acquire(true, 30s));
  ASSERT_TRUE(woke.acquire(true, 30s));
  for (auto& p : children) {
    p.join(30s);
    EXPECT_EQ(p.exitcode(), 0);
  }
}

TEST(SynchronizeProcessTest, EventAcrossProcesses) {
  Event e;
  std::vector<Process> children;
  for (int i = 0; i < 3; ++i) {
    children.emplace_back([e]() mutable {
      if (!e.wait(60s)) multiprocessing::exit(4);
    });
    children.back().start();
  }
  Process impatient([e]() mutable {
    if (e.wait(20ms)) multiprocessing::exit(5);
  });
  EXPECT_EQ(RunToEnd(impatient), 0);
  e.set();
  for (auto& p : children) {
    p.join(30s);
    EXPECT_EQ(p.exitcode(), 0);
  }
  EXPECT_TRUE(e.is_set());
}

long* g_action_counter = nullptr;
void CountInShared() { ++*g_action_counter; }

TEST(SynchronizeProcessTest, BarrierAcrossProcesses) {
  auto block = SharedBlock::Allocate(64);
  long* shared = static_cast<long*>(block->data());
  g_action_counter = shared;
  Barrier b(4, &CountInShared, 60s);
  std::vector<Process> children;
  for (int i = 0; i < 3; ++i) {
    children.emplace_back([b, shared]() mutable {
      for (int round = 0; round < 3; ++round) {
        int index = b.wait();
        __atomic_fetch_or(&shared[1 + round], 1L << index, __ATOMIC_SEQ_CST);
      }
    });
    children.back().start();
  }
  for (int round = 0; round < 3; ++round) {
    int index = b.wait();
    __atomic_fetch_or(&shared[1 + round], 1L << index, __ATOMIC_SEQ_CST);
  }
  for (auto& p : children) {
    p.join(30s);
    EXPECT_EQ(p.exitcode(), 0);
  }
  EXPECT_EQ(shared[0], 3);  // the action ran once per round
  for (int round = 0; round < 3; ++round) EXPECT_EQ(shared[1 + round], 0xF);

  // A party that gives up breaks the barrier for the others.
  Barrier lonely(2);
  Process q([lonely]() mutable {
    try {
      lonely.wait(50ms);
    } catch (const BrokenBarrierError&) {
      multiprocessing::exit(7);
    }
  });
  EXPECT_EQ(RunToEnd(q), 7);
  EXPECT_TRUE(lonely.broken());
  EXPECT_THROW(lonely.wait(1s), BrokenBarrierError);
}

}  // namespace
}  // namespace multiprocessing

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
