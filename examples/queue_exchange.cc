// Exchanging objects between processes: Queues.
//
//   from multiprocessing import Process, Queue
//
//   def f(q):
//       q.put([42, None, 'hello'])
//
//   if __name__ == '__main__':
//       q = Queue()
//       p = Process(target=f, args=(q,))
//       p.start()
//       print(q.get())    # prints "[42, None, 'hello']"
//       p.join()
//
// An optional argument selects the start method: bazel run
// //examples:queue_exchange -- spawn
#include <iostream>
#include <vector>

#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"
#include "reduction/object.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using mp::reduction::Object;

void f(mp::Queue q) { q.put(std::vector<Object>{42, nullptr, "hello"}); }
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Queue q;
  mp::Process p(f, q);
  p.start();
  std::cout << repr(q.get()) << "\n";  // prints "[42, None, 'hello']"
  p.join();
}
