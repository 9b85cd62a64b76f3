// Figures for //tools/bench:baseline: l[5] on a list proxy, in microseconds
// (one request to the manager's server and its answer).
#include <numeric>
#include <vector>

#include "benchmark/benchmark.h"
#include "managers/managers.h"
#include "tools/bench/figure.h"

namespace multiprocessing::managers_figures {
namespace {

void BM_ListGetitem(benchmark::State& state) {
  auto manager = Manager();
  std::vector<int> range(10);
  std::iota(range.begin(), range.end(), 0);
  managers::ListProxy l = manager.list(range);
  reduction::Object x = l[5];  // opens this thread's connection
  for (auto _ : state) {
    x = l[5];
    benchmark::DoNotOptimize(x);
  }
  bench::ReportMicros(state, static_cast<double>(state.iterations()));
}

MP_FIGURE("manager_list_getitem_us", BM_ListGetitem);

}  // namespace
}  // namespace multiprocessing::managers_figures
