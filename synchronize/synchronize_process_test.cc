// The primitives between processes, under each start method: handles are
// Process arguments (pickled by name and descriptor for spawn and
// forkserver, inherited under fork).
#include <signal.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"
#include "synchronize/internal/heap.h"
#include "synchronize/internal/test_util.h"
#include "synchronize/synchronize.h"

namespace multiprocessing::sync_test {

using namespace std::chrono_literals;

// ---- Child targets (registered: spawn and forkserver children find them by
// name).

void HoldLock(Lock lock, Event held, Event never) {
  lock.acquire();
  held.set();
  never.wait(60s);
}
MP_REGISTER_FUNCTION(HoldLock);

void HoldRLockTwice(RLock lock, Event held, Event done) {
  lock.acquire();
  lock.acquire();
  held.set();
  done.wait(60s);
  lock.release();
  lock.release();
}
MP_REGISTER_FUNCTION(HoldRLockTwice);

void CountWithSemaphores(Lock lock, Semaphore total, int n) {
  // Increments a counter kept in a semaphore's value, one step at a time
  // under the lock.
  for (int i = 0; i < n; ++i) {
    std::lock_guard<Lock> guard(lock);
    total.release();
  }
}
MP_REGISTER_FUNCTION(CountWithSemaphores);

void UseSemaphores(Semaphore s, BoundedSemaphore b) {
  for (int i = 0; i < 3; ++i) s.release();
  b.acquire();
}
MP_REGISTER_FUNCTION(UseSemaphores);

void PingPong(Condition c, int rounds) {
  std::lock_guard<Condition> guard(c);
  c.notify();
  for (int i = 0; i < rounds; ++i) {
    if (!c.wait(30s)) multiprocessing::exit(2);
    c.notify();
  }
}
MP_REGISTER_FUNCTION(PingPong);

void WaitNotified(Condition c, Semaphore ready, Semaphore woke) {
  std::lock_guard<Condition> guard(c);
  ready.release();
  if (!c.wait(60s)) multiprocessing::exit(3);
  woke.release();
}
MP_REGISTER_FUNCTION(WaitNotified);

void WaitAlone(Condition c, Semaphore timed_out) {
  std::lock_guard<Condition> guard(c);
  if (!c.wait(50ms)) timed_out.release();
}
MP_REGISTER_FUNCTION(WaitAlone);

void WaitEvent(Event e, double seconds, bool expect) {
  if (e.wait(std::chrono::duration<double>(seconds)) != expect) {
    multiprocessing::exit(4);
  }
}
MP_REGISTER_FUNCTION(WaitEvent);

void BarrierParty(Barrier b, Semaphore seen, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    int index = b.wait();
    for (int i = 0; i <= index; ++i) seen.release();  // sum of index+1
  }
}
MP_REGISTER_FUNCTION(BarrierParty);

void BarrierQuitter(Barrier b) {
  try {
    b.wait(50ms);
  } catch (const BrokenBarrierError&) {
    multiprocessing::exit(7);
  }
}
MP_REGISTER_FUNCTION(BarrierQuitter);

// The action of BarrierWithAction: a registered function with a result
// (ignored), releasing the semaphore that the process running it was given.
Semaphore* g_action_semaphore = nullptr;
int ReleaseActionSemaphore() {
  g_action_semaphore->release();
  return 1;
}
MP_REGISTER_FUNCTION(ReleaseActionSemaphore);

void BarrierWithAction(Barrier b, Semaphore actions, int rounds) {
  g_action_semaphore = &actions;
  for (int round = 0; round < rounds; ++round) b.wait();
}
MP_REGISTER_FUNCTION(BarrierWithAction);

std::string LockReprInChild(Lock lock) {
  std::lock_guard<Lock> guard(lock);
  return lock.repr();
}

void ReportRepr(Lock lock, Event ok) {
  if (LockReprInChild(lock) == "<Lock(owner=Worker)>") ok.set();
}
MP_REGISTER_FUNCTION(ReportRepr);

class SynchronizeProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  const Context& ctx() const { return get_context(GetParam()); }

  template <class F, class... A>
  Process Start(F f, A&&... args) {
    Process p = ctx().Process(f, std::forward<A>(args)...);
    p.start();
    return p;
  }
  template <class F, class... A>
  int Run(F f, A&&... args) {
    Process p = Start(f, std::forward<A>(args)...);
    return Join(p);
  }
  static int Join(Process& p) {
    p.join(60s);
    if (!p.exitcode()) {
      p.kill();
      p.join(10s);
      return -1000;
    }
    return *p.exitcode();
  }
};

TEST_P(SynchronizeProcessTest, ProcessesCountUnderLock) {
  Lock lock;
  Semaphore total(0);
  constexpr int kProcesses = 4;
  constexpr int kIncrements = 500;
  std::vector<Process> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(Start(&CountWithSemaphores, lock, total, kIncrements));
  }
  for (auto& p : children) ASSERT_EQ(Join(p), 0);
  EXPECT_EQ(total.get_value(), kProcesses * kIncrements);
}

TEST_P(SynchronizeProcessTest, LockHeldByKilledProcessStaysHeld) {
  Lock lock;
  Event held, never;
  Process p = Start(&HoldLock, lock, held, never);
  ASSERT_TRUE(held.wait(30s));
  EXPECT_EQ(lock.repr(), "<Lock(owner=SomeOtherProcess)>");
  EXPECT_FALSE(lock.acquire(true, 100ms));
  p.kill();
  p.join(30s);
  ASSERT_EQ(p.exitcode(), -SIGKILL);
  // The dead process's lock is still held, as in CPython: waiters with a
  // timeout give up; nothing else is affected.
  EXPECT_FALSE(lock.acquire(true, 50ms));
  Lock other;
  EXPECT_TRUE(other.acquire(true, 1s));
  other.release();
  // Any process may release a Lock, which repairs it.
  lock.release();
  EXPECT_TRUE(lock.acquire(true, 1s));
  lock.release();
}

TEST_P(SynchronizeProcessTest, RLockOwnedByAnotherProcess) {
  RLock lock;
  Event held, done;
  Process p = Start(&HoldRLockTwice, lock, held, done);
  ASSERT_TRUE(held.wait(30s));
  EXPECT_EQ(lock.repr(), "<RLock(SomeOtherProcess, nonzero)>");
  EXPECT_THROW(lock.release(), AssertionError);
  EXPECT_FALSE(lock.acquire(false));
  done.set();
  EXPECT_TRUE(lock.acquire(true, 30s));
  EXPECT_EQ(lock.repr(), "<RLock(MainProcess, 1)>");
  lock.release();
  EXPECT_EQ(Join(p), 0);
}

TEST_P(SynchronizeProcessTest, ChildNamesItselfInRepr) {
  Lock lock;
  Event ok;
  Process p =
      ctx().Process(ProcessOptions{.name = "Worker"}, &ReportRepr, lock, ok);
  p.start();
  ASSERT_EQ(Join(p), 0);
  EXPECT_TRUE(ok.is_set());
}

TEST_P(SynchronizeProcessTest, SemaphoresAcrossProcesses) {
  Semaphore s(0);
  BoundedSemaphore b(1);
  ASSERT_EQ(Run(&UseSemaphores, s, b), 0);
  EXPECT_EQ(s.get_value(), 3);
  EXPECT_FALSE(b.acquire(false));
  b.release();
  EXPECT_THROW(b.release(), ValueError);
}

TEST_P(SynchronizeProcessTest, ConditionPingPong) {
  Condition c;
  constexpr int kRounds = 500;
  Process p;
  {
    std::lock_guard<Condition> guard(c);
    p = Start(&PingPong, c, kRounds);
    ASSERT_TRUE(c.wait(30s));
    for (int i = 0; i < kRounds; ++i) {
      c.notify();
      ASSERT_TRUE(c.wait(30s)) << "round " << i;
    }
  }
  EXPECT_EQ(Join(p), 0);
}

TEST_P(SynchronizeProcessTest, ConditionNotifyCountsAndTimeouts) {
  Condition c{Lock()};
  Semaphore ready(0), woke(0), timed_out(0);
  ASSERT_EQ(Run(&WaitAlone, c, timed_out), 0);
  EXPECT_TRUE(timed_out.acquire(false));
  std::vector<Process> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(Start(&WaitNotified, c, ready, woke));
  }
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
  for (auto& p : children) EXPECT_EQ(Join(p), 0);
}

