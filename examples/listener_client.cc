// Listeners and Clients: the client.
//
//   from multiprocessing.connection import Client
//   from array import array
//
//   address = ('localhost', 6000)
//
//   with Client(address, authkey=b'secret password') as conn:
//       print(conn.recv())                  # => [2.25, None, 'junk', float]
//
//       print(conn.recv_bytes())            # => 'hello'
//
//       arr = array('i', [0, 0, 0, 0, 0])
//       print(conn.recv_bytes_into(arr))    # => 8
//       print(arr)                          # => array('i', [42, 1729, 0, 0,
//       0])
//
// An optional argument replaces the port.
#include <array>
#include <cstdint>
#include <iostream>
#include <string>

#include "connection/listener.h"
#include "examples/array_repr.h"
#include "reduction/object.h"
#include "reduction/pickle.h"

namespace mp = multiprocessing;
using mp::connection::Address;
using mp::connection::Client;

int main(int argc, char** argv) {
  const Address address("localhost", argc > 1 ? std::stoi(argv[1]) : 6000);

  mp::Connection conn = Client(address, {.authkey = "secret password"});
  std::cout << mp::reduction::str(conn.recv())
            << "\n";  // => [2.25, None, 'junk', <class 'float'>]

  std::cout << mp::reduction::repr(mp::reduction::Bytes{conn.recv_bytes()})
            << "\n";  // => b'hello'

  std::array<std::int32_t, 5> arr = {0, 0, 0, 0, 0};
  std::cout << conn.recv_bytes_into(arr) << "\n";  // => 8
  std::cout << ArrayRepr(arr) << "\n";  // => array('i', [42, 1729, 0, 0, 0])
}
