// Fault injection: pool workers killed with SIGKILL at random moments while
// map() and imap_unordered() run, under each start method. Every item must
// end as exactly one result or one error (none twice, none missing), and the
// pool must keep working afterwards. Seeds are fixed and printed (on failure
// by SCOPED_TRACE, always in the summary line), and each scenario stops
// after a few kills or a few seconds, whichever comes first.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "pool/internal/watchdog.h"
#include "pool/pool.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using namespace std::chrono_literals;

namespace pool_chaos {

// The task: records the worker's pid the first time it runs there (so that
// the test kills only workers that run tasks, never one still starting),
// takes 0 to 450 us, and returns 2x + 1.
int work(int x) {
  static bool recorded = false;
  if (!recorded) {
    recorded = true;
    int fd =
        open(std::getenv("POOL_CHAOS_PIDS"), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
      std::string line = std::to_string(getpid()) + "\n";
      [[maybe_unused]] ssize_t n = write(fd, line.data(), line.size());
      close(fd);
    }
  }
  std::this_thread::sleep_for(std::chrono::microseconds((x % 10) * 50));
  return 2 * x + 1;
}

}  // namespace pool_chaos

MP_REGISTER_FUNCTION(pool_chaos::work);

namespace {

constexpr auto kLong = 60s;
constexpr int kMaxKills = 6;
constexpr auto kBudget = 4s;  // per scenario, beyond which no new round starts

using multiprocessing::pool::internal::Watchdog;

std::string PidFile() { return std::getenv("POOL_CHAOS_PIDS"); }

// Whether `pid` runs this program (so a recycled pid is never killed).
bool IsOurProgram(int pid) {
  char self[4096], other[4096];
  ssize_t a = readlink("/proc/self/exe", self, sizeof self);
  ssize_t b = readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), other,
                       sizeof other);
  return a > 0 && a == b && std::equal(self, self + a, other);
}

// Kills a random worker that has run a task, every 10 to 80 ms, at most
// `max_kills` times.
class Killer {
 public:
  Killer(uint32_t seed, int max_kills) : rng_(seed), max_kills_(max_kills) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Killer() { Stop(); }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  int kills() const { return kills_.load(); }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (kills_.load() < max_kills_) {
      auto pause = std::chrono::milliseconds(10 + rng_() % 71);
      // The pause is when the fault happens, not a synchronisation.
      if (cv_.wait_for(lock, pause, [&] { return stop_; })) return;
      std::vector<int> candidates;
      std::ifstream in(PidFile());
      for (int pid; in >> pid;) {
        if (killed_.count(pid) == 0 && kill(pid, 0) == 0 && IsOurProgram(pid))
          candidates.push_back(pid);
      }
      if (candidates.empty()) continue;
      int pid = candidates[rng_() % candidates.size()];
      killed_.insert(pid);
      if (kill(pid, SIGKILL) == 0) ++kills_;
    }
  }

  std::mt19937 rng_;
  const int max_kills_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::set<int> killed_;
  std::atomic<int> kills_{0};
  std::thread thread_;
};

// What a killed worker's task must fail with.
void ExpectClearDeath(const mp::ProcessError& e) {
  std::string what = e.what();
  EXPECT_TRUE(what.find("killed by SIGKILL") != std::string::npos)
      << "unexpected error: " << what;
}

std::vector<int> Items(int first, int n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

class PoolChaosTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    close(open(PidFile().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
               0600));
  }
  uint32_t Seed(uint32_t base) const {
    const std::string& m = GetParam();
    return base + (m == "fork" ? 0 : m == "spawn" ? 1 : 2);
  }
  mp::Pool MakePool() {
    return mp::Pool({.processes = 3, .context = &mp::get_context(GetParam())});
  }
  Watchdog watchdog_{std::chrono::seconds(120)};
};

