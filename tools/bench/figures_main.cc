// main() for a package's own figures binary (//process:process_figures_main,
// ...): Google Benchmark's runner with its usual flags and table, in a program
// whose spawn and forkserver children work.
#include "benchmark/benchmark.h"
#include "process/context.h"

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
