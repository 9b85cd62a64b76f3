// Process and exceptions: example usage of some of the methods of Process.
//
//   >>> import multiprocessing, time, signal
//   >>> p = multiprocessing.Process(target=time.sleep, args=(1000,))
//   >>> print(p, p.is_alive())
//   <Process(Process-1, initial)> False
//   >>> p.start()
//   >>> print(p, p.is_alive())
//   <Process(Process-1, started)> True
//   >>> p.terminate()
//   >>> time.sleep(0.1)
//   >>> print(p, p.is_alive())
//   <Process(Process-1, stopped[SIGTERM])> False
//   >>> p.exitcode == -signal.SIGTERM
//   True
#include <signal.h>
#include <unistd.h>

#include <iostream>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;

// time.sleep
void sleep_seconds(int seconds) { ::sleep(seconds); }
MP_REGISTER_FUNCTION(sleep_seconds);

// Python prints booleans as True / False.
const char* py(bool b) { return b ? "True" : "False"; }

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  mp::Process p(sleep_seconds, 1000);
  std::cout << p << " " << py(p.is_alive()) << "\n";
  p.start();
  std::cout << p << " " << py(p.is_alive()) << "\n";
  p.terminate();
  // The doc sleeps 0.1 s and hopes the child is gone by then; join() waits
  // exactly until it is.
  p.join();
  std::cout << p << " " << py(p.is_alive()) << "\n";
  std::cout << py(p.exitcode() == -SIGTERM) << "\n";
}
