#include "synchronize/internal/futex.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <mutex>

namespace multiprocessing::internal {

__thread uint32_t t_tid = 0;

namespace {
// The forking thread has a new id in the child.
void ForgetTidInChild() { t_tid = 0; }
std::once_flag g_tid_atfork_once;
}  // namespace

uint32_t CacheTid() {
  std::call_once(g_tid_atfork_once,
                 [] { pthread_atfork(nullptr, nullptr, &ForgetTidInChild); });
  t_tid = static_cast<uint32_t>(syscall(SYS_gettid));
  return t_tid;
}

Deadline DeadlineAfter(std::optional<double> seconds) {
  if (!seconds) return std::nullopt;
  double s = std::isnan(*seconds) ? 0 : std::max(0.0, *seconds);
  s = std::min(s, 3.0e9);  // about a century
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double whole = std::floor(s);
  timespec deadline;
  deadline.tv_sec = now.tv_sec + static_cast<time_t>(whole);
  deadline.tv_nsec = now.tv_nsec + static_cast<long>((s - whole) * 1e9);
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec += 1;
    deadline.tv_nsec -= 1000000000L;
  }
  return deadline;
}

bool Expired(const Deadline& deadline) {
  if (!deadline) return false;
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > deadline->tv_sec ||
         (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

timespec SliceOf(const Deadline& deadline, double seconds) {
  timespec slice = *DeadlineAfter(seconds);
  if (deadline && (deadline->tv_sec < slice.tv_sec ||
                   (deadline->tv_sec == slice.tv_sec &&
                    deadline->tv_nsec < slice.tv_nsec))) {
    return *deadline;
  }
  return slice;
}

}  // namespace multiprocessing::internal
