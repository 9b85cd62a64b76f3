// Logging: multiprocessing's logger writing to stderr, and what a manager
// logs over its life.
//
//   >>> import multiprocessing, logging
//   >>> logger = multiprocessing.log_to_stderr()
//   >>> logger.setLevel(logging.INFO)
//   >>> logger.warning('doomed')
//   [WARNING/MainProcess] doomed
//   >>> m = multiprocessing.Manager()
//   [INFO/SyncManager-...] child process calling self.run()
//   [INFO/SyncManager-...] created temp directory /.../pymp-...
//   [INFO/SyncManager-...] manager serving at '/.../listener-...'
//   >>> del m
//   [INFO/MainProcess] sending shutdown message to manager
//   [INFO/SyncManager-...] manager exiting with exitcode 0
#include "logging/logging.h"
#include "managers/managers.h"
#include "process/context.h"

namespace mp = multiprocessing;

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  auto& logger = mp::log_to_stderr();
  logger.setLevel(mp::logging::INFO);
  logger.warning("doomed");
  { auto m = mp::Manager(); }  // del m
}
