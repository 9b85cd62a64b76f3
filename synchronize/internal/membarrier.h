// Asymmetric fences between processes sharing memory.
//
// A handshake between a side that runs often (a lock's release, a producer
// publishing a frame) and a side that runs rarely (a thread about to sleep)
// needs a full fence on each side, so that each sees the other's store before
// its own load. A full fence stalls the frequent side until every store it has
// made (a whole frame, say) has left the core. Here the frequent side pays only
// a compiler barrier (LightFence) and the rare side makes every processor that
// runs a registered process execute a full barrier (HeavyFence, the kernel's
// membarrier), which orders the frequent side's accesses just as well.
//
//   EnableLightFences();           // once per process that uses the handshake
//   frequent: store A; LightFence(); load B;
//   rare:     store B; HeavyFence(); load A;
//
// LightFence is only light in a process that registered (where the kernel
// lacks membarrier it is a real fence), so mixing processes is always safe.
#ifndef MULTIPROCESSING_SYNCHRONIZE_INTERNAL_MEMBARRIER_H_
#define MULTIPROCESSING_SYNCHRONIZE_INTERNAL_MEMBARRIER_H_

#include <atomic>

namespace multiprocessing::internal {

// True once this process is registered for the kernel's global expedited
// membarrier.
extern std::atomic<bool> g_light_fences;

// Registers this process (the first call; forked children register again).
// Returns whether LightFence is light here.
bool EnableLightFences();

// The frequent side's fence: a compiler barrier in a registered process, a
// full fence otherwise.
inline void LightFence() {
  if (g_light_fences.load(std::memory_order_relaxed)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

// The rare side's fence: a full fence here and on every processor running a
// registered process. A system call (a few microseconds) when available.
void HeavyFence();

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_SYNCHRONIZE_INTERNAL_MEMBARRIER_H_
