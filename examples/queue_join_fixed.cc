// Programming guidelines, "Joining processes that use queues", with the fix the
// doc gives: get before join. The child's exit waits for its queue's feeder to
// hand the megabyte over; had the parent joined first, both would wait for each
// other.
//
//   from multiprocessing import Process, Queue
//
//   def f(q):
//       q.put('X' * 1000000)
//
//   if __name__ == '__main__':
//       queue = Queue()
//       p = Process(target=f, args=(queue,))
//       p.start()
//       obj = queue.get()
//       p.join()
//
// Prints nothing and exits 0.
#include <string>

#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

void f(mp::Queue q) { q.put(std::string(1000000, 'X')); }
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Queue queue;
  mp::Process p(f, queue);
  p.start();
  auto obj = queue.get<std::string>();
  p.join();
  return obj.size() == 1000000 && p.exitcode() == 0 ? 0 : 1;
}
