// The wire format between a process pool and its workers, and the worker's
// main loop. Internal to pool/.
//
// Tasks go to each worker through its own shared-memory ring (the pool decides
// which worker runs what, so that it always knows which tasks a dead worker
// held); results come back through one ring shared by all workers. Each worker
// owns a slot in a shared array where it records the task it is running
// before it runs it, so that a worker killed at any instant is accountable:
// a task in its ring but not in its slot never started and is given to
// another worker; the task in its slot fails unless its result arrived.
#ifndef MULTIPROCESSING_POOL_INTERNAL_WORKER_H_
#define MULTIPROCESSING_POOL_INTERNAL_WORKER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "queues/internal/shm_ring.h"
#include "reduction/pickle.h"
#include "synchronize/internal/futex.h"

namespace multiprocessing::pool::internal {

inline constexpr uint32_t kTaskMagic = 0x4B534154;    // "TASK"
inline constexpr uint32_t kResultMagic = 0x544C5352;  // "RSLT"

enum TaskKind : uint8_t { kRunTask = 1, kExitWorker = 2 };
enum ResultKind : uint8_t {
  kResultOk = 1,
  kResultError = 2,
  kWorkerDied = 3,   // posted by the pool itself, after the worker's results
  kStopHandler = 4,  // posted by the pool to end its result thread
};

struct TaskHeader {
  uint32_t magic;
  uint8_t kind;
  uint8_t unused;
  uint16_t runner_size;
  uint32_t name_size;
  uint32_t unused2;
  uint64_t seq;
  uint64_t address;  // the function under fork when name_size == 0
};

struct ResultHeader {
  uint32_t magic;
  uint8_t kind;
  uint8_t unused[3];
  uint64_t seq;
  uint64_t worker;
  int64_t elapsed_ns;  // the task's run time, for the pool's scheduling
};

// A sleeping reader of a ring and its waker meet here (futex), so that an idle
// reader sleeps at once instead of spinning, which on a small machine would
// take the CPU from the very process it waits for.
struct Doorbell {
  std::atomic<uint32_t> word;
  std::atomic<uint32_t> sleepers;
};

// Waits until `ring` holds a whole frame; false if `timeout` passed first.
// It polls only briefly before sleeping: measured on a busy 2-core machine,
// longer polling (even a budget learnt from recent waits) lost more to the
// CPU time it took from the process being waited for than it saved in
// wake-ups.
template <class RingT>
bool WaitForFrame(const RingT& ring, Doorbell& bell,
                  std::optional<std::chrono::milliseconds> timeout);
// Wakes the reader after a frame was published, if it sleeps.
inline void Ring(Doorbell& bell);

// One per worker, in shared memory; one more after them for the results.
struct alignas(64) WorkerSlot {
  std::atomic<uint64_t> seq;        // the running task, 0 when idle
  std::atomic<int64_t> started_ns;  // CLOCK_MONOTONIC when it started
  std::atomic<uint32_t> ready;      // set once the initializer returned
  Doorbell bell;                    // new tasks (new results, for the last)
};

// A file descriptor passed to a spawned worker.
struct Fd {
  int fd = -1;
};

// What a worker needs; passed as the Process argument under spawn and
// forkserver.
struct WorkerArgs {
  Fd tasks;
  Fd results;
  Fd slots;
  int32_t slot = 0;
  int32_t slot_count = 0;
  uint64_t id = 0;
  int64_t maxtasks = 0;  // 0: unlimited
  int32_t parent = 0;
  std::string initializer;  // registered name, empty: none
  std::string initializer_runner;
  reduction::Bytes initializer_args;  // the pickled tuple
};

// The worker's life: attach, run the initializer, run tasks until told to
// exit, the quota is reached or the pool's process is gone.
void RunWorker(const WorkerArgs& args, const std::function<void()>& init);
// The registered entry point of spawned workers.
void PoolWorkerMain(WorkerArgs args);

int64_t MonotonicNanos();

template <class RingT>
bool WaitForFrame(const RingT& ring, Doorbell& bell,
                  std::optional<std::chrono::milliseconds> timeout) {
  // A few checks first: a busy peer often publishes within a microsecond.
  for (int i = 0; i < 64; ++i) {
    if (!ring.Empty()) return true;
  }
  // The clock is read only when about to sleep.
  ::multiprocessing::internal::Deadline deadline;
  if (timeout) {
    deadline = ::multiprocessing::internal::DeadlineAfter(
        std::chrono::duration<double>(*timeout).count());
  }
  for (;;) {
    uint32_t seen = bell.word.load();
    bell.sleepers.fetch_add(1);
    bool ok = true;
    if (ring.Empty()) {
      ok = ::multiprocessing::internal::FutexWait(&bell.word, seen, deadline);
    }
    bell.sleepers.fetch_sub(1);
    if (!ring.Empty()) return true;
    if (!ok) return false;
  }
}

inline void Ring(Doorbell& bell) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (bell.sleepers.load(std::memory_order_relaxed) != 0) {
    bell.word.fetch_add(1);
    ::multiprocessing::internal::FutexWakeAll(&bell.word);
  }
}

}  // namespace multiprocessing::pool::internal

template <>
struct multiprocessing::reduction::Pickler<
    multiprocessing::pool::internal::Fd> {
  static void Save(Writer& w, const multiprocessing::pool::internal::Fd& v) {
    w.write_uint(w.add_fd(v.fd));
  }
  static multiprocessing::pool::internal::Fd Load(Reader& r) {
    return {r.dup_fd(r.read_int<size_t>())};
  }
};

namespace multiprocessing::pool::internal {
MP_PICKLE_FIELDS(WorkerArgs, tasks, results, slots, slot, slot_count, id,
                 maxtasks, parent, initializer, initializer_runner,
                 initializer_args)
}  // namespace multiprocessing::pool::internal

#endif  // MULTIPROCESSING_POOL_INTERNAL_WORKER_H_
