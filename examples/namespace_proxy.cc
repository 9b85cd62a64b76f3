// Namespace: attributes of a shared namespace; names starting with '_' stay
// on the proxy.
//
//   >>> manager = multiprocessing.Manager()
//   >>> Global = manager.Namespace()
//   >>> Global.x = 10
//   >>> Global.y = 'hello'
//   >>> Global._z = 12.3    # this is an attribute of the proxy
//   >>> print(Global)
//   Namespace(x=10, y='hello')
#include <iostream>

#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto manager = mp::Manager();
  auto Global = manager.Namespace();
  Global["x"] = 10;
  Global["y"] = "hello";
  Global["_z"] = 12.3;  // this is an attribute of the proxy
  std::cout << Global << "\n";
}
