// multiprocessing for C++: the whole library in one header.
//
//   #include "multiprocessing.h"   // target //:multiprocessing
//
//   int square(int x) { return x * x; }
//   MP_REGISTER_FUNCTION(square);  // lets spawn / forkserver children find it
//
//   int main(int argc, char** argv) {
//     mp::freeze_support(argc, argv);
//     mp::Pool pool({.processes = 5});
//     std::cout << mp::repr(pool.map(square, std::vector<int>{1, 2, 3}))
//               << "\n";   // [1, 4, 9]
//   }
//
// The names are Python's: multiprocessing::Process, Queue, Pipe, Lock, Value,
// Array, Pool, Manager(), ... at the top level, and the modules as namespaces
// (connection, synchronize, sharedctypes, queues, pool, managers, reduction,
// dummy). mp::dummy has the same names over threads of this process, so
// `namespace ns = mp::dummy;` instead of `namespace ns = mp;` turns a program's
// processes into threads. mp::futures holds concurrent.futures' executors
// (ProcessPoolExecutor, ThreadPoolExecutor) over the pools.
// Programs that need less depend on one package instead, e.g. //connection with
// "connection/connection.h".
#ifndef MULTIPROCESSING_MULTIPROCESSING_H_
#define MULTIPROCESSING_MULTIPROCESSING_H_

#include "connection/connection.h"
#include "connection/listener.h"
#include "connection/wait.h"
#include "dummy/dummy.h"
#include "errors/errors.h"
#include "futures/futures.h"
#include "logging/logging.h"
#include "managers/managers.h"
#include "pool/pool.h"
#include "process/context.h"
#include "process/process.h"
#include "process/util.h"
#include "queues/queues.h"
#include "reduction/object.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"
#include "shared_memory/shareable_list.h"
#include "shared_memory/shared_memory.h"
#include "sharedctypes/sharedctypes.h"
#include "synchronize/synchronize.h"

namespace multiprocessing {
// Python's repr() of any picklable value and of Object.
using reduction::repr;
}  // namespace multiprocessing

namespace mp = multiprocessing;

#endif  // MULTIPROCESSING_MULTIPROCESSING_H_
