// Examples: customized managers and proxies (mp_newtype).
//
// Foo is registered twice: as 'Foo1' with its public methods f and g exposed
// (the default), as 'Foo2' with g and _h. baz, Python's generator, becomes a
// class with a __next__ method that raises StopIteration at the end, and a
// GeneratorProxy iterating over it. Python's operator module becomes a class
// with the two functions the example calls (pow works on 128-bit ints, so
// 2 ** 94 is exact as in Python).
//
// The methods print from the manager's process; they flush so that their
// lines come in call order.
#include <algorithm>
#include <cassert>
#include <iostream>
#include <string>
#include <vector>

#include "absl/numeric/int128.h"
#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;
namespace managers = mp::managers;

struct Foo {
  void f() { std::cout << "you called Foo.f()" << std::endl; }
  void g() { std::cout << "you called Foo.g()" << std::endl; }
  void _h() { std::cout << "you called Foo._h()" << std::endl; }
};
MP_EXPOSE(Foo, f, g, _h);

// A simple generator: yields i*i for i in range(10).
struct Baz {
  int i = 0;
  int next() {
    if (i >= 10) throw managers::StopIteration();
    int v = i * i;
    ++i;
    return v;
  }
};
MP_EXPOSE_METHODS(Baz, managers::Method<&Baz::next>("__next__"));

Baz baz() { return Baz{}; }

// Proxy type for generator objects.
class GeneratorProxy : public managers::BaseProxy {
 public:
  static constexpr const char* kProxyName = "GeneratorProxy";
  using BaseProxy::BaseProxy;
  // What Python's GeneratorProxy._exposed_ says.
  static std::vector<std::string> exposed() { return {"__next__"}; }
  // Python's for-loop over the proxy: next() until StopIteration.
  template <class F>
  void for_each(F&& body) const {
    for (;;) {
      int value;
      try {
        value = _callmethod<int>("__next__");
      } catch (const managers::StopIteration&) {
        return;
      }
      body(value);
    }
  }
};

// The operator module's functions that the example calls.
struct Operator {
  absl::int128 add(absl::int128 a, absl::int128 b) { return a + b; }
  absl::int128 pow(absl::int128 a, int64_t b) {
    absl::int128 r = 1;
    while (b-- > 0) r *= a;
    return r;
  }
};
MP_EXPOSE(Operator, add, pow);

// Function to return the operator module.
Operator get_operator_module() { return Operator{}; }

class MyManager : public managers::BaseManager {
 public:
  MyManager() {
    // register the Foo class; make `f()` and `g()` accessible via proxy
    register_("Foo1", managers::Factory<Foo>());
    // register the Foo class; make `g()` and `_h()` accessible via proxy
    register_("Foo2", managers::Factory<Foo>(),
              {.exposed = std::vector<std::string>{"g", "_h"}});
    // register the generator function baz; use `GeneratorProxy` to make
    // proxies
    register_("baz", managers::FromFunction(&baz),
              {.exposed = GeneratorProxy::exposed()});
    // register get_operator_module(); make public functions accessible via
    // proxy
    register_("operator", managers::FromFunction(&get_operator_module));
  }
};

std::string PyList(std::vector<std::string> names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) {
    out += (i ? ", '" : "'") + names[i] + "'";
  }
  return out + "]";
}

void test() {
  MyManager manager;
  manager.start();

  std::cout << std::string(20, '-') << std::endl;

  auto f1 = manager.create("Foo1");
  f1._callmethod<void>("f");
  f1._callmethod<void>("g");
  auto e1 = f1._exposed_();
  std::sort(e1.begin(), e1.end());
  assert(std::find(e1.begin(), e1.end(), "_h") == e1.end());
  assert((e1 == std::vector<std::string>{"f", "g"}));

  std::cout << std::string(20, '-') << std::endl;

  auto f2 = manager.create("Foo2");
  f2._callmethod<void>("g");
  f2._callmethod<void>("_h");
  auto e2 = f2._exposed_();
  std::sort(e2.begin(), e2.end());
  assert((e2 == std::vector<std::string>{"_h", "g"}));

  std::cout << std::string(20, '-') << std::endl;

  auto it = manager.create<GeneratorProxy>("baz");
  it.for_each([](int i) { std::cout << "<" << i << "> "; });
  std::cout << std::endl;

  std::cout << std::string(20, '-') << std::endl;

  auto op = manager.create("operator");
  std::cout << "op.add(23, 45) = "
            << repr(op._callmethod("add", absl::int128(23), absl::int128(45)))
            << std::endl;
  std::cout << "op.pow(2, 94) = "
            << repr(op._callmethod("pow", absl::int128(2), int64_t{94}))
            << std::endl;
  std::cout << "op._exposed_ = " << PyList(op._exposed_()) << std::endl;
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  test();
}
