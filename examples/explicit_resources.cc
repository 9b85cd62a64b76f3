// Programming guidelines, "Explicitly pass resources to child processes":
// the lock is a Process argument, not a global, so the code works with every
// start method and the lock lives as long as the children use it.
//
//   from multiprocessing import Process, Lock
//
//   def f(l):
//       ... do something using "l" ...
//
//   if __name__ == '__main__':
//      lock = Lock()
//      for i in range(10):
//           Process(target=f, args=(lock,)).start()
//
// Each of the 10 children takes the lock and prints "<its name> has the
// lock" (Process-1 .. Process-10, in any order). An optional argument
// selects the start method (fork, spawn or forkserver).
#include <iostream>
#include <mutex>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"
#include "synchronize/synchronize.h"

namespace mp = multiprocessing;

void f(mp::Lock l) {
  std::lock_guard<mp::Lock> guard(l);
  std::cout << mp::current_process().name() << " has the lock" << std::endl;
}
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Lock lock;
  for (int i = 0; i < 10; ++i) {
    mp::Process(f, lock).start();
  }
}
