// Depending on a single target: the pipe_exchange example with //connection
// as the program's only dependency (see this package's BUILD.bazel). The
// child is made with POSIX fork() instead of multiprocessing's Process, which
// lives in //process; nothing of process, queues, pool or managers is built.
//
// Prints "[42, None, 'hello']", sent by the child through the pipe.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

#include "connection/connection.h"

namespace mp = multiprocessing;
using mp::reduction::Object;

int main() {
  auto [parent_conn, child_conn] = mp::Pipe();
  std::cout.flush();
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    // The child: send, then leave without running the parent's exit code.
    parent_conn.close();
    child_conn.send(Object::list({42, nullptr, "hello"}));
    child_conn.close();
    _exit(0);
  }
  child_conn.close();
  std::cout << mp::reduction::str(parent_conn.recv()) << "\n";
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 1;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
