// Sharing state between processes: Server process.
//
//   from multiprocessing import Process, Manager
//
//   def f(d, l):
//       d[1] = '1'
//       d['2'] = 2
//       d[0.25] = None
//       l.reverse()
//
//   if __name__ == '__main__':
//       with Manager() as manager:
//           d = manager.dict()
//           l = manager.list(range(10))
//
//           p = Process(target=f, args=(d, l))
//           p.start()
//           p.join()
//
//           print(d)
//           print(l)
//
// Prints {1: '1', '2': 2, 0.25: None} and [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]. An
// optional argument selects the start method of the child (fork, spawn or
// forkserver); the proxies travel to it under each.
#include <iostream>
#include <numeric>
#include <vector>

#include "managers/managers.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using mp::managers::DictProxy;
using mp::managers::ListProxy;

void f(DictProxy d, ListProxy l) {
  d[1] = "1";
  d["2"] = 2;
  d[0.25] = nullptr;
  l.reverse();
}
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  {
    auto manager = mp::Manager();
    DictProxy d = manager.dict();
    std::vector<int> range(10);
    std::iota(range.begin(), range.end(), 0);
    ListProxy l = manager.list(range);

    mp::Process p(f, d, l);
    p.start();
    p.join();

    std::cout << d << "\n";
    std::cout << l << "\n";
  }
}
