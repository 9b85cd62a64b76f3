// Figures for //tools/bench:baseline: one Google Benchmark function per figure,
// named by the figure's key in ../shared/bench/cpython_baseline.py, so that
// both programs print the same JSON keys and units.
//
//   void BM_PipeObjs(benchmark::State& state) {
//     ...  // set up outside the loop
//     for (auto _ : state) { ... }  // the timed work
//     multiprocessing::bench::ReportRate(state, objects_moved);
//   }
//   MP_FIGURE("pipe_objs_per_s", BM_PipeObjs);
//
// Figures are measured in wall-clock time, since most of them span several
// processes.
#ifndef MULTIPROCESSING_TOOLS_BENCH_FIGURE_H_
#define MULTIPROCESSING_TOOLS_BENCH_FIGURE_H_

#include <algorithm>
#include <vector>

#include "benchmark/benchmark.h"

namespace multiprocessing::bench {

// The "best" statistic of MP_FIGURE_BEST_OF: the highest figure.
inline double Best(const std::vector<double>& values) {
  return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
}

// The figure is `operations` done in the timed loop, per second of wall-clock
// time.
inline void ReportRate(benchmark::State& state, double operations) {
  state.counters["value"] =
      benchmark::Counter(operations, benchmark::Counter::kIsRate);
}

// The figure is microseconds of wall-clock time per operation, for `operations`
// done in the timed loop.
inline void ReportMicros(benchmark::State& state, double operations) {
  state.counters["value"] =
      benchmark::Counter(operations / 1e6, benchmark::Counter::kIsRate |
                                               benchmark::Counter::kInvert);
}

// Megabytes (10^6 bytes) per second for `bytes` moved in the timed loop.
inline void ReportMegabytesPerSecond(benchmark::State& state, double bytes) {
  ReportRate(state, bytes / 1e6);
}

}  // namespace multiprocessing::bench

#define MP_FIGURE_CONCAT_INNER(a, b) a##b
#define MP_FIGURE_CONCAT(a, b) MP_FIGURE_CONCAT_INNER(a, b)

// Registers `function` as the figure `key`.
#define MP_FIGURE(key, function)                                  \
  [[maybe_unused]] static ::benchmark::internal::Benchmark* const \
  MP_FIGURE_CONCAT(mp_figure_, __LINE__) =                        \
      ::benchmark::RegisterBenchmark(key, function)->UseRealTime()

// Registers `function` as the figure `key`, measured as the best of `n` runs:
// for rates (not latencies) whose CPython counterpart is timeit's best of
// repeats, so that both sides are measured alike.
#define MP_FIGURE_BEST_OF(key, function, n)                       \
  [[maybe_unused]] static ::benchmark::internal::Benchmark* const \
  MP_FIGURE_CONCAT(mp_figure_, __LINE__) =                        \
      ::benchmark::RegisterBenchmark(key, function)               \
          ->UseRealTime()                                         \
          ->Repetitions(n)                                        \
          ->ComputeStatistics("best", ::multiprocessing::bench::Best)

#endif  // MULTIPROCESSING_TOOLS_BENCH_FIGURE_H_
