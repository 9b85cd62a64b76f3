// Using a pool of workers.
//
//   from multiprocessing import Pool, TimeoutError
//   import time
//   import os
//
//   def f(x):
//       return x*x
//
//   if __name__ == '__main__':
//       # start 4 worker processes
//       with Pool(processes=4) as pool:
//           # print "[0, 1, 4,..., 81]"
//           print(pool.map(f, range(10)))
//           # print same numbers in arbitrary order
//           for i in pool.imap_unordered(f, range(10)):
//               print(i)
//           # evaluate "f(20)" asynchronously
//           res = pool.apply_async(f, (20,))      # runs in *only* one process
//           print(res.get(timeout=1))             # prints "400"
//           # evaluate "os.getpid()" asynchronously
//           res = pool.apply_async(os.getpid, ()) # runs in *only* one process
//           print(res.get(timeout=1))             # prints the PID of that
//           process # launching multiple evaluations asynchronously *may* use
//           more processes multiple_results = [pool.apply_async(os.getpid, ())
//           for i in range(4)] print([res.get(timeout=1) for res in
//           multiple_results]) # make a single worker sleep for 10 secs res =
//           pool.apply_async(time.sleep, (10,)) try:
//               print(res.get(timeout=1))
//           except TimeoutError:
//               print("We lacked patience and got a
//               multiprocessing.TimeoutError")
//           print("For the moment, the pool remains available for more work")
//       # exiting the 'with'-block has stopped the pool
//       print("Now the pool is closed and no longer available")
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <numeric>
#include <optional>
#include <thread>
#include <vector>

#include "pool/pool.h"
#include "process/context.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using namespace std::chrono_literals;

int f(int x) { return x * x; }
// os.getpid and time.sleep, as functions a worker can look up.
int getpid_() { return static_cast<int>(getpid()); }
void sleep_seconds(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}
MP_REGISTER_FUNCTION(f);
MP_REGISTER_FUNCTION(getpid_);
MP_REGISTER_FUNCTION(sleep_seconds);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  {
    // start 4 worker processes
    mp::Pool pool({.processes = 4});
    std::vector<int> range(10);
    std::iota(range.begin(), range.end(), 0);

    // print "[0, 1, 4,..., 81]"
    std::cout << mp::reduction::repr(pool.map(f, range)) << std::endl;

    // print same numbers in arbitrary order
    for (int i : pool.imap_unordered(f, range)) std::cout << i << std::endl;

    // evaluate "f(20)" asynchronously
    auto res = pool.apply_async(f, {20});   // runs in *only* one process
    std::cout << res.get(1s) << std::endl;  // prints "400"

    // evaluate "os.getpid()" asynchronously
    auto pid = pool.apply_async(getpid_);   // runs in *only* one process
    std::cout << pid.get(1s) << std::endl;  // prints the PID of that process

    // launching multiple evaluations asynchronously *may* use more processes
    std::vector<mp::pool::AsyncResult<int>> multiple_results;
    for (int i = 0; i < 4; ++i)
      multiple_results.push_back(pool.apply_async(getpid_));
    std::vector<int> pids;
    for (auto& r : multiple_results) pids.push_back(r.get(1s));
    std::cout << mp::reduction::repr(pids) << std::endl;

    // make a single worker sleep for 10 secs
    auto sleeping = pool.apply_async(sleep_seconds, {10});
    try {
      std::cout << mp::reduction::repr(sleeping.get(1s)) << std::endl;
    } catch (const mp::TimeoutError&) {
      std::cout << "We lacked patience and got a multiprocessing.TimeoutError"
                << std::endl;
    }
    std::cout << "For the moment, the pool remains available for more work"
              << std::endl;
  }  // leaving the block has stopped the pool
  std::cout << "Now the pool is closed and no longer available" << std::endl;
}
