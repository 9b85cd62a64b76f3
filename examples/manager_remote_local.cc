// Using a remote manager: local processes can use the served queue too; a
// Worker process puts 'local hello' into it before the server starts.
//
//   >>> from multiprocessing import Process, Queue
//   >>> from multiprocessing.managers import BaseManager
//   >>> class Worker(Process):
//   ...     def __init__(self, q):
//   ...         self.q = q
//   ...         super(Worker, self).__init__()
//   ...     def run(self):
//   ...         self.q.put('local hello')
//   ...
//   >>> queue = Queue()
//   >>> w = Worker(queue)
//   >>> w.start()
//   >>> class QueueManager(BaseManager): pass
//   ...
//   >>> QueueManager.register('get_queue', callable=lambda: queue)
//   >>> m = QueueManager(address=('', 50000), authkey=b'abracadabra')
//   >>> s = m.get_server()
//   >>> s.serve_forever()
//
// Python's server calls the multiprocessing.Queue's methods by name; in C++
// the served object is a small class exposing put and get over that queue.
// An optional argument replaces the port 50000.
#include <cstdlib>
#include <memory>
#include <optional>

#include "managers/managers.h"
#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"

namespace mp = multiprocessing;
namespace managers = mp::managers;
using mp::reduction::Object;

class Worker : public mp::Process {
 public:
  explicit Worker(mp::Queue q) : q_(std::move(q)) {}
  void run() override { q_.put("local hello"); }

 private:
  mp::Queue q_;
};

struct LocalQueue {
  mp::Queue q;
  void put(Object item, bool block, std::optional<double> timeout) {
    q.put(item, block, Seconds(timeout));
  }
  Object get(bool block, std::optional<double> timeout) {
    return q.get(block, Seconds(timeout));
  }
  static mp::queues::Timeout Seconds(std::optional<double> t) {
    if (!t) return std::nullopt;
    return std::chrono::duration<double>(*t);
  }
};
MP_EXPOSE(LocalQueue, get, put);

class QueueManager : public managers::BaseManager {
 public:
  using BaseManager::BaseManager;
};

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  int port = argc > 1 ? std::atoi(argv[1]) : 50000;
  mp::Queue queue;
  Worker w(queue);
  w.start();
  QueueManager m(mp::connection::Address("", port), "abracadabra");
  m.register_(
      "get_queue",
      managers::Shared(std::make_shared<LocalQueue>(LocalQueue{queue})));
  managers::Server s = m.get_server();
  s.serve_forever();
}
