// The spawn and forkserver start methods. Internal to //process.
#ifndef MULTIPROCESSING_PROCESS_INTERNAL_SPAWN_H_
#define MULTIPROCESSING_PROCESS_INTERNAL_SPAWN_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "process/internal/popen.h"
#include "process/process.h"

namespace multiprocessing::internal {

// What the parent knows about the child to start.
struct ChildSpec {
  std::string name;
  std::vector<int> identity;
  bool daemon = false;
  std::string authkey;
  std::string parent_name;
  std::string start_method;
};

// argv[1] of a child program ("--multiprocessing-spawn", ...).
bool IsChildMarker(std::string_view arg);

// Runs a spawned child or the fork server, as argv says; never returns.
[[noreturn]] void RunChildProgram(int argc, char** argv);

std::shared_ptr<Popen> LaunchSpawn(const ChildSpec& spec,
                                   PickledTarget& target);
std::shared_ptr<Popen> LaunchForkserver(const ChildSpec& spec,
                                        PickledTarget& target);

// Writes the child's bootstrap data to a new memfd (close-on-exec) and
// returns it.
int WritePreparation(const ChildSpec& spec, const PickledTarget& target);

// The body of a spawned or forkserver child: reads the bootstrap data from
// `data_fd`, becomes the child, runs the target and _exits. A spawned child
// finds its out-of-band fds at 4, 5, ...; a forkserver child gets them in
// `fds`.
[[noreturn]] void RunPreparedChild(int data_fd, std::vector<int> fds,
                                   bool from_forkserver);

// The fork server's loop (forkserver.cc); exits when `alive_fd` reads EOF.
[[noreturn]] void RunForkserver(int listener_fd, int alive_fd);

// argv[0] as given to freeze_support() (context.cc).
std::string ProgramArgv0();

// Starts get_executable() with `args` after argv[0], `fds` renumbered to 3,
// 4, ... and every other fd but 0-2 closed. Returns the pid.
pid_t SpawnProgram(const std::vector<std::string>& args,
                   const std::vector<int>& fds);

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_PROCESS_INTERNAL_SPAWN_H_
