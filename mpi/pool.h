// The Pool of pool/pool.h across machines: tasks run on MPI ranks (Open MPI),
// as mpi4py.futures' MPIPoolExecutor does for Python. The API is the same as
// multiprocessing::Pool's (apply, apply_async, map, map_async, imap,
// imap_unordered, starmap, starmap_async, callbacks, chunksize, close,
// terminate, join; the destructor terminates), and so are the functions and
// their pickles: a function registered with MP_REGISTER_FUNCTION for a spawn
// pool runs unchanged here.
//
//   int square(int x) { return x * x; }
//   MP_REGISTER_FUNCTION(square);
//
//   int main(int argc, char** argv) {
//     multiprocessing::mpi::freeze_support(argc, argv);  // workers stay here
//     multiprocessing::mpi::Pool pool({.processes = 4});
//     std::vector<int> squares = pool.map(square, std::vector{1, 2, 3});
//   }
//
// Two ways to start, as mpi4py.futures offers:
//  - dynamic: `./prog` (an MPI singleton) or `mpirun -n 1 prog`: the Pool
//    spawns `processes` workers with MPI_Comm_spawn, running this program
//    again, on the hosts that `host` / `hostfile` (MPI info keys) or the
//    universe (mpirun's hostfile) name. The workers exit when the pool ends.
//  - static: `mpirun -n N prog`: freeze_support() makes ranks 1..N-1 workers
//    and returns on rank 0 only, whose pools use those ranks (`processes`
//    unset: all of them). The workers serve one pool after another and exit
//    when rank 0 exits.
// freeze_support() initialises MPI (MPI_THREAD_MULTIPLE) and finalises it at
// exit; a spawned worker never returns from it. Call it first thing in main().
//
// Failure. Open MPI 4.1 as Debian builds it has no ULFM: an MPI call to a dead
// process is undefined behaviour and usually blocks for ever, and by default
// the runtime aborts the whole job (every rank, the master too) when one
// process exits abnormally. So:
//  - the master never blocks in MPI: every send is MPI_Isend tested until done,
//    every receive an MPI_Improbe poll, all with deadlines;
//  - a watchdog on the master decides that a worker is dead when its process
//    is gone (a worker on the master's host: kill(pid, 0) on the pid it
//    reported, checked every 50 ms) or when it fell silent (any host: a
//    worker's heartbeat thread sends a message every 250 ms;
//    `heartbeat_timeout` without one means dead). The chunks the worker held
//    fail with ProcessError naming it and how it was found dead; the other
//    workers carry on; with none left every pending task fails and the pool
//    is broken (new tasks raise ProcessError). The master never sends to a
//    dead worker again and frees (never disconnects) a communicator with a
//    dead member, so it still exits cleanly.
//  - the runtime must not abort the job: in dynamic mode freeze_support() sets
//    Open MPI's orte_enable_recovery for the singleton's runtime (unless the
//    environment sets it); in static mode run `mpirun --enable-recovery`.
//    Without it Open MPI kills every rank, the master included, within about
//    a second of a worker's death (no hang either, but no ProcessError).
// A task that throws fails with the same Python class as in pool/; `terminate`
// kills busy workers that run on this host (SIGKILL) and abandons the others,
// whose late results are ignored.
//
// Messages carry arguments and results as the pickles themselves (no size cap
// but MPI's int count: 2 GiB a message); ranks must share the byte order and
// the program binary (the same build on every host).
#ifndef MULTIPROCESSING_MPI_POOL_H_
#define MULTIPROCESSING_MPI_POOL_H_

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pool/pool.h"

namespace multiprocessing::mpi {

using pool::AsyncResult;
using pool::Callbacks;
using pool::IMapIterator;
using pool::Initializer;
using pool::MapResult;
using pool::Timeout;

// Initialises MPI and decides this process's role: on a worker (a rank other
// than 0 under `mpirun -n N`, or a process a Pool spawned) it serves tasks and
// exits, never returning; on the master it returns. Idempotent.
void freeze_support(int argc, char** argv);

// This process's rank in MPI_COMM_WORLD (initialising MPI if needed), and the
// world's size: static mode has size() - 1 workers.
int rank();
int size();

struct PoolOptions {
  // Dynamic mode: the number of workers to spawn (unset: the universe's size
  // less one when mpirun gave one, else cpu_count()). Static mode: how many of
  // ranks 1..N-1 to use (unset: all).
  std::optional<int> processes;
  // Run once in each worker when the pool starts (registered function).
  Initializer initializer;
  // Dynamic mode: where to spawn, as MPI_Comm_spawn's info keys "host" (e.g.
  // "node1,node2:4") and "hostfile" (a file of `node slots=N` lines); empty:
  // Open MPI's default (this host, or mpirun's allocation).
  std::string host;
  std::string hostfile;
  // More info keys for MPI_Comm_spawn ("wdir", "env", "map_by", ...).
  std::map<std::string, std::string> info;
  // Dynamic mode: more workers than slots may run (Python's Pool starts as
  // many as asked); false lets Open MPI refuse.
  bool oversubscribe = true;
  // Dynamic mode: the program the workers run (empty: this one) and its
  // arguments (unset: this program's own, after argv[0]). It must call
  // freeze_support() first.
  std::string command;
  std::optional<std::vector<std::string>> args;
  // A worker silent this long (no result, no heartbeat) is taken for dead.
  std::chrono::duration<double> heartbeat_timeout = std::chrono::seconds(10);
  // How long close()/join() and the destructor wait for workers to leave, and
  // spawning for workers to report, before giving up on them.
  std::chrono::duration<double> shutdown_timeout = std::chrono::seconds(30);
};

// multiprocessing::Pool's API with its workers on MPI ranks.
class Pool : public pool::internal::PoolApi {
 public:
  explicit Pool(PoolOptions options = {});
  explicit Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  // terminate() and join(), as Python's __exit__.
  ~Pool();
};

}  // namespace multiprocessing::mpi

#endif  // MULTIPROCESSING_MPI_POOL_H_
