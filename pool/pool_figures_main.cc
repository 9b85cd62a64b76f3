// Runs this package's figures alone: tools/bazel run -c opt
// //pool:pool_figures_main. //tools/bench:baseline runs them with all the
// others.
#include "benchmark/benchmark.h"
#include "process/context.h"

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
