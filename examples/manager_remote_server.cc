// Using a remote manager: a server for a single shared queue.
//
//   >>> from multiprocessing.managers import BaseManager
//   >>> import queue
//   >>> queue = queue.Queue()
//   >>> class QueueManager(BaseManager): pass
//   >>> QueueManager.register('get_queue', callable=lambda:queue)
//   >>> m = QueueManager(address=('', 50000), authkey=b'abracadabra')
//   >>> s = m.get_server()
//   >>> s.serve_forever()
//
// An optional argument replaces the port 50000 (tests pass a free one).
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
  auto queue = managers::MakeQueue();
  QueueManager m(mp::connection::Address("", port), "abracadabra");
  m.register_("get_queue", managers::Shared(queue));
  managers::Server s = m.get_server();
  s.serve_forever();
}
