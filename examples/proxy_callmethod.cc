// BaseProxy._callmethod.
//
//   >>> l = manager.list(range(10))
//   >>> l._callmethod('__len__')
//   10
//   >>> l._callmethod('__getitem__', (slice(2, 7),)) # equivalent to l[2:7]
//   [2, 3, 4, 5, 6]
//   >>> l._callmethod('__getitem__', (20,))          # equivalent to l[20]
//   Traceback (most recent call last):
//   ...
//   IndexError: list index out of range
#include <iostream>
#include <numeric>
#include <vector>

#include "errors/errors.h"
#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;
using mp::managers::slice;

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto manager = mp::Manager();
  std::vector<int> range(10);
  std::iota(range.begin(), range.end(), 0);
  auto l = manager.list(range);
  std::cout << repr(l._callmethod("__len__")) << "\n";
  std::cout << repr(l._callmethod("__getitem__", slice(2, 7)))
            << "\n";  // l[2:7]
  try {
    l._callmethod("__getitem__", 20);  // equivalent to l[20]
  } catch (const mp::IndexError& e) {
    std::cout << "Traceback (most recent call last):\n...\n"
              << e.python_name() << ": " << e.what() << "\n";
  }
}
