// Prints a JSON object of figures measured with this library, with the keys
// and units of ../shared/bench/cpython_baseline.py.
//
//   tools/bazel run -c opt //tools/bench:baseline                    # all
//   tools/bazel run -c opt //tools/bench:baseline -- pipe_objs_per_s # these
//
// Google Benchmark's own flags (--benchmark_min_time=2,
// --benchmark_repetitions=5, ...) pass through; with repetitions the median is
// printed (the best run for the figures registered with MP_FIGURE_BEST_OF).
// Progress goes to stderr, the JSON alone to stdout.
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "benchmark/benchmark.h"
#include "process/context.h"

namespace {

// Collects each figure's "value" counter instead of printing Google Benchmark's
// table.
class FigureReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) {
        std::fprintf(stderr, "%s: %s\n", run.benchmark_name().c_str(),
                     run.error_message.c_str());
        errors_ = true;
        continue;
      }
      auto it = run.counters.find("value");
      if (it == run.counters.end()) continue;
      const std::string key = run.run_name.function_name;
      const double value = it->second.value;
      if (run.run_type != Run::RT_Aggregate) {
        if (!values_.count(key) || run.repetitions <= 1) values_[key] = value;
        std::fprintf(stderr, "%s: %.1f\n", key.c_str(), value);
      } else if (run.aggregate_name == "best" ||
                 (run.aggregate_name == "median" && !best_.count(key))) {
        // MP_FIGURE_BEST_OF figures report their best run; others, with
        // repetitions, the median.
        if (run.aggregate_name == "best") best_.insert(key);
        values_[key] = value;
        std::fprintf(stderr, "%s (%s): %.1f\n", key.c_str(),
                     run.aggregate_name.c_str(), value);
      }
    }
  }

  void Finalize() override {}

  bool errors() const { return errors_; }
  const std::map<std::string, double>& values() const { return values_; }

 private:
  std::map<std::string, double> values_;
  std::set<std::string> best_;
  bool errors_ = false;
};

std::string Escape(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Figures start spawn and forkserver children from this binary.
  multiprocessing::freeze_support(argc, argv);
  benchmark::Initialize(&argc, argv);
  std::vector<std::string> keys(argv + 1, argv + argc);
  const std::string filter =
      keys.empty() ? "."
                   : absl::StrFormat("^(%s)(/repeats:[0-9]+)?(/real_time)?$",
                                     absl::StrJoin(keys, "|"));
  FigureReporter reporter;
  const size_t ran = benchmark::RunSpecifiedBenchmarks(&reporter, filter);
  if (!keys.empty() && ran != keys.size()) {
    std::fprintf(stderr, "unknown figure(s) among: %s\n",
                 absl::StrJoin(keys, ", ").c_str());
    return 2;
  }
  std::printf("{\n \"library\": \"multiprocessing-cpp\"");
  for (const auto& [key, value] : reporter.values()) {
    std::printf(",\n \"%s\": %.1f", Escape(key).c_str(), value);
  }
  std::printf("\n}\n");
  benchmark::Shutdown();
  return reporter.errors() ? 1 : 0;
}
