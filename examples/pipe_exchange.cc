// Exchanging objects between processes: Pipes.
//
//   from multiprocessing import Process, Pipe
//
//   def f(conn):
//       conn.send([42, None, 'hello'])
//       conn.close()
//
//   if __name__ == '__main__':
//       parent_conn, child_conn = Pipe()
//       p = Process(target=f, args=(child_conn,))
//       p.start()
//       print(parent_conn.recv())   # prints "[42, None, 'hello']"
//       p.join()
//
// A Python list of mixed types is a reduction::Object in C++.
#include <iostream>

#include "connection/connection.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/object.h"

namespace mp = multiprocessing;
using mp::reduction::Object;

void f(mp::Connection conn) {
  conn.send(Object::list({42, nullptr, "hello"}));
  conn.close();
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto [parent_conn, child_conn] = mp::Pipe();
  mp::Process p(f, child_conn);
  p.start();
  std::cout << mp::reduction::str(parent_conn.recv())
            << "\n";  // prints "[42, None, 'hello']"
  p.join();
}