TEST_P(SynchronizeProcessTest, EventAcrossProcesses) {
  Event e;
  std::vector<Process> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(Start(&WaitEvent, e, 60.0, true));
  }
  EXPECT_EQ(Run(&WaitEvent, e, 0.02, false), 0);
  e.set();
  for (auto& p : children) EXPECT_EQ(Join(p), 0);
  EXPECT_TRUE(e.is_set());
}

TEST_P(SynchronizeProcessTest, BarrierAcrossProcesses) {
  Barrier b(4, nullptr, 60s);
  Semaphore seen(0);
  constexpr int kRounds = 3;
  std::vector<Process> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(Start(&BarrierParty, b, seen, kRounds));
  }
  int mine = 0;
  for (int round = 0; round < kRounds; ++round) mine += b.wait() + 1;
  for (auto& p : children) EXPECT_EQ(Join(p), 0);
  // Each round hands out indices 0..3 once: (1+2+3+4) per round in total.
  EXPECT_EQ(seen.get_value() + mine, kRounds * 10);

  // A party that gives up breaks the barrier for the others.
  Barrier lonely(2);
  EXPECT_EQ(Run(&BarrierQuitter, lonely), 7);
  EXPECT_TRUE(lonely.broken());
  EXPECT_THROW(lonely.wait(1s), BrokenBarrierError);
}

TEST_P(SynchronizeProcessTest, BarrierActionIsARegisteredFunction) {
  Semaphore actions(0);
  g_action_semaphore = &actions;
  Barrier b(3, &ReleaseActionSemaphore, 60s);
  constexpr int kRounds = 4;
  std::vector<Process> children;
  for (int i = 0; i < 2; ++i) {
    children.push_back(Start(&BarrierWithAction, b, actions, kRounds));
  }
  for (int round = 0; round < kRounds; ++round) b.wait();
  for (auto& p : children) EXPECT_EQ(Join(p), 0);
  // Exactly one party (whichever arrived last) ran the action each round.
  EXPECT_EQ(actions.get_value(), kRounds);
  g_action_semaphore = nullptr;
}

TEST_P(SynchronizeProcessTest, BarrierActionAnyCallableUnderForkOnly) {
  Semaphore actions(0);
  Barrier b(
      2, [actions]() mutable { actions.release(); }, 60s);
  if (GetParam() != "fork") {
    // A closure has no name to travel by: refused when the child is
    // started, before anything runs.
    Process p = ctx().Process(&BarrierWithAction, b, actions, 1);
    EXPECT_THROW(p.start(), PicklingError);
    return;
  }
  constexpr int kRounds = 3;
  Process child = Start(&BarrierWithAction, b, actions, kRounds);
  for (int round = 0; round < kRounds; ++round) b.wait();
  EXPECT_EQ(Join(child), 0);
  EXPECT_EQ(actions.get_value(), kRounds);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SynchronizeProcessTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

// ---- Fork-only: closures and a Barrier action touching inherited memory.

long* g_action_counter = nullptr;
void CountInShared() { ++*g_action_counter; }

TEST(SynchronizeForkTest, BarrierActionRunsOncePerRound) {
  auto block = internal::SharedBlock::Allocate(64);
  long* shared = static_cast<long*>(block->data());
  g_action_counter = shared;
  Barrier b(3, &CountInShared, 60s);
  std::vector<Process> children;
  for (int i = 0; i < 2; ++i) {
    children.emplace_back([b]() mutable {
      for (int round = 0; round < 3; ++round) b.wait();
    });
    children.back().start();
  }
  for (int round = 0; round < 3; ++round) b.wait();
  for (auto& p : children) {
    p.join(30s);
    EXPECT_EQ(p.exitcode(), 0);
  }
  EXPECT_EQ(*shared, 3);
}

TEST(SynchronizeForkTest, UnregisteredBarrierActionCannotBeSpawned) {
  Barrier b(2, &CountInShared);
  Process p = get_context("spawn").Process(&BarrierQuitter, b);
  EXPECT_THROW(p.start(), PicklingError);
}

}  // namespace multiprocessing::sync_test

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
