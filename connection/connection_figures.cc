// Figures for //tools/bench:baseline, keyed as in
// ../shared/bench/cpython_baseline.py:
//   pipe_objs_per_s            256-byte str objects, send() -> recv() over
//   Pipe() between two processes pipe_bandwidth_MB_s_16MiB  16 MiB send_bytes()
//   -> recv_bytes() over Pipe(duplex=false)
// The sender is a forked child that serves every benchmark iteration: the
// parent asks it for a batch, then times receiving it.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "benchmark/benchmark.h"
#include "connection/connection.h"
#include "tools/bench/figure.h"

namespace multiprocessing::connection {
namespace {

// Forks a child that, for each request (a count; 0 ends it) read from
// `control`, runs send_batch(n).
template <class SendBatch>
pid_t StartSender(Connection control, SendBatch send_batch) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    int code = 0;
    try {
      for (;;) {
        const auto n = control.recv<std::int64_t>();
        if (n == 0) break;
        send_batch(n);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sender failed: %s\n", e.what());
      code = 1;
    }
    ::_exit(code);
  }
  return pid;
}

void StopSender(Connection& control, pid_t pid) {
  control.send(std::int64_t{0});
  int status;
  ::waitpid(pid, &status, 0);
}

void BM_PipeObjs(benchmark::State& state) {
  constexpr std::int64_t kBatch = 200000;
  auto [control, child_control] = Pipe();
  auto [r, w] = Pipe();
  const pid_t pid = StartSender(child_control, [w = w](std::int64_t n) mutable {
    const std::string a(256, '0');
    for (std::int64_t i = 0; i < n; ++i) w.send(a);
    w.send(std::string("STOP"));
  });
  std::int64_t received = 0;
  for (auto _ : state) {
    state.PauseTiming();
    control.send(kBatch);
    r.poll(std::nullopt);
    state.ResumeTiming();
    while (r.recv<std::string>() != "STOP") ++received;
  }
  StopSender(control, pid);
  bench::ReportRate(state, static_cast<double>(received));
}
MP_FIGURE("pipe_objs_per_s", BM_PipeObjs);

void BM_PipeBandwidth(benchmark::State& state) {
  constexpr std::size_t kSize = 16 << 20;
  constexpr std::int64_t kCount = 32;
  auto [control, child_control] = Pipe();
  auto [r, w] = Pipe(false);
  const pid_t pid = StartSender(child_control, [w = w](std::int64_t n) mutable {
    const std::string buf(kSize, 'x');
    for (std::int64_t i = 0; i < n; ++i) w.send_bytes(buf);
  });
  double bytes = 0;
  for (auto _ : state) {
    control.send(kCount);
    for (std::int64_t i = 0; i < kCount; ++i)
      bytes += static_cast<double>(r.recv_bytes().size());
  }
  StopSender(control, pid);
  bench::ReportMegabytesPerSecond(state, bytes);
}
MP_FIGURE("pipe_bandwidth_MB_s_16MiB", BM_PipeBandwidth);

}  // namespace
}  // namespace multiprocessing::connection
