// Figures for //tools/bench:baseline: reads of arr[5] on an Array('i',
// range(10)) with its lock (an RLock acquired and released per read) and
// without (lock=False), per second.
#include <numeric>
#include <vector>

#include "benchmark/benchmark.h"
#include "sharedctypes/sharedctypes.h"
#include "tools/bench/figure.h"

namespace multiprocessing::sharedctypes_figures {
namespace {

constexpr int kBatch = 64;

std::vector<int> Range10() {
  std::vector<int> v(10);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

void BM_ArrayLockedReads(benchmark::State& state) {
  auto arr = sharedctypes::Array<'i'>(Range10(), {.lock = true});
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      int v = arr[5];
      benchmark::DoNotOptimize(v);
    }
  }
  bench::ReportRate(state, static_cast<double>(state.iterations()) * kBatch);
}

void BM_ArrayRawReads(benchmark::State& state) {
  auto arr = sharedctypes::Array<'i'>(Range10(), {.lock = false});
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      // DoNotOptimize also tells the compiler memory may have changed, so
      // each read is a real load.
      int v = arr[5];
      benchmark::DoNotOptimize(v);
    }
  }
  bench::ReportRate(state, static_cast<double>(state.iterations()) * kBatch);
}

MP_FIGURE("array_locked_reads_per_s", BM_ArrayLockedReads);
MP_FIGURE("array_raw_reads_per_s", BM_ArrayRawReads);

}  // namespace
}  // namespace multiprocessing::sharedctypes_figures
