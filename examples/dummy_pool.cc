// The multiprocessing.dummy module: the pool_square example on threads.
//
//   from multiprocessing.dummy import Pool
//
//   def f(x):
//       return x*x
//
//   if __name__ == '__main__':
//       with Pool(5) as p:
//           print(p.map(f, [1, 2, 3]))
//
// Prints "[1, 4, 9]", computed by five threads of this process.
#include <iostream>
#include <vector>

#include "dummy/dummy.h"
#include "reduction/pickle.h"

namespace mp = multiprocessing;

int f(int x) { return x * x; }

int main() {
  mp::dummy::Pool p(5);  // pool::ThreadPool
  std::cout << mp::reduction::repr(p.map(f, std::vector<int>{1, 2, 3}))
            << std::endl;
}
