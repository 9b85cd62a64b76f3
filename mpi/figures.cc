// The MPI pool's figures, run under `mpirun -n 3` (rank 0 the master, ranks 1
// and 2 the workers) by tools/bench/compare.py beside mpi4py.futures' on the
// same work (mpi/mpi4py_figures.py). Prints one JSON object:
//   mpi_pool_map_tasks_per_s_chunksize1  map of 20000 tiny tasks, chunksize 1
//   mpi_pool_apply_roundtrip_us          one apply() of a tiny task
//   mpi_send_recv_pingpong_us            MPI_Send / MPI_Recv of a small
//                                        message there and back, rank 0 to 1
// The ping-pong runs first, before freeze_support() turns ranks 1 and 2 into
// workers: the floor under the pool's round trip, in the same run.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <vector>

#include "mpi/pool.h"
#include "reduction/registry.h"

namespace mpi = multiprocessing::mpi;
using Clock = std::chrono::steady_clock;

namespace {

int square(int x) { return x * x; }
MP_REGISTER_FUNCTION(square);

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Microseconds per round trip of a 32-byte message between ranks 0 and 1.
double PingPong(int rank) {
  char message[32] = {};
  constexpr int kWarmup = 1000, kRounds = 20000;
  double us = 0;
  if (rank > 1) {
    // Idle, as a worker without tasks is: asleep, not spinning in MPI.
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    for (int done = 0; !done; usleep(1000))
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    return 0;
  }
  for (int round = 0; round < kWarmup + kRounds; ++round) {
    auto start = Clock::now();
    if (rank == 0) {
      MPI_Send(message, sizeof message, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
      MPI_Recv(message, sizeof message, MPI_BYTE, 1, 0, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
    } else if (rank == 1) {
      MPI_Recv(message, sizeof message, MPI_BYTE, 0, 0, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
      MPI_Send(message, sizeof message, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
    }
    if (round >= kWarmup) us += Seconds(start) * 1e6;
  }
  MPI_Request req;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  MPI_Wait(&req, MPI_STATUS_IGNORE);
  return us / kRounds;
}

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  double pingpong = PingPong(rank);
  mpi::freeze_support(argc, argv);  // ranks 1.. serve the pool from here on
  if (mpi::size() != 3) {
    std::fprintf(stderr, "run under mpirun -n 3 (2 workers)\n");
    return 2;
  }
  mpi::Pool pool({.processes = 2});

  // The best of 3 for each, as the CPython baseline does.
  constexpr int kTasks = 20000, kApplies = 5000;
  std::vector<int> items(kTasks);
  std::iota(items.begin(), items.end(), 0);
  double rate = 0, roundtrip = 1e9;
  for (int run = 0; run < 3; ++run) {
    auto start = Clock::now();
    std::vector<int> out = pool.map(square, items, 1);
    rate = std::max(rate, kTasks / Seconds(start));
    if (out.back() != (kTasks - 1) * (kTasks - 1)) return 1;
  }
  for (int run = 0; run < 3; ++run) {
    pool.apply(square, {1});  // warm
    auto start = Clock::now();
    for (int i = 0; i < kApplies; ++i) pool.apply(square, {i});
    roundtrip = std::min(roundtrip, Seconds(start) * 1e6 / kApplies);
  }
  std::printf(
      "{\"mpi_pool_map_tasks_per_s_chunksize1\": %.1f, "
      "\"mpi_pool_apply_roundtrip_us\": %.2f, "
      "\"mpi_send_recv_pingpong_us\": %.2f}\n",
      rate, roundtrip, pingpong);
}
