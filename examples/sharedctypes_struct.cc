// The multiprocessing.sharedctypes module: ctypes objects, including a
// structure, modified by a child process.
//
//   from multiprocessing import Process, Lock
//   from multiprocessing.sharedctypes import Value, Array
//   from ctypes import Structure, c_double
//
//   class Point(Structure):
//       _fields_ = [('x', c_double), ('y', c_double)]
//
//   def modify(n, x, s, A):
//       n.value **= 2
//       x.value **= 2
//       s.value = s.value.upper()
//       for a in A:
//           a.x **= 2
//           a.y **= 2
//
//   if __name__ == '__main__':
//       lock = Lock()
//
//       n = Value('i', 7)
//       x = Value(c_double, 1.0/3.0, lock=False)
//       s = Array('c', b'hello world', lock=lock)
//       A = Array(Point, [(1.875,-6.25), (-5.75,2.0), (2.375,9.5)], lock=lock)
//
//       p = Process(target=modify, args=(n, x, s, A))
//       p.start()
//       p.join()
//
//       print(n.value)
//       print(x.value)
//       print(s.value)
//       print([(a.x, a.y) for a in A])
//
// Prints 49, 0.1111111111111111, HELLO WORLD and
// [(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)]. The ctypes
// Structure is a trivially copyable C++ struct. An optional argument selects
// the start method (fork, spawn or forkserver).
#include <cctype>
#include <iostream>
#include <mutex>
#include <utility>
#include <vector>

#include "process/context.h"
#include "process/process.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"
#include "sharedctypes/sharedctypes.h"
#include "synchronize/synchronize.h"

namespace mp = multiprocessing;
namespace sc = multiprocessing::sharedctypes;

struct Point {
  double x;
  double y;
};

void modify(sc::Synchronized<int> n, sc::Synchronized<double> x,
            sc::SynchronizedArray<char> s, sc::SynchronizedArray<Point> A) {
  n.value() = n.get() * n.get();
  x.value() = x.get() * x.get();
  std::string upper = s.value();
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  s.set_value(upper);
  for (auto a : A) {  // each element read and written under A's lock
    Point p = a;
    p.x = p.x * p.x;
    p.y = p.y * p.y;
    a = p;
  }
}
MP_REGISTER_FUNCTION(modify);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 1) mp::set_start_method(argv[1]);
  mp::Lock lock;

  auto n = sc::Value<'i'>(7);
  auto x = sc::Value<double>(1.0 / 3.0, {.lock = false});
  auto s = sc::Array<'c'>("hello world", {.lock = lock});
  auto A = sc::Array<Point>({{1.875, -6.25}, {-5.75, 2.0}, {2.375, 9.5}},
                            {.lock = lock});

  mp::Process p(modify, n, x, s, A);
  p.start();
  p.join();

  std::cout << n.get() << "\n";
  std::cout << mp::reduction::repr(x.get()) << "\n";
  std::cout << s.value() << "\n";
  std::vector<std::pair<double, double>> points;
  for (Point a : A) points.emplace_back(a.x, a.y);
  std::cout << mp::reduction::repr(points) << "\n";
}
