// Sharing state between processes: shared memory with Value and Array.
//
//   from multiprocessing import Process, Value, Array
//
//   def f(n, a):
//       n.value = 3.1415927
//       for i in range(len(a)):
//           a[i] = -a[i]
//
//   if __name__ == '__main__':
//       num = Value('d', 0.0)
//       arr = Array('i', range(10))
//
//       p = Process(target=f, args=(num, arr))
//       p.start()
//       p.join()
//
//       print(num.value)
//       print(arr[:])
//
// Prints "3.1415927" and "[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]". An
// optional argument selects the start method (fork, spawn or forkserver).
#include <iostream>
#include <numeric>
#include <vector>

#include "process/context.h"
#include "process/process.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"
#include "sharedctypes/sharedctypes.h"

namespace mp = multiprocessing;
namespace sc = multiprocessing::sharedctypes;

void f(sc::Synchronized<double> n, sc::SynchronizedArray<int> a) {
  n.value() = 3.1415927;
  for (size_t i = 0; i < a.len(); ++i) {
    a[i] = -a[i];
  }
}
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  auto num = mp::Value<'d'>(0.0);
  std::vector<int> range(10);  // range(10)
  std::iota(range.begin(), range.end(), 0);
  auto arr = mp::Array<'i'>(range);

  mp::Process p(f, num, arr);
  p.start();
  p.join();

  std::cout << mp::reduction::repr(num.get()) << "\n";
  std::cout << mp::reduction::repr(arr.list()) << "\n";
}
