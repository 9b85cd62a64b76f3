// Contexts and start methods: set_start_method('spawn').
//
//   import multiprocessing as mp
//
//   def foo(q):
//       q.put('hello')
//
//   if __name__ == '__main__':
//       mp.set_start_method('spawn')
//       q = mp.Queue()
//       p = mp.Process(target=foo, args=(q,))
//       p.start()
//       print(q.get())
//       p.join()
#include <iostream>
#include <string>

#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

void foo(mp::Queue q) { q.put(std::string("hello")); }
MP_REGISTER_FUNCTION(foo);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  mp::set_start_method("spawn");
  mp::Queue q;
  mp::Process p(foo, q);
  p.start();
  std::cout << q.get<std::string>() << "\n";
  p.join();
}
