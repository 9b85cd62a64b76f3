// Miscellaneous: freeze_support().
//
//   from multiprocessing import Process, freeze_support
//
//   def f():
//       print('hello world!')
//
//   if __name__ == '__main__':
//       freeze_support()
//       Process(target=f).start()
//
// In C++ freeze_support(argc, argv) is what lets spawn and forkserver
// children run f; the child is joined when main() returns.
#include <iostream>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

void f() { std::cout << "hello world!\n"; }
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  mp::Process(f).start();
}
