// Figures for //tools/bench:baseline: starting and joining a no-op child (a
// Process without target) with each start method, in microseconds.
#include <string>

#include "benchmark/benchmark.h"
#include "process/context.h"
#include "process/process.h"
#include "tools/bench/figure.h"

namespace multiprocessing::process_figures {
namespace {

void StartJoin(benchmark::State& state, const char* method) {
  const Context& ctx = get_context(method);
  {
    // Outside the timed loop: the fork server's start, the temp dir.
    Process warm = ctx.Process();
    warm.start();
    warm.join();
  }
  for (auto _ : state) {
    Process p = ctx.Process();
    p.start();
    p.join();
    if (p.exitcode() != 0) {
      state.SkipWithError("the child failed");
      break;
    }
  }
  bench::ReportMicros(state, static_cast<double>(state.iterations()));
}

void BM_StartJoinFork(benchmark::State& state) { StartJoin(state, "fork"); }
void BM_StartJoinSpawn(benchmark::State& state) { StartJoin(state, "spawn"); }
void BM_StartJoinForkserver(benchmark::State& state) {
  StartJoin(state, "forkserver");
}

MP_FIGURE("process_start_join_us_fork", BM_StartJoinFork);
MP_FIGURE("process_start_join_us_spawn", BM_StartJoinSpawn);
MP_FIGURE("process_start_join_us_forkserver", BM_StartJoinForkserver);

}  // namespace
}  // namespace multiprocessing::process_figures
