#include "synchronize/internal/robust_mutex.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace multiprocessing::internal {

bool ThreadGone(uint32_t tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", tid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // Without /proc nothing can be told: assume it lives.
    return errno == ENOENT || errno == ESRCH
               ? access("/proc/self/stat", R_OK) == 0
               : false;
  }
  char buf[512];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return n == 0 || errno == ESRCH;
  buf[n] = '\0';
  // "tid (comm) S ...": the state follows the last ')', since comm may hold
  // anything. A zombie or dead thread no longer holds anything.
  const char* close_paren = std::strrchr(buf, ')');
  if (close_paren == nullptr || close_paren[1] != ' ') return false;
  const char state = close_paren[2];
  return state == 'Z' || state == 'X' || state == 'x';
}

LockResult LockSlow(RobustMutex* m, const Deadline& deadline) {
  const uint32_t me = Tid();
  // Holders keep the mutex for a frame's copy: spin briefly before sleeping.
  for (int i = 0; i < 200; ++i) {
    CpuRelax();
    uint32_t expected = 0;
    if (m->owner.load(std::memory_order_relaxed) == 0 &&
        m->owner.compare_exchange_strong(expected, me,
                                         std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return LockResult::kOk;
    }
  }
  // Announce the sleep, then make sure every releaser either sees the
  // announcement (and wakes us) or has its release visible to the loop below.
  m->sleepers.fetch_add(1);
  HeavyFence();
  LockResult result = LockResult::kTimeout;
  double slice = 0.001;  // 1 ms, doubling to 100 ms
  for (;;) {
    uint32_t holder = m->owner.load(std::memory_order_relaxed);
    if (holder == 0) {
      if (m->owner.compare_exchange_strong(holder, me,
                                           std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
        result = LockResult::kOk;
        break;
      }
      continue;
    }
    if (Expired(deadline)) break;
    if (!FutexWait(&m->owner, holder, SliceOf(deadline, slice))) {
      // Not woken for a while: is the holder still there?
      if (ThreadGone(holder) && m->owner.compare_exchange_strong(
                                    holder, me, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
        result = LockResult::kOwnerDied;
        break;
      }
      slice = std::min(slice * 2, 0.1);
    }
  }
  m->sleepers.fetch_sub(1);
  return result;
}

}  // namespace multiprocessing::internal
