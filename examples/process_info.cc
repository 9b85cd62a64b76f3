// The Process class, expanded to show the process ids involved.
//
//   from multiprocessing import Process
//   import os
//
//   def info(title):
//       print(title)
//       print('module name:', __name__)
//       print('parent process:', os.getppid())
//       print('process id:', os.getpid())
//
//   def f(name):
//       info('function f')
//       print('hello', name)
//
//   if __name__ == '__main__':
//       info('main line')
//       p = Process(target=f, args=('bob',))
//       p.start()
//       p.join()
//
// An optional argument selects the start method (fork, spawn or forkserver).
#include <unistd.h>

#include <iostream>
#include <string>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

// C++ has no module name. Python's __name__ is '__main__' in the main process
// and in fork children, and '__mp_main__' in a child that re-ran the program
// (spawn, forkserver); this says the same.
std::string ModuleName() {
  bool rerun = mp::parent_process().has_value() &&
               mp::get_start_method() != std::string("fork");
  return rerun ? "__mp_main__" : "__main__";
}

void info(const std::string& title) {
  std::cout << title << "\n";
  std::cout << "module name: " << ModuleName() << "\n";
  std::cout << "parent process: " << ::getppid() << "\n";
  std::cout << "process id: " << ::getpid() << "\n";
}

void f(const std::string& name) {
  info("function f");
  std::cout << "hello " << name << "\n";
}
MP_REGISTER_FUNCTION(f);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  info("main line");
  std::cout.flush();
  mp::Process p(f, "bob");
  p.start();
  p.join();
}
