// Figures for //tools/bench:baseline, with the workloads of
// ../shared/bench/cpython_baseline.py: the pool is created (and warmed with a
// small map) outside the timed part.
#include <numeric>
#include <vector>

#include "benchmark/benchmark.h"
#include "pool/pool.h"
#include "tools/bench/figure.h"

namespace {

int square(int x) { return x * x; }

std::vector<int> Range(int n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

void MapRate(benchmark::State& state, int n, std::optional<size_t> chunksize) {
  multiprocessing::Pool pool(2);
  pool.map(square, Range(100));
  const std::vector<int> input = Range(n);
  double tasks = 0;
  for (auto _ : state) {
    std::vector<int> out = pool.map(square, input, chunksize);
    benchmark::DoNotOptimize(out.data());
    tasks += n;
  }
  multiprocessing::bench::ReportRate(state, tasks);
}

void BM_PoolMapDefaultChunks(benchmark::State& state) {
  MapRate(state, 200000, std::nullopt);
}
void BM_PoolMapChunksize1(benchmark::State& state) { MapRate(state, 20000, 1); }

void BM_PoolApplyRoundtrip(benchmark::State& state) {
  multiprocessing::Pool pool(1);
  pool.apply(square, {1});
  double calls = 0;
  int i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool.apply(square, {i++}));
    ++calls;
  }
  multiprocessing::bench::ReportMicros(state, calls);
}

}  // namespace

MP_FIGURE("pool_map_tasks_per_s_default_chunks", BM_PoolMapDefaultChunks);
MP_FIGURE("pool_map_tasks_per_s_chunksize1", BM_PoolMapChunksize1);
MP_FIGURE("pool_apply_roundtrip_us", BM_PoolApplyRoundtrip);
