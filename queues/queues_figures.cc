// queue_objs_per_s: 256-character strings from one producer process through a
// Queue to this process, as in the CPython baseline script.
#include <string>

#include "benchmark/benchmark.h"
#include "process/process.h"
#include "queues/queues.h"
#include "tools/bench/figure.h"

namespace multiprocessing {
namespace {

void BM_QueueObjs(benchmark::State& state) {
  constexpr int kItems = 200000;
  Queue q;
  int64_t moved = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Process producer([q]() mutable {
      const std::string item(256, '0');
      q.put(std::string("ready"));
      for (int i = 0; i < kItems; ++i) q.put(item);
      q.put(std::string("STOP"));
    });
    producer.start();
    q.get<std::string>();  // the producer is running
    state.ResumeTiming();
    std::string item;
    while ((item = q.get<std::string>()) != "STOP") {
      benchmark::DoNotOptimize(item.data());
      ++moved;
    }
    state.PauseTiming();
    producer.join();
    state.ResumeTiming();
  }
  bench::ReportRate(state, static_cast<double>(moved));
}
MP_FIGURE("queue_objs_per_s", BM_QueueObjs);

}  // namespace
}  // namespace multiprocessing
