// Using a remote manager: another client gets what the first one put.
//
//   >>> from multiprocessing.managers import BaseManager
//   >>> class QueueManager(BaseManager): pass
//   >>> QueueManager.register('get_queue')
//   >>> m = QueueManager(address=('foo.bar.org', 50000),
//   authkey=b'abracadabra')
//   >>> m.connect()
//   >>> queue = m.get_queue()
//   >>> queue.get()
//   'hello'
//
// The server here is on this machine (127.0.0.1). Optional arguments
// replace the port 50000 and the authkey (to see a wrong key refused).
#include <cstdlib>
#include <iostream>
#include <string>

#include "errors/errors.h"
#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;
namespace managers = mp::managers;

class QueueManager : public managers::BaseManager {
 public:
  using BaseManager::BaseManager;
};

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  int port = argc > 1 ? std::atoi(argv[1]) : 50000;
  std::string authkey = argc > 2 ? argv[2] : "abracadabra";
  try {
    QueueManager m(mp::connection::Address("127.0.0.1", port), authkey);
    m.register_("get_queue");
    m.connect();
    auto queue = m.create<managers::QueueProxy>("get_queue");
    std::cout << repr(queue.get()) << "\n";
  } catch (const mp::Exception& e) {
    std::cerr << e.python_name() << ": " << e.what() << "\n";
    return 1;
  }
}
