// A Monte-Carlo estimate of pi on MPI workers: each task throws darts at the
// unit square and counts those inside the quarter circle; the results come
// back through imap_unordered, in the order the tasks finish.
//
//   mpi_pi [WORKERS [TASKS]]      (defaults: 2 workers, 200 tasks)
//
// Prints the estimate and the rate, e.g.
//   pi is about 3.14159 (200 tasks of 20000 darts on 2 workers)
//   200 tasks in 0.41 s: 488 tasks/s
// Alone it spawns WORKERS workers; under `mpirun -n N` it uses ranks 1..N-1.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "mpi/pool.h"
#include "reduction/registry.h"

namespace mpi = multiprocessing::mpi;

constexpr int64_t kDarts = 20000;

// The darts inside the quarter circle, out of kDarts; each task its own seed.
int64_t darts_inside(int64_t seed) {
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int64_t inside = 0;
  for (int64_t i = 0; i < kDarts; ++i) {
    double x = u(rng), y = u(rng);
    inside += x * x + y * y <= 1.0;
  }
  return inside;
}
MP_REGISTER_FUNCTION(darts_inside);

int main(int argc, char** argv) {
  mpi::freeze_support(argc, argv);
  int workers = argc > 1 ? std::atoi(argv[1]) : 2;
  int tasks = argc > 2 ? std::atoi(argv[2]) : 200;
  mpi::PoolOptions options;
  if (mpi::size() == 1) options.processes = workers;
  mpi::Pool pool(options);
  std::vector<int64_t> seeds(static_cast<size_t>(tasks));
  for (int i = 0; i < tasks; ++i) seeds[static_cast<size_t>(i)] = i + 1;

  auto start = std::chrono::steady_clock::now();
  int64_t inside = 0;
  for (int64_t n : pool.imap_unordered(darts_inside, seeds)) inside += n;
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  double pi =
      4.0 * static_cast<double>(inside) / (static_cast<double>(kDarts) * tasks);
  std::printf("pi is about %.5f (%d tasks of %lld darts on %d workers)\n", pi,
              tasks, static_cast<long long>(kDarts), pool.processes());
  std::printf("%d tasks in %.2f s: %.0f tasks/s\n", tasks, seconds,
              tasks / seconds);
}
