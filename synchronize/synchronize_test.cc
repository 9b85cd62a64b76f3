// Semantics of the primitives within one process (threads).
#include "synchronize/synchronize.h"

#include <sys/mman.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "synchronize/internal/test_util.h"

namespace multiprocessing {
namespace {

using namespace std::chrono_literals;
using internal::SyncAccess;

std::string SemFile(const std::string& name) { return "sem." + name.substr(1); }

TEST(LockTest, AcquireReleaseAndRepr) {
  Lock lock;
  EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
  EXPECT_TRUE(lock.acquire());
  EXPECT_EQ(lock.repr(), "<Lock(owner=MainProcess)>");
  EXPECT_FALSE(lock.acquire(false));
  EXPECT_FALSE(lock.acquire(true, 10ms));
  EXPECT_FALSE(lock.acquire(true, -1s));  // negative: zero
  lock.release();
  EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
  EXPECT_THROW(lock.release(), ValueError);
  EXPECT_TRUE(lock.acquire(true, -1s));  // free: a zero timeout succeeds
  lock.release();
}

TEST(LockTest, LockableAndOtherThreadRelease) {
  Lock lock;
  {
    std::lock_guard<Lock> guard(lock);
    EXPECT_FALSE(lock.try_lock());
  }
  std::unique_lock<Lock> held(lock);
  std::string seen;
  std::thread t([&] {
    seen = lock.repr();
    lock.release();  // any thread may release a Lock
  });
  t.join();
  held.release();
  EXPECT_EQ(seen, "<Lock(owner=SomeOtherThread)>");
  EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
}

TEST(LockTest, CopiesShareOneLock) {
  Lock a;
  Lock b = a;
  EXPECT_TRUE(a == b);
  ASSERT_TRUE(a.acquire());
  EXPECT_FALSE(b.acquire(false));
  b.release();
  EXPECT_TRUE(a.acquire(false));
  a.release();
}

TEST(LockTest, NameIsUnlinkedWithLastHandle) {
  std::string name;
  {
    Lock lock;
    name = SyncAccess::Sem(lock)->name();
    EXPECT_EQ(name.rfind("/mp-", 0), 0u) << name;
    EXPECT_TRUE(testing::ShmExists(SemFile(name)));
  }
  EXPECT_FALSE(testing::ShmExists(SemFile(name)));
}

TEST(LockTest, ThreadsCount) {
  Lock lock;
  long counter = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 20000; ++j) {
        std::lock_guard<Lock> guard(lock);
        ++counter;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, 80000);
}

// Sleepers, short timeouts and try-locks mixed on one contended lock: no
// wake-up is lost (every long wait succeeds), exclusion holds, and the lock
// ends free.
TEST(LockTest, ContendedWithTimeoutsAndTryLocks) {
  for (bool recursive : {false, true}) {
    Lock lock;
    RLock rlock;
    auto acquire = [&](bool block, synchronize::Timeout timeout) {
      return recursive ? rlock.acquire(block, timeout)
                       : lock.acquire(block, timeout);
    };
    auto release = [&] { recursive ? rlock.release() : lock.release(); };
    long counter = 0;
    std::atomic<int> inside{0};
    std::atomic<int> long_wait_failures{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        for (int j = 0; j < 3000; ++j) {
          bool got;
          switch ((i + j) % 3) {
            case 0:
              got = acquire(true, 30s);
              if (!got) ++long_wait_failures;
              break;
            case 1:
              got = acquire(true, 20us);
              break;
            default:
              got = acquire(false, std::nullopt);
          }
          if (!got) continue;
          EXPECT_EQ(inside.fetch_add(1), 0);
          ++counter;
          inside.fetch_sub(1);
          release();
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(long_wait_failures.load(), 0);
    EXPECT_GE(counter, 4000);
    EXPECT_TRUE(acquire(false, std::nullopt));
    release();
    if (!recursive) EXPECT_THROW(lock.release(), ValueError);
  }
}

// Stays in a critical section a little, so that races show.
void Linger() {
  for (int i = 0; i < 20; ++i) __builtin_ia32_pause();
}

// A new Lock is biased to the thread that made it (see semlock.h). Another
// thread or process taking it for the first time races with the biased
// thread's own acquires; exclusion must hold through that revocation.
TEST(LockTest, ExclusionHoldsWhileTheBiasIsRevokedByAThread) {
  for (bool recursive : {false, true}) {
    for (int round = 0; round < 200; ++round) {
      Lock lock;
      RLock rlock;
      auto acquire = [&] {
        return recursive ? rlock.acquire(true, 20s) : lock.acquire(true, 20s);
      };
      auto release = [&] { recursive ? rlock.release() : lock.release(); };
      long counter = 0;
      std::atomic<int> inside{0};
      std::atomic<bool> go{false};
      auto work = [&] {
        for (int j = 0; j < 200; ++j) {
          ASSERT_TRUE(acquire());
          EXPECT_EQ(inside.fetch_add(1), 0);
          ++counter;
          Linger();
          inside.fetch_sub(1);
          release();
        }
      };
      std::thread other([&] {
        while (!go.load()) std::this_thread::yield();
        work();
      });
      go.store(true);
      work();
      other.join();
      ASSERT_EQ(counter, 400) << "round " << round;
    }
  }
}

TEST(LockTest, ExclusionHoldsWhileTheBiasIsRevokedByAProcess) {
  struct Shared {
    long counter;
    long inside;
    long overlaps;
    std::atomic<int> ready;
  };
  void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto* shared = static_cast<Shared*>(p);
  for (int round = 0; round < 60; ++round) {
    shared->counter = shared->inside = shared->overlaps = 0;
    shared->ready.store(0);
    Lock lock;
    auto work = [&] {
      for (int j = 0; j < 2000; ++j) {
        if (!lock.acquire(true, 20s)) {
          ++shared->overlaps;  // a lost release: count it, don't hang
          continue;
        }
        if (++shared->inside != 1) ++shared->overlaps;
        ++shared->counter;
        Linger();
        --shared->inside;
        lock.release();
      }
    };
    pid_t child = testing::ForkChild([&] {
      shared->ready.store(1);
      work();
      return 0;
    });
    // Start together, so that the child's first acquire meets the parent's.
    auto until = std::chrono::steady_clock::now() + 30s;
    while (shared->ready.load() == 0 &&
           std::chrono::steady_clock::now() < until) {
    }
    work();
    int status = testing::WaitChild(child, 30);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    ASSERT_EQ(shared->counter, 4000) << "round " << round;
    ASSERT_EQ(shared->overlaps, 0) << "round " << round;
  }
  munmap(p, sizeof(Shared));
}

TEST(LockTest, BiasedHoldReleasedElsewhereAndRevocationTimeouts) {
  Lock lock;
  ASSERT_TRUE(lock.acquire());  // through the bias
  std::thread t([&] {
    // Revoking waits for the biased holder, within the timeout only.
    EXPECT_FALSE(lock.acquire(true, 30ms));
    EXPECT_FALSE(lock.acquire(false));
    EXPECT_EQ(lock.repr(), "<Lock(owner=SomeOtherThread)>");
    lock.release();  // any thread may release a Lock
    EXPECT_EQ(lock.repr(), "<Lock(owner=None)>");
    EXPECT_TRUE(lock.acquire(false));
  });
  t.join();
  EXPECT_FALSE(lock.acquire(false));
  EXPECT_FALSE(lock.acquire(true, 10ms));
  lock.release();
  EXPECT_THROW(lock.release(), ValueError);
  EXPECT_TRUE(lock.acquire(false));
  lock.release();
}

// The biased thread gone while holding its Lock: like any dead holder, it
// leaves the Lock held; a release from anywhere repairs it.
TEST(LockTest, BiasedHolderGoneLeavesItHeldUntilReleased) {
  std::optional<Lock> lock;
  std::thread maker([&] {
    lock.emplace();  // biased to this thread
    ASSERT_TRUE(lock->acquire(false));
  });
  maker.join();
  EXPECT_FALSE(lock->acquire(true, 20ms));
  EXPECT_FALSE(lock->acquire(false));
  EXPECT_EQ(lock->repr(), "<Lock(owner=SomeOtherThread)>");
  lock->release();
  EXPECT_EQ(lock->repr(), "<Lock(owner=None)>");
  EXPECT_TRUE(lock->acquire(true, 1s));
  lock->release();
  EXPECT_THROW(lock->release(), ValueError);
}

TEST(RLockTest, RecursionOwnershipAndRepr) {
  RLock lock;
  EXPECT_EQ(lock.repr(), "<RLock(None, 0)>");
  EXPECT_THROW(lock.release(), AssertionError);
  ASSERT_TRUE(lock.acquire());
  ASSERT_TRUE(lock.acquire(false));
  EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 2)>");
  std::string seen;
  bool other_acquired = true;
  bool threw = false;
  std::thread t([&] {
    seen = lock.repr();
    other_acquired = lock.acquire(true, 20ms);
    try {
      lock.release();
    } catch (const AssertionError&) {
      threw = true;
    }
  });
  t.join();
  EXPECT_EQ(seen, "<RLock(SomeOtherThread, nonzero)>");
  EXPECT_FALSE(other_acquired);
  EXPECT_TRUE(threw);
  lock.release();
  EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 1)>");
  lock.release();
  EXPECT_EQ(lock.repr(), "<RLock(None, 0)>");
  EXPECT_THROW(lock.release(), AssertionError);
}

TEST(SemaphoreTest, CountsAndReprs) {
  Semaphore s(2);
  EXPECT_EQ(s.repr(), "<Semaphore(value=2)>");
  EXPECT_TRUE(s.acquire());
  EXPECT_TRUE(s.acquire());
  EXPECT_FALSE(s.acquire(false));
  EXPECT_FALSE(s.acquire(true, 5ms));
  EXPECT_EQ(s.get_value(), 0);
  s.release();
  s.release();
  s.release();  // unbounded
  EXPECT_EQ(s.repr(), "<Semaphore(value=3)>");
  EXPECT_THROW(Semaphore(-1), ValueError);

  BoundedSemaphore b(2);
  EXPECT_EQ(b.repr(), "<BoundedSemaphore(value=2, maxvalue=2)>");
  EXPECT_THROW(b.release(), ValueError);
  ASSERT_TRUE(b.acquire());
  EXPECT_EQ(b.repr(), "<BoundedSemaphore(value=1, maxvalue=2)>");
  b.release();
  EXPECT_THROW(b.release(), ValueError);
}

TEST(ConditionTest, ReprsAndMisuse) {
  Condition c;
  EXPECT_EQ(c.repr(), "<Condition(<RLock(None, 0)>, 0)>");
  Condition d{Lock()};
  EXPECT_EQ(d.repr(), "<Condition(<Lock(owner=None)>, 0)>");
  EXPECT_THROW(c.wait(), AssertionError);
  EXPECT_THROW(c.notify(), AssertionError);
  EXPECT_THROW(c.notify_all(), AssertionError);
  std::lock_guard<Condition> guard(c);
  c.notify();  // nobody waits: a no-op
  c.notify_all();
  EXPECT_EQ(c.repr(), "<Condition(<RLock(MainProcess, 1)>, 0)>");
}

TEST(ConditionTest, WaitTimesOutAndKeepsRecursion) {
  RLock lock;
  Condition c(lock);
  lock.acquire();
  lock.acquire();
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.wait(50ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 45ms);
  EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 2)>");
  EXPECT_FALSE(c.wait(-1s));
  EXPECT_FALSE(c.wait_for([] { return false; }, 20ms));
  EXPECT_TRUE(c.wait_for([] { return true; }, 0s));
  lock.release();
  lock.release();
}

