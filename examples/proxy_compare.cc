// Proxy Objects, the note on comparisons: proxies do not compare by value.
//
//   >>> manager.list([1,2,3]) == [1,2,3]
//   False
#include <iostream>

#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;
using mp::reduction::Object;

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto manager = mp::Manager();
  bool equal = manager.list(Object::list({1, 2, 3})) == Object::list({1, 2, 3});
  std::cout << (equal ? "True" : "False") << "\n";
}
