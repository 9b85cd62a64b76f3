// The Introduction's Pool example (pool_square) with its workers on MPI ranks.
//
//   from multiprocessing import Pool
//
//   def f(x):
//       return x*x
//
//   if __name__ == '__main__':
//       with Pool(5) as p:
//           print(p.map(f, [1, 2, 3]))
//
// Prints "[1, 4, 9]". Run alone (`bazel run //examples:mpi_pool_square`), it
// is an MPI singleton whose pool spawns 5 workers; under `mpirun -n N` ranks
// 1..N-1 are the workers.
#include <iostream>
#include <vector>

#include "mpi/pool.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

int f(int x) { return x * x; }
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::mpi::freeze_support(argc, argv);  // workers serve tasks there
  mp::mpi::PoolOptions options;
  if (mp::mpi::size() == 1) options.processes = 5;  // else every other rank
  mp::mpi::Pool p(options);  // the destructor ends the pool, as `with` does
  std::cout << mp::reduction::repr(p.map(f, std::vector<int>{1, 2, 3}))
            << std::endl;
}