TEST(ConditionTest, NotifyWakesWaitingThreads) {
  Condition c;
  Semaphore ready(0), done(0);
  int woken = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      std::lock_guard<Condition> guard(c);
      ready.release();
      if (c.wait(30s)) ++woken;
      done.release();
    });
  }
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ready.acquire(true, 30s));
  {
    std::lock_guard<Condition> guard(c);  // every thread now waits
    EXPECT_EQ(c.repr(), "<Condition(<RLock(MainProcess, 1)>, 4)>");
    c.notify(1);
  }
  ASSERT_TRUE(done.acquire(true, 30s));
  EXPECT_FALSE(done.acquire(true, 50ms));  // exactly one woke
  {
    std::lock_guard<Condition> guard(c);
    c.notify(2);
  }
  ASSERT_TRUE(done.acquire(true, 30s));
  ASSERT_TRUE(done.acquire(true, 30s));
  {
    std::lock_guard<Condition> guard(c);
    c.notify_all();
  }
  ASSERT_TRUE(done.acquire(true, 30s));
  for (auto& t : threads) t.join();
  EXPECT_EQ(woken, 4);
}

TEST(EventTest, SetClearWait) {
  Event e;
  EXPECT_FALSE(e.is_set());
  EXPECT_NE(e.repr().find(" unset>"), std::string::npos) << e.repr();
  EXPECT_FALSE(e.wait(20ms));
  EXPECT_FALSE(e.wait(-1s));
  std::thread t([&] { e.set(); });
  EXPECT_TRUE(e.wait(30s));
  t.join();
  EXPECT_TRUE(e.is_set());
  EXPECT_EQ(e.repr().rfind("<Event at 0x", 0), 0u) << e.repr();
  EXPECT_NE(e.repr().find(" set>"), std::string::npos);
  e.clear();
  EXPECT_FALSE(e.is_set());
}

