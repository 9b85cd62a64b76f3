#include "synchronize/internal/robust_mutex.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "synchronize/internal/test_util.h"

namespace multiprocessing::internal {
namespace {

using testing::ForkChild;
using testing::RunChild;
using testing::WaitChild;

struct Shared {
  RobustMutex mutex;
  std::atomic<uint32_t> holding;  // set by a child once it holds the mutex
  long counter;                   // only touched under the mutex
  long in_section;                // ditto: how many are inside at once
  long max_in_section;
};

class RobustMutexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EnableLightFences();
    void* p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    shared_ = new (p) Shared();
  }
  void TearDown() override { munmap(shared_, sizeof(Shared)); }

  // Spins (with a deadline) until `word` is nonzero.
  static bool AwaitNonzero(const std::atomic<uint32_t>& word,
                           double seconds = 10) {
    auto until = std::chrono::steady_clock::now() +
                 std::chrono::duration<double>(seconds);
    while (word.load() == 0) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::yield();
    }
    return true;
  }

  // A child that takes the mutex and keeps it until killed.
  pid_t StartHolder() {
    return ForkChild([this] {
      if (Lock(&shared_->mutex, std::nullopt) != LockResult::kOk) return 1;
      shared_->holding.store(1);
      pause();
      return 0;
    });
  }

  Shared* shared_ = nullptr;
};

TEST_F(RobustMutexTest, ExcludesAcrossProcessesAndThreads) {
  constexpr int kProcesses = 3;
  constexpr int kThreads = 2;
  constexpr int kRounds = 20000;
  auto work = [this] {
    for (int i = 0; i < kRounds; ++i) {
      if (Lock(&shared_->mutex, DeadlineAfter(30)) != LockResult::kOk) return;
      long inside = ++shared_->in_section;
      if (inside > shared_->max_in_section) shared_->max_in_section = inside;
      ++shared_->counter;
      --shared_->in_section;
      Unlock(&shared_->mutex);
    }
  };
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    children.push_back(ForkChild([&] {
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) threads.emplace_back(work);
      for (auto& t : threads) t.join();
      return 0;
    }));
  }
  for (pid_t pid : children) {
    int status = WaitChild(pid, 60);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  EXPECT_EQ(shared_->counter, long{kProcesses} * kThreads * kRounds);
  EXPECT_EQ(shared_->max_in_section, 1);
  EXPECT_EQ(shared_->mutex.owner.load(), 0u);
  EXPECT_EQ(shared_->mutex.sleepers.load(), 0u);
}

TEST_F(RobustMutexTest, HolderKilledIsTakenOverAndReported) {
  pid_t holder = StartHolder();
  ASSERT_TRUE(AwaitNonzero(shared_->holding));
  // Another process is already asleep on the mutex when the holder dies.
  pid_t waiter = ForkChild([this] {
    return Lock(&shared_->mutex, DeadlineAfter(20)) == LockResult::kOwnerDied
               ? 0
               : 2;
  });
  kill(holder, SIGKILL);
  int status = WaitChild(waiter, 30);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  WaitChild(holder, 5);
  // The waiter died holding it too (it exited without unlocking): the next
  // taker is told again, here with the holder already reaped.
  EXPECT_EQ(Lock(&shared_->mutex, DeadlineAfter(20)), LockResult::kOwnerDied);
  Unlock(&shared_->mutex);
  EXPECT_EQ(Lock(&shared_->mutex, DeadlineAfter(1)), LockResult::kOk);
  Unlock(&shared_->mutex);
}

TEST_F(RobustMutexTest, TimesOutWhileALiveHolderKeepsIt) {
  pid_t holder = StartHolder();
  ASSERT_TRUE(AwaitNonzero(shared_->holding));
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Lock(&shared_->mutex, DeadlineAfter(0.3)), LockResult::kTimeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(290));
  EXPECT_FALSE(TryLock(&shared_->mutex));
  EXPECT_EQ(shared_->mutex.sleepers.load(), 0u);
  kill(holder, SIGKILL);
  WaitChild(holder, 5);
}

TEST_F(RobustMutexTest, SleeperIsWokenByUnlock) {
  ASSERT_EQ(Lock(&shared_->mutex, std::nullopt), LockResult::kOk);
  pid_t waiter = ForkChild([this] {
    if (Lock(&shared_->mutex, DeadlineAfter(20)) != LockResult::kOk) return 2;
    ++shared_->counter;
    Unlock(&shared_->mutex);
    return 0;
  });
  // Release only once the waiter has announced that it sleeps.
  ASSERT_TRUE(AwaitNonzero(shared_->mutex.sleepers));
  Unlock(&shared_->mutex);
  int status = WaitChild(waiter, 30);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(shared_->counter, 1);
}

TEST_F(RobustMutexTest, ThreadGoneTellsLiveFromDead) {
  EXPECT_FALSE(ThreadGone(Tid()));
  std::atomic<uint32_t> other{0};
  std::thread t([&] { other.store(Tid()); });
  t.join();
  EXPECT_NE(other.load(), Tid());
  EXPECT_TRUE(ThreadGone(other.load()));
  // A zombie (exited, not yet reaped) holds nothing either.
  pid_t child = ForkChild([] { return 0; });
  int status = 0;
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), nullptr, WEXITED | WNOWAIT),
            0);
  EXPECT_TRUE(ThreadGone(static_cast<uint32_t>(child)));
  waitpid(child, &status, 0);
  EXPECT_TRUE(ThreadGone(static_cast<uint32_t>(child)));
}

TEST_F(RobustMutexTest, ForkedChildHasItsOwnThreadId) {
  const uint32_t parent = Tid();
  EXPECT_EQ(RunChild([parent] { return Tid() != parent ? 0 : 1; }), 0);
}

}  // namespace
}  // namespace multiprocessing::internal
