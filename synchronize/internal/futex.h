// Process-shared futex waits and wakes on a 32-bit word in shared memory.
// Used for the Condition, Event and Barrier state that lives in the shared
// heap: the words are keyed by the kernel on the mapping's backing file, so
// the same word is one futex in every process that maps it.
#ifndef MULTIPROCESSING_SYNCHRONIZE_INTERNAL_FUTEX_H_
#define MULTIPROCESSING_SYNCHRONIZE_INTERNAL_FUTEX_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <optional>

namespace multiprocessing::internal {

// An absolute CLOCK_MONOTONIC deadline; nullopt waits forever.
using Deadline = std::optional<timespec>;

// The deadline `seconds` from now (negative counts as zero); nullopt for
// nullopt. Very long timeouts are clamped to about a century.
Deadline DeadlineAfter(std::optional<double> seconds);
// True when `deadline` has passed.
bool Expired(const Deadline& deadline);
// The sooner of `deadline` and `seconds` from now: for sleeping in slices.
timespec SliceOf(const Deadline& deadline, double seconds);

// Sleeps while `*word == expected`, until woken or `deadline`. Returns false
// on timeout; true otherwise (woken, value changed, or interrupted: callers
// re-check their condition).
inline bool FutexWait(std::atomic<uint32_t>* word, uint32_t expected,
                      const Deadline& deadline) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  long rc = syscall(
      SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_BITSET, expected,
      deadline ? &*deadline : nullptr, nullptr, FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

// The calling thread's id (cached; right in forked children too): what a
// futex word records as its holder.
extern __thread uint32_t t_tid;
uint32_t CacheTid();
inline uint32_t Tid() {
  uint32_t tid = t_tid;
  return tid != 0 ? tid : CacheTid();
}

// A spin-wait hint to the processor.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Wakes up to `count` waiters of `word`.
inline void FutexWake(std::atomic<uint32_t>* word, int count) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, count,
          nullptr, nullptr, 0);
}
inline void FutexWakeAll(std::atomic<uint32_t>* word) {
  FutexWake(word, INT32_MAX);
}

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_SYNCHRONIZE_INTERNAL_FUTEX_H_
