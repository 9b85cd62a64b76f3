// What uncontended lock pairs cost on this CPU at the very least: loops of
// the atomic read-modify-writes a lock needs, on one cache line, with no
// other work. Each figure is the best of many short timed chunks, so that a
// busy machine's preemptions do not count.
//
//   bazel run -c opt //synchronize/internal:atomic_floor
//
// It also says whether the kernel offers membarrier(GLOBAL_EXPEDITED) and
// what one costs (the asymmetric fence a store-released lock would need on
// its contended path).
#include <linux/membarrier.h>
#include <semaphore.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace {

alignas(64) std::atomic<uint64_t> g_word64{1};
alignas(64) std::atomic<uint32_t> g_word{1};
alignas(64) std::atomic<uint32_t> g_waiters{0};

// Millions of operations per second, best of 3000 chunks of 20000.
template <class F>
double Rate(F body) {
  constexpr long kChunk = 20000;
  double best = 1e30;
  for (int r = 0; r < 3000; ++r) {
    auto start = std::chrono::steady_clock::now();
    body(kChunk);
    double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    if (s < best) best = s;
  }
  return kChunk / best / 1e6;
}

}  // namespace

int main() {
  std::printf("one lock cmpxchg:                %6.1f M/s\n", Rate([](long n) {
                for (long i = 0; i < n; ++i) {
                  uint32_t e = 1;
                  g_word.compare_exchange_strong(e, 1,
                                                 std::memory_order_acquire);
                }
              }));
  std::printf(
      "cmpxchg64 + xadd64 (glibc-like): %6.1f M pairs/s\n", Rate([](long n) {
        for (long i = 0; i < n; ++i) {
          uint64_t e = 1;
          g_word64.compare_exchange_strong(e, 0, std::memory_order_acquire);
          g_word64.fetch_add(1, std::memory_order_release);
        }
      }));
  std::printf(
      "cmpxchg + xchg (our Lock):       %6.1f M pairs/s\n", Rate([](long n) {
        for (long i = 0; i < n; ++i) {
          uint32_t e = 1;
          g_word.compare_exchange_strong(e, 0, std::memory_order_acquire);
          g_word.exchange(1, std::memory_order_release);
        }
      }));
  std::printf(
      "cmpxchg + store + waiter load:   %6.1f M pairs/s\n", Rate([](long n) {
        for (long i = 0; i < n; ++i) {
          uint32_t e = 1;
          g_word.compare_exchange_strong(e, 0, std::memory_order_acquire);
          g_word.store(1, std::memory_order_release);
          if (g_waiters.load(std::memory_order_relaxed)) asm volatile("");
        }
      }));
  sem_t sem;
  sem_init(&sem, 1, 1);
  std::printf("glibc sem_wait + sem_post:       %6.1f M pairs/s\n",
              Rate([&](long n) {
                for (long i = 0; i < n; ++i) {
                  sem_wait(&sem);
                  sem_post(&sem);
                }
              }));
  sem_destroy(&sem);

  long query = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  bool global = query > 0 && (query & MEMBARRIER_CMD_GLOBAL_EXPEDITED);
  std::printf("membarrier GLOBAL_EXPEDITED:     %s\n",
              global ? "supported" : "not supported");
  if (global && syscall(SYS_membarrier,
                        MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) {
      syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
    }
    std::printf("  one call:                      %6.1f us\n",
                std::chrono::duration<double, std::micro>(
                    std::chrono::steady_clock::now() - start)
                        .count() /
                    1000);
  }
  return 0;
}
