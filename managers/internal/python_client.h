// For tests: runs a CPython script as a client of a manager's server that
// this process serves (in a child), and returns what it printed.
#ifndef MULTIPROCESSING_MANAGERS_INTERNAL_PYTHON_CLIENT_H_
#define MULTIPROCESSING_MANAGERS_INTERNAL_PYTHON_CLIENT_H_

#include <chrono>
#include <cstdio>
#include <string>

#include "managers/managers.h"
#include "process/process.h"

namespace multiprocessing::managers::testing {

inline void ServeForever(Server* server) { server->serve_forever(); }

// Serves `server` in a forked child while `python3 -c script PORT` runs
// (at most 20 seconds); its stdout, and its exit status in *status.
inline std::string RunPythonClient(Server& server, const std::string& script,
                                   int* status) {
  Process serving(ServeForever, &server);
  serving.start();
  std::string command = "timeout 20 python3 -c \"" + script + "\" " +
                        std::to_string(server.address().port());
  std::string text;
  *status = -1;
  if (FILE* out = ::popen(command.c_str(), "r")) {
    char buf[256];
    while (size_t n = std::fread(buf, 1, sizeof(buf), out)) text.append(buf, n);
    *status = ::pclose(out);
  }
  serving.terminate();
  serving.join(std::chrono::seconds(20));
  return text;
}

}  // namespace multiprocessing::managers::testing

#endif  // MULTIPROCESSING_MANAGERS_INTERNAL_PYTHON_CLIENT_H_
