// Figures of the pickle codec for //tools/bench:baseline: calls per second of
// dumps() / loads() of the typed C++ values standing for CPython's '0' * 256
// (std::string) and list(range(1000)) (std::vector<int64_t>); loads() decodes
// the bytes CPython writes for them. reduction/cpython_figures.py measures
// CPython's pickle on the same values.
#include <cstdint>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "reduction/pickle.h"
#include "tools/bench/figure.h"

namespace multiprocessing::reduction {
namespace {

std::string Str256() { return std::string(256, '0'); }

std::vector<int64_t> List1000() {
  std::vector<int64_t> v(1000);
  for (int i = 0; i < 1000; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

// Protocol 4 with one frame around `body`, as CPython writes it.
std::string Framed(const std::string& body) {
  std::string out("\x80\x04\x95", 3);
  uint64_t n = body.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  return out + body;
}

// pickle.dumps('0' * 256): BINUNICODE, MEMOIZE, STOP.
std::string CPythonStr256() {
  std::string body("X\x00\x01\x00\x00", 5);
  return Framed(body + Str256() + "\x94.");
}

// pickle.dumps(list(range(1000))): EMPTY_LIST, MEMOIZE, MARK, BININT1/BININT2
// items, APPENDS, STOP.
std::string CPythonList1000() {
  std::string body("]\x94(", 3);
  for (int i = 0; i < 1000; ++i) {
    if (i < 256) {
      body += 'K';
      body += static_cast<char>(i);
    } else {
      body += 'M';
      body += static_cast<char>(i & 0xFF);
      body += static_cast<char>(i >> 8);
    }
  }
  return Framed(body + "e.");
}

void BM_DumpsStr256(benchmark::State& state) {
  std::string value = Str256();
  for (auto _ : state) benchmark::DoNotOptimize(dumps(value));
  bench::ReportRate(state, static_cast<double>(state.iterations()));
}

void BM_LoadsStr256(benchmark::State& state) {
  std::string data = CPythonStr256();
  for (auto _ : state) benchmark::DoNotOptimize(loads<std::string>(data));
  bench::ReportRate(state, static_cast<double>(state.iterations()));
}

void BM_DumpsList1000Ints(benchmark::State& state) {
  std::vector<int64_t> value = List1000();
  for (auto _ : state) benchmark::DoNotOptimize(dumps(value));
  bench::ReportRate(state, static_cast<double>(state.iterations()));
}

void BM_LoadsList1000Ints(benchmark::State& state) {
  std::string data = CPythonList1000();
  for (auto _ : state)
    benchmark::DoNotOptimize(loads<std::vector<int64_t>>(data));
  bench::ReportRate(state, static_cast<double>(state.iterations()));
}

// The best of three runs, as cpython_figures.py takes timeit's best of three.
MP_FIGURE_BEST_OF("pickle_dumps_str256_per_s", BM_DumpsStr256, 3);
MP_FIGURE_BEST_OF("pickle_loads_str256_per_s", BM_LoadsStr256, 3);
MP_FIGURE_BEST_OF("pickle_dumps_list1000_ints_per_s", BM_DumpsList1000Ints, 3);
MP_FIGURE_BEST_OF("pickle_loads_list1000_ints_per_s", BM_LoadsList1000Ints, 3);

}  // namespace
}  // namespace multiprocessing::reduction
