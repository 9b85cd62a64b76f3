// Using a remote manager: one client puts 'hello' into the server's queue.
//
//   >>> from multiprocessing.managers import BaseManager
//   >>> class QueueManager(BaseManager): pass
//   >>> QueueManager.register('get_queue')
//   >>> m = QueueManager(address=('foo.bar.org', 50000),
//   authkey=b'abracadabra')
//   >>> m.connect()
//   >>> queue = m.get_queue()
//   >>> queue.put('hello')
//
// The server here is on this machine (127.0.0.1); an optional argument
// replaces the port 50000.
#include <cstdlib>

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
  QueueManager m(mp::connection::Address("127.0.0.1", port), "abracadabra");
  m.register_("get_queue");
  m.connect();
  auto queue = m.create<managers::QueueProxy>("get_queue");
  queue.put("hello");
}
