// Figures for //tools/bench:baseline: uncontended Lock and RLock
// acquire+release pairs per second, and Condition notify/wait ping-pong
// between two processes (waits per second, both sides counted, as
// ../shared/bench/cpython_baseline.py does).
#include <atomic>
#include <mutex>

#include "benchmark/benchmark.h"
#include "process/process.h"
#include "synchronize/internal/heap.h"
#include "synchronize/synchronize.h"
#include "tools/bench/figure.h"

namespace multiprocessing::synchronize_figures {
namespace {

constexpr int kBatch = 64;

template <class L>
void LockPairs(benchmark::State& state) {
  L lock;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      bool got = lock.acquire();
      benchmark::DoNotOptimize(got);
      lock.release();
    }
  }
  bench::ReportRate(state, static_cast<double>(state.iterations()) * kBatch);
}

void BM_LockPairs(benchmark::State& state) { LockPairs<Lock>(state); }
void BM_RLockPairs(benchmark::State& state) { LockPairs<RLock>(state); }

void BM_ConditionWaits(benchmark::State& state) {
  Condition c;
  auto block = internal::SharedBlock::Allocate(sizeof(std::atomic<int>));
  auto* stop = static_cast<std::atomic<int>*>(block->data());
  Process partner([c, stop]() mutable {
    std::lock_guard<Condition> guard(c);
    c.notify();
    for (;;) {
      c.wait();
      if (stop->load()) break;
      c.notify();
    }
  });
  int64_t waits = 0;
  {
    std::lock_guard<Condition> guard(c);
    partner.start();
    c.wait();
    for (auto _ : state) {
      c.notify();
      bool woken = c.wait();
      benchmark::DoNotOptimize(woken);
    }
    waits = state.iterations() * 2;
    stop->store(1);
    c.notify();
  }
  partner.join();
  bench::ReportRate(state, static_cast<double>(waits));
}

MP_FIGURE("lock_pairs_per_s", BM_LockPairs);
MP_FIGURE("rlock_pairs_per_s", BM_RLockPairs);
MP_FIGURE("condition_waits_per_s", BM_ConditionWaits);

}  // namespace
}  // namespace multiprocessing::synchronize_figures
