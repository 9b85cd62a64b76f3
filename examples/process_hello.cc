// The Process class: the trivial example.
//
//   from multiprocessing import Process
//
//   def f(name):
//       print('hello', name)
//
//   if __name__ == '__main__':
//       p = Process(target=f, args=('bob',))
//       p.start()
//       p.join()
//
// Prints "hello bob". An optional argument selects the start method (fork,
// spawn or forkserver): bazel run //examples:process_hello -- spawn
#include <iostream>
#include <string>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

void f(const std::string& name) { std::cout << "hello " << name << "\n"; }
// Lets spawn and forkserver children find f by name.
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Process p(f, "bob");
  p.start();
  p.join();
}
