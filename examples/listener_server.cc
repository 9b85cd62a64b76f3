// Listeners and Clients: the server.
//
//   from multiprocessing.connection import Listener
//   from array import array
//
//   address = ('localhost', 6000)     # family is deduced to be 'AF_INET'
//
//   with Listener(address, authkey=b'secret password') as listener:
//       with listener.accept() as conn:
//           print('connection accepted from', listener.last_accepted)
//
//           conn.send([2.25, None, 'junk', float])
//
//           conn.send_bytes(b'hello')
//
//           conn.send_bytes(array('i', [42, 1729]))
//
// `float`, the type object, is Object::builtin_type("float"): it pickles as
// the global builtins.float, so a Python client receives the type itself. An
// optional argument replaces the port (0 picks a free one); the listening
// address goes to stderr so that a client can be pointed at it.
#include <array>
#include <cstdint>
#include <iostream>
#include <string>

#include "connection/listener.h"
#include "reduction/object.h"

namespace mp = multiprocessing;
using mp::connection::Address;
using mp::connection::Listener;
using mp::reduction::Object;

int main(int argc, char** argv) {
  const Address address("localhost", argc > 1 ? std::stoi(argv[1]) : 6000);

  Listener listener(address, {.authkey = "secret password"});
  std::cerr << "listening on " << listener.address() << std::endl;
  {
    mp::Connection conn = listener.accept();
    std::cout << "connection accepted from " << *listener.last_accepted()
              << std::endl;

    conn.send(
        Object::list({2.25, nullptr, "junk", Object::builtin_type("float")}));

    conn.send_bytes("hello");

    conn.send_bytes(std::array<std::int32_t, 2>{42, 1729});
  }
}
