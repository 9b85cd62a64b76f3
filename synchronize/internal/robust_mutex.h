// A mutex in memory shared between processes that survives the death of its
// holder, for the rings under Pipe() and Queue.
//
//   RobustMutex* m = ...;  // in shared memory; zero bytes are a free mutex
//   EnableLightFences();   // in every process that uses it (membarrier.h)
//   switch (Lock(m, deadline)) {
//     case LockResult::kOwnerDied: ... repair what the dead holder left ...
//     case LockResult::kOk: ... critical section ...; Unlock(m); break;
//     case LockResult::kTimeout: ...
//   }
//
// Why not a robust pthread mutex: its release is an atomic exchange, which
// stalls the releasing core until every store of the critical section (a whole
// message copied into the ring) has left it. Here the release is a plain store;
// a thread about to sleep pays instead, with a HeavyFence (membarrier.h).
//
// The word holds the holder's thread id. A waiter that has slept a while
// without being woken checks whether that thread still exists (/proc); if not,
// it takes the mutex over and is told so. That takes up to ~100 ms, where the
// kernel's robust futexes react at once, and a thread id reused within that
// time would go unnoticed (the mutex then waits for the new thread). A thread
// killed while asleep on the mutex stays counted in `sleepers`, which only
// costs every later release a needless wake-up call.
#ifndef MULTIPROCESSING_SYNCHRONIZE_INTERNAL_ROBUST_MUTEX_H_
#define MULTIPROCESSING_SYNCHRONIZE_INTERNAL_ROBUST_MUTEX_H_

#include <atomic>
#include <cstdint>

#include "synchronize/internal/futex.h"
#include "synchronize/internal/membarrier.h"

namespace multiprocessing::internal {

struct RobustMutex {
  std::atomic<uint32_t> owner;     // the holder's thread id; 0 when free
  std::atomic<uint32_t> sleepers;  // threads asleep (or about to be) on it
};

enum class LockResult { kOk, kOwnerDied, kTimeout };

LockResult LockSlow(RobustMutex* m, const Deadline& deadline);

// Takes `m`, waiting until `deadline`. kOwnerDied: taken from a holder that
// died; what it protects may be half-changed.
inline LockResult Lock(RobustMutex* m, const Deadline& deadline) {
  uint32_t expected = 0;
  if (m->owner.compare_exchange_strong(expected, Tid(),
                                       std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
    return LockResult::kOk;
  }
  return LockSlow(m, deadline);
}

// Takes `m` if it is free now (never from a dead holder).
inline bool TryLock(RobustMutex* m) {
  uint32_t expected = 0;
  return m->owner.compare_exchange_strong(
      expected, Tid(), std::memory_order_acquire, std::memory_order_relaxed);
}

inline void Unlock(RobustMutex* m) {
  m->owner.store(0, std::memory_order_release);
  // Orders the store before the read of `sleepers`; a sleeper's HeavyFence
  // does the rest (see LockSlow).
  LightFence();
  if (m->sleepers.load(std::memory_order_relaxed) != 0) FutexWake(&m->owner, 1);
}

// Whether thread `tid` has exited (for tests).
bool ThreadGone(uint32_t tid);

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_SYNCHRONIZE_INTERNAL_ROBUST_MUTEX_H_
