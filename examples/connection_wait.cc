// Listeners and Clients: wait() for messages from several processes at once.
//
//   import time, random
//   from multiprocessing import Process, Pipe, current_process
//   from multiprocessing.connection import wait
//
//   def foo(w):
//       for i in range(10):
//           w.send((i, current_process().name))
//       w.close()
//
//   if __name__ == '__main__':
//       readers = []
//
//       for i in range(4):
//           r, w = Pipe(duplex=False)
//           readers.append(r)
//           p = Process(target=foo, args=(w,))
//           p.start()
//           # We close the writable end of the pipe now to be sure that
//           # p is the only process which owns a handle for it.  This
//           # ensures that when p closes its handle for the writable end,
//           # wait() will promptly report the readable end as being ready.
//           w.close()
//
//       while readers:
//           for r in wait(readers):
//               try:
//                   msg = r.recv()
//               except EOFError:
//                   readers.remove(r)
//               else:
//                   print(msg)
#include <algorithm>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "connection/connection.h"
#include "connection/wait.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/pickle.h"

namespace mp = multiprocessing;

void foo(mp::Connection w) {
  for (int i = 0; i < 10; ++i) {
    w.send(std::make_pair(i, mp::current_process().name()));
  }
  w.close();
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  std::vector<mp::Connection> readers;

  for (int i = 0; i < 4; ++i) {
    auto [r, w] = mp::Pipe(/*duplex=*/false);
    readers.push_back(r);
    mp::Process p(foo, w);
    p.start();
    // We close the writable end of the pipe now to be sure that p is the only
    // process which owns a handle for it. This ensures that when p closes its
    // handle for the writable end, wait() will promptly report the readable end
    // as being ready.
    w.close();
  }

  while (!readers.empty()) {
    for (mp::Connection& r : mp::connection::wait(readers)) {
      std::pair<int, std::string> msg;
      try {
        msg = r.recv<std::pair<int, std::string>>();
      } catch (const mp::EOFError&) {
        readers.erase(std::find(readers.begin(), readers.end(), r));
        continue;
      }
      std::cout << mp::reduction::repr(msg) << std::endl;
    }
  }
}
