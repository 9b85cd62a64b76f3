// Exits with a live daemonic child and a live non-daemonic child, for
// process_exit_test: `process_exit_helper METHOD MARKER_PATH`.
//
// Prints the two children's pids; the daemonic child would sleep forever, the
// other writes MARKER_PATH after a moment of work. With logging at INFO on
// stderr, the exit function's actions are visible.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "logging/logging.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

void SleepForever() {
  for (;;) ::pause();
}
MP_REGISTER_FUNCTION(SleepForever);

void WorkThenWriteMarker(std::string path) {
  // Still busy when main() returns: the exit function must wait for it.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) mp::exit(3);
  ::close(fd);
}
MP_REGISTER_FUNCTION(WorkThenWriteMarker);

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc != 3) {
    std::cerr << "usage: process_exit_helper METHOD MARKER_PATH\n";
    return 2;
  }
  mp::log_to_stderr(mp::logging::INFO);
  mp::set_start_method(argv[1]);
  mp::Process daemon({.daemon = true}, SleepForever);
  daemon.start();
  mp::Process worker(WorkThenWriteMarker, std::string(argv[2]));
  worker.start();
  std::cout << *daemon.pid() << "\n" << *worker.pid() << std::endl;
  return 0;
}
