// Synchronization between processes: a lock lets one process at a time print.
//
//   from multiprocessing import Process, Lock
//
//   def f(l, i):
//       l.acquire()
//       try:
//           print('hello world', i)
//       finally:
//           l.release()
//
//   if __name__ == '__main__':
//       lock = Lock()
//
//       for num in range(10):
//           Process(target=f, args=(lock, num)).start()
//
// Prints "hello world 0" .. "hello world 9", whole lines in any order. An
// optional argument selects the start method (fork, spawn or forkserver).
#include <iostream>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"
#include "synchronize/synchronize.h"

namespace mp = multiprocessing;

void f(mp::Lock l, int i) {
  l.acquire();
  try {
    std::cout << "hello world " << i << std::endl;  // flushed under the lock
  } catch (...) {
    l.release();
    throw;
  }
  l.release();
}
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Lock lock;

  for (int num = 0; num < 10; ++num) {
    mp::Process(f, lock, num).start();
  }
  // As in Python, the children are joined when the main process exits.
}
