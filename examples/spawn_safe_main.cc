// Programming guidelines: safe importing of main module.
//
//   from multiprocessing import Process, freeze_support, set_start_method
//
//   def foo():
//       print('hello')
//
//   if __name__ == '__main__':
//       freeze_support()
//       set_start_method('spawn')
//       p = Process(target=foo)
//       p.start()
//
// The C++ counterpart of the `if __name__ == '__main__'` guard is calling
// freeze_support(argc, argv) first in main(): a spawned child runs foo there
// and exits instead of running the rest of main() again.
#include <iostream>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

void foo() { std::cout << "hello\n"; }
MP_REGISTER_FUNCTION(foo);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  mp::set_start_method("spawn");
  mp::Process p(foo);
  p.start();
}