// map(): each call returns every result in order, or raises the error of a
// killed worker's chunk; nothing in between.
TEST_P(PoolChaosTest, MapWhileWorkersAreKilled) {
  const uint32_t seed = Seed(16001);
  SCOPED_TRACE("seed " + std::to_string(seed) + ", start method " + GetParam());
  std::mt19937 rng(seed);
  mp::Pool pool = MakePool();
  size_t sent = 0, results = 0, errors = 0, maps_ok = 0, maps_failed = 0;
  Killer killer(seed, kMaxKills);
  const auto stop = std::chrono::steady_clock::now() + kBudget;
  int first = 0;
  while (killer.kills() < kMaxKills &&
         std::chrono::steady_clock::now() < stop) {
    const int n = 200 + static_cast<int>(rng() % 400);
    const size_t chunksizes[] = {1, 3, 8, 0};
    const size_t cs = chunksizes[rng() % 4];
    std::vector<int> items = Items(first, n);
    first += n;
    sent += n;
    std::optional<size_t> chunksize;
    if (cs != 0) chunksize = cs;
    try {
      std::vector<int> out =
          pool.map_async(pool_chaos::work, items, chunksize).get(kLong);
      ASSERT_EQ(out.size(), items.size());
      for (size_t i = 0; i < items.size(); ++i)
        ASSERT_EQ(out[i], 2 * items[i] + 1) << "item " << items[i];
      results += out.size();
      ++maps_ok;
    } catch (const mp::ProcessError& e) {
      ExpectClearDeath(e);
      errors += n;  // a failed map accounts for all its items
      ++maps_failed;
    }
  }
  killer.Stop();
  // The pool carries on.
  std::vector<int> items = Items(first, 300);
  std::vector<int> out = pool.map(pool_chaos::work, items);
  for (size_t i = 0; i < items.size(); ++i) ASSERT_EQ(out[i], 2 * items[i] + 1);
  std::printf(
      "map chaos [%s, seed %u]: %zu maps ok, %zu failed; items sent %zu, "
      "results %zu, errors %zu; workers killed %d\n",
      GetParam().c_str(), seed, maps_ok, maps_failed, sent, results, errors,
      killer.kills());
  EXPECT_EQ(results + errors, sent);
  EXPECT_GT(killer.kills(), 0);
}

// imap_unordered(): each item comes back once as a result, or its chunk
// raises once; the counts add up to what was sent.
TEST_P(PoolChaosTest, ImapUnorderedWhileWorkersAreKilled) {
  const uint32_t seed = Seed(16101);
  SCOPED_TRACE("seed " + std::to_string(seed) + ", start method " + GetParam());
  std::mt19937 rng(seed);
  mp::Pool pool = MakePool();
  size_t sent = 0, results = 0, errors = 0;
  Killer killer(seed, kMaxKills);
  const auto stop = std::chrono::steady_clock::now() + kBudget;
  int first = 0;
  while (killer.kills() < kMaxKills &&
         std::chrono::steady_clock::now() < stop) {
    const size_t cs = rng() % 2 == 0 ? 1 : 4;
    const int n = 600;  // a multiple of every chunksize
    std::vector<int> items = Items(first, n);
    first += n;
    sent += n;
    auto it = pool.imap_unordered(pool_chaos::work, items, cs);
    std::set<int> seen;
    size_t round_errors = 0;
    for (;;) {
      try {
        std::optional<int> v = it.next(kLong);
        if (!v) break;
        ASSERT_EQ(*v % 2, 1);
        int item = (*v - 1) / 2;
        ASSERT_TRUE(item >= items.front() && item <= items.back()) << item;
        ASSERT_TRUE(seen.insert(item).second) << "item " << item << " twice";
      } catch (const mp::ProcessError& e) {
        ExpectClearDeath(e);
        round_errors += cs;  // the whole chunk
      }
    }
    ASSERT_EQ(seen.size() + round_errors, items.size())
        << "items missing or counted twice";
    results += seen.size();
    errors += round_errors;
  }
  killer.Stop();
  std::vector<int> items = Items(first, 300);
  std::set<int> all;
  for (int v : pool.imap_unordered(pool_chaos::work, items, 7)) all.insert(v);
  EXPECT_EQ(all.size(), items.size());
  std::printf(
      "imap_unordered chaos [%s, seed %u]: items sent %zu, results %zu, "
      "errors %zu; workers killed %d\n",
      GetParam().c_str(), seed, sent, results, errors, killer.kills());
  EXPECT_EQ(results + errors, sent);
  EXPECT_GT(killer.kills(), 0);
}

INSTANTIATE_TEST_SUITE_P(Methods, PoolChaosTest,
                         ::testing::Values("fork", "spawn", "forkserver"));

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  // Before any worker (or the forkserver) starts, so that all of them see it.
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string pids = std::string(tmp != nullptr ? tmp : "/tmp") +
                     "/pool-chaos-pids-" + std::to_string(getpid());
  setenv("POOL_CHAOS_PIDS", pids.c_str(), 1);
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  unlink(pids.c_str());
  return rc;
}
