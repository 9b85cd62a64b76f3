// Customized managers: registering a class of one's own.
//
//   from multiprocessing.managers import BaseManager
//
//   class MathsClass:
//       def add(self, x, y):
//           return x + y
//       def mul(self, x, y):
//           return x * y
//
//   class MyManager(BaseManager):
//       pass
//
//   MyManager.register('Maths', MathsClass)
//
//   if __name__ == '__main__':
//       with MyManager() as manager:
//           maths = manager.Maths()
//           print(maths.add(4, 3))         # prints 7
//           print(maths.mul(7, 8))         # prints 56
//
// C++ has no generated methods, so the proxy type spells out the calls
// (Python's AutoProxy makes them from the exposed names).
#include <iostream>

#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;
namespace managers = mp::managers;

struct MathsClass {
  int add(int x, int y) { return x + y; }
  int mul(int x, int y) { return x * y; }
};
MP_EXPOSE(MathsClass, add, mul);

class MathsProxy : public managers::BaseProxy {
 public:
  static constexpr const char* kProxyName = "MathsProxy";
  using BaseProxy::BaseProxy;
  int add(int x, int y) const { return _callmethod<int>("add", x, y); }
  int mul(int x, int y) const { return _callmethod<int>("mul", x, y); }
};

class MyManager : public managers::BaseManager {
 public:
  MyManager() { register_("Maths", managers::Factory<MathsClass>()); }
  MathsProxy Maths() { return create<MathsProxy>("Maths"); }
};

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  MyManager manager;
  manager.start();
  MathsProxy maths = manager.Maths();
  std::cout << maths.add(4, 3) << "\n";  // prints 7
  std::cout << maths.mul(7, 8) << "\n";  // prints 56
}
