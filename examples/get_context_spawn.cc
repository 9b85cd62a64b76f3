// Contexts and start methods: get_context('spawn').
//
//   import multiprocessing as mp
//
//   def foo(q):
//       q.put('hello')
//
//   if __name__ == '__main__':
//       ctx = mp.get_context('spawn')
//       q = ctx.Queue()
//       p = ctx.Process(target=foo, args=(q,))
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
  const mp::Context& ctx = mp::get_context("spawn");
  // ctx.Queue(): a C++ Queue works with processes of every context, so it is
  // built directly.
  mp::Queue q;
  mp::Process p = ctx.Process(foo, q);
  p.start();
  std::cout << q.get<std::string>() << "\n";
  p.join();
}
