#include "synchronize/internal/membarrier.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace multiprocessing::internal {

std::atomic<bool> g_light_fences{false};

namespace {

bool GlobalExpeditedSupported() {
  static const bool supported = [] {
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
           (cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0;
  }();
  return supported;
}

bool Register() {
  return GlobalExpeditedSupported() &&
         syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0,
                 0) == 0;
}

// A forked child's registration is not guaranteed by the kernel's
// documentation: register again, before the child can release anything.
void RegisterInChild() {
  if (g_light_fences.load(std::memory_order_relaxed)) {
    g_light_fences.store(Register(), std::memory_order_relaxed);
  }
}

std::once_flag g_once;

}  // namespace

bool EnableLightFences() {
  std::call_once(g_once, [] {
    pthread_atfork(nullptr, nullptr, &RegisterInChild);
    g_light_fences.store(Register(), std::memory_order_relaxed);
  });
  return g_light_fences.load(std::memory_order_relaxed);
}

void HeavyFence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (GlobalExpeditedSupported()) {
    syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
  }
}

}  // namespace multiprocessing::internal
