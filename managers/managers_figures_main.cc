// Runs the managers figures alone: bazel run //managers:managers_figures_main
#include "benchmark/benchmark.h"
#include "process/context.h"

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
