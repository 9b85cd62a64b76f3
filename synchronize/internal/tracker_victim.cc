// A program that creates semaphores and shared state, prints the resource
// tracker's pid and the semaphore names, then waits to be killed. The
// resource tracker test SIGKILLs it and checks the tracker cleans up.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "shared_memory/shared_memory.h"
#include "synchronize/internal/resource_tracker.h"
#include "synchronize/internal/semlock.h"
#include "synchronize/synchronize.h"

int main() {
  multiprocessing::Lock lock;
  multiprocessing::RLock rlock;
  multiprocessing::Semaphore semaphore(2);
  multiprocessing::Condition condition;
  multiprocessing::Event event;
  multiprocessing::shared_memory::SharedMemory shm(
      {.create = true, .size = 4096});
  lock.acquire();  // dies holding it
  std::string line = std::to_string(
      multiprocessing::internal::resource_tracker::tracker_pid());
  for (const auto* sem :
       {&multiprocessing::internal::SyncAccess::Sem(lock),
        &multiprocessing::internal::SyncAccess::Sem(rlock),
        &multiprocessing::internal::SyncAccess::Sem(semaphore),
        &multiprocessing::internal::SyncAccess::ConditionLock(condition)}) {
    line += " " + (*sem)->name();
  }
  line += " shm:" + shm.name();
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
