// Connection Objects: the documentation's example.
//
//   >>> from multiprocessing import Pipe
//   >>> a, b = Pipe()
//   >>> a.send([1, 'hello', None])
//   >>> b.recv()
//   [1, 'hello', None]
//   >>> b.send_bytes(b'thank you')
//   >>> a.recv_bytes()
//   b'thank you'
//   >>> import array
//   >>> arr1 = array.array('i', range(5))
//   >>> arr2 = array.array('i', [0] * 10)
//   >>> a.send_bytes(arr1)
//   >>> count = b.recv_bytes_into(arr2)
//   >>> assert count == len(arr1) * arr1.itemsize
//   >>> arr2
//   array('i', [0, 1, 2, 3, 4, 0, 0, 0, 0, 0])
//
// array.array('i') is a std::array<std::int32_t, N> here; ArrayRepr prints it
// as Python does.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <iostream>

#include "connection/connection.h"
#include "examples/array_repr.h"
#include "reduction/object.h"
#include "reduction/pickle.h"

namespace mp = multiprocessing;
using mp::reduction::Object;

int main() {
  auto [a, b] = mp::Pipe();
  a.send(Object::list({1, "hello", nullptr}));
  std::cout << mp::reduction::repr(b.recv()) << "\n";
  b.send_bytes("thank you");
  std::cout << mp::reduction::repr(mp::reduction::Bytes{a.recv_bytes()})
            << "\n";
  const std::array<std::int32_t, 5> arr1 = {0, 1, 2, 3, 4};
  std::array<std::int32_t, 10> arr2 = {};
  a.send_bytes(arr1);
  const std::size_t count = b.recv_bytes_into(arr2);
  if (count != arr1.size() * sizeof(arr1[0])) {
    std::cerr << "AssertionError: count is " << count << "\n";
    return 1;
  }
  std::cout << ArrayRepr(arr2) << "\n";
}
