// Introduction: a Pool mapping a function over a list.
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
// Prints "[1, 4, 9]". An optional argument selects the start method.
#include <iostream>
#include <vector>

#include "pool/pool.h"
#include "process/context.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

int f(int x) { return x * x; }
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Pool p(5);  // the destructor terminates the pool, as `with` does
  std::cout << mp::reduction::repr(p.map(f, std::vector<int>{1, 2, 3}))
            << std::endl;
}
