// Proxy Objects: a list proxy used like the list.
//
//   >>> from multiprocessing import Manager
//   >>> manager = Manager()
//   >>> l = manager.list([i*i for i in range(10)])
//   >>> print(l)
//   [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//   >>> print(repr(l))
//   <ListProxy object, typeid 'list' at 0x...>
//   >>> l[4]
//   16
//   >>> l[2:5]
//   [4, 9, 16]
#include <iostream>
#include <vector>

#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;
using mp::managers::slice;

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto manager = mp::Manager();
  std::vector<int> squares;
  for (int i = 0; i < 10; ++i) squares.push_back(i * i);
  auto l = manager.list(squares);
  std::cout << l << "\n";
  std::cout << l.repr() << "\n";
  std::cout << repr(l[4].get()) << "\n";
  std::cout << repr(l[slice(2, 5)]) << "\n";
}
