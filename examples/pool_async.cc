// Process Pools: apply_async, map, imap and a get() that times out.
//
//   from multiprocessing import Pool
//   import time
//
//   def f(x):
//       return x*x
//
//   if __name__ == '__main__':
//       with Pool(processes=4) as pool:         # start 4 worker processes
//           result = pool.apply_async(f, (10,)) # evaluate "f(10)"
//           asynchronously print(result.get(timeout=1))        # prints "100"
//           print(pool.map(f, range(10)))       # prints "[0, 1, 4,..., 81]"
//           it = pool.imap(f, range(10))
//           print(next(it))                     # prints "0"
//           print(next(it))                     # prints "1"
//           print(it.next(timeout=1))           # prints "4"
//           result = pool.apply_async(time.sleep, (10,))
//           print(result.get(timeout=1))        # raises
//           multiprocessing.TimeoutError
//
// Python ends with the TimeoutError's traceback; this program reports the
// error on stdout and exits normally (leaving the block terminates the
// sleeping worker, so it does not wait the 10 seconds).
#include <chrono>
#include <iostream>
#include <numeric>
#include <thread>
#include <vector>

#include "pool/pool.h"
#include "process/context.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using namespace std::chrono_literals;

int f(int x) { return x * x; }
void sleep_seconds(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}
MP_REGISTER_FUNCTION(f);
MP_REGISTER_FUNCTION(sleep_seconds);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Pool pool({.processes = 4});
  auto result = pool.apply_async(f, {10});
  std::cout << result.get(1s) << std::endl;

  std::vector<int> range(10);
  std::iota(range.begin(), range.end(), 0);
  std::cout << mp::reduction::repr(pool.map(f, range)) << std::endl;

  auto it = pool.imap(f, range);
  std::cout << *it.next() << std::endl;
  std::cout << *it.next() << std::endl;
  std::cout << *it.next(1s) << std::endl;

  auto sleeping = pool.apply_async(sleep_seconds, {10});
  try {
    sleeping.wait(1s);
    std::cout << mp::reduction::repr(sleeping.get(1s)) << std::endl;
  } catch (const mp::TimeoutError&) {
    std::cout << "multiprocessing.TimeoutError raised by result.get(timeout=1)"
              << std::endl;
  }
}