int g_actions = 0;
void CountAction() { ++g_actions; }

TEST(BarrierTest, ThreadsPassTogether) {
  Barrier b(3, &CountAction);
  EXPECT_EQ(b.parties(), 3);
  EXPECT_EQ(b.repr().find(": waiters=0/3>") != std::string::npos, true)
      << b.repr();
  std::atomic<int> index_sum{0};
  std::vector<std::thread> threads;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&] { index_sum += b.wait(30s); });
    }
    for (auto& t : threads) t.join();
    threads.clear();
  }
  EXPECT_EQ(index_sum, 6);
  EXPECT_EQ(g_actions, 2);
  EXPECT_FALSE(b.broken());
}

TEST(BarrierTest, TimeoutBreaksAndResetRepairs) {
  Barrier b(2, nullptr, 20ms);
  EXPECT_THROW(b.wait(), BrokenBarrierError);
  EXPECT_TRUE(b.broken());
  EXPECT_NE(b.repr().find(": broken>"), std::string::npos);
  EXPECT_THROW(b.wait(1s), BrokenBarrierError);
  b.reset();
  EXPECT_FALSE(b.broken());
  int other = -1;
  std::thread t([&] { other = b.wait(30s); });
  int mine = b.wait(30s);
  t.join();
  EXPECT_EQ(mine + other, 1);
  EXPECT_THROW(Barrier(0), ValueError);
}

TEST(BarrierTest, AbortWakesWaiters) {
  Barrier b(3);
  std::atomic<int> broken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      try {
        b.wait(30s);
      } catch (const BrokenBarrierError&) {
        ++broken;
      }
    });
  }
  auto give_up = std::chrono::steady_clock::now() + 30s;
  while (b.n_waiting() < 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  b.abort();
  for (auto& t : threads) t.join();
  EXPECT_EQ(broken, 2);
  EXPECT_TRUE(b.broken());
}

}  // namespace
}  // namespace multiprocessing
