// Proxy Objects: a proxy sent to its own manager stands for the referent,
// so one shared object can contain another.
//
//   >>> a = manager.list()
//   >>> b = manager.list()
//   >>> a.append(b)         # referent of a now contains referent of b
//   >>> print(a, b)
//   [[]] []
//   >>> b.append('hello')
//   >>> print(a, b)
//   [['hello']] ['hello']
#include <iostream>

#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto manager = mp::Manager();
  auto a = manager.list();
  auto b = manager.list();
  a.append(b);  // referent of a now contains referent of b
  std::cout << a << " " << b << "\n";
  b.append("hello");
  std::cout << a << " " << b << "\n";
}
