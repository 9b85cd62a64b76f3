// SemLock: the named POSIX semaphore under Lock, RLock, Semaphore and
// BoundedSemaphore (CPython's _multiprocessing.SemLock).
//
// The semaphore is created as "/mp-<random>" (visible as
// /dev/shm/sem.mp-<random>), registered with the resource tracker, and
// unlinked when the creating process drops its last handle (or by the
// tracker if the program dies). Other processes reach it by inheriting the
// mapping (fork) or by opening the name (spawn, forkserver); within one
// process every handle for a name shares one SemLock, so ownership of an
// RLock is consistent however the handles arrived.
//
// Who holds the lock is tracked in process-local memory, per thread: a
// thread token that is fresh in every forked child, so a lock held by the
// parent at fork time is not "mine" in the child (CPython resets its count
// after fork the same way).
#ifndef MULTIPROCESSING_SYNCHRONIZE_INTERNAL_SEMLOCK_H_
#define MULTIPROCESSING_SYNCHRONIZE_INTERNAL_SEMLOCK_H_

#include <semaphore.h>
#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "synchronize/internal/futex.h"
#include "synchronize/internal/membarrier.h"

namespace multiprocessing::internal {

// A token for the calling thread, unique within this process and never
// reused in a forked child.
extern __thread uint64_t t_thread_token;  // 0 until first use
uint64_t NewThreadToken();
inline uint64_t ThreadToken() {
  uint64_t token = t_thread_token;
  return token != 0 ? token : NewThreadToken();
}

// Installed by the synchronize library: the current process's name.
extern std::string (*g_process_name_provider)();

// The name of the running process for reprs ("MainProcess"), with
// "|<thread>" appended off the main thread as CPython does.
std::string OwnerName();

class SemLock {
 public:
  enum class Kind : int { kRecursiveMutex = 0, kSemaphore = 1 };
  static constexpr int kSemValueMax = INT_MAX;

  // A new semaphore with initial `value`; `maxvalue` bounds release() (1 for
  // a Lock, `value` for a BoundedSemaphore, kSemValueMax otherwise). Throws
  // ValueError for a negative value, OSError when the system refuses.
  static std::shared_ptr<SemLock> Create(Kind kind, int value, int maxvalue);
  // The semaphore called `name` (from a pickle): the one already open in
  // this process, or opened now. Throws OSError (FileNotFoundError's errno
  // ENOENT) when it no longer exists, ValueError for a malformed name.
  // The semaphore called `name` whose file `fd` (borrowed) refers to: the
  // one already open here, or the file mapped now. Unlike Open it works
  // after the name was unlinked, so a child started by spawn or forkserver
  // reaches the lock even if its creator dropped it meanwhile. Throws
  // ValueError when `fd` is not a semaphore file.
  static std::shared_ptr<SemLock> OpenFd(const std::string& name, int fd,
                                         Kind kind, int maxvalue);
  // A new descriptor (close-on-exec) on the semaphore's file, for sending it
  // to another process. Throws OSError when there is none (the name was
  // unlinked and the semaphore was not received as a descriptor).
  int DupFd() const;

  static std::shared_ptr<SemLock> Open(const std::string& name, Kind kind,
                                       int maxvalue);

  SemLock(const SemLock&) = delete;
  SemLock& operator=(const SemLock&) = delete;
  ~SemLock();

  // Python's acquire(block, timeout): a timeout (seconds) only matters when
  // blocking; negative means zero; nullopt waits forever.
  [[gnu::always_inline]] bool Acquire(bool block,
                                      std::optional<double> timeout) {
    if (!mutex_) return AcquireSemaphore(block, timeout);
    const uint64_t me = ThreadToken();
    if (kind_ == Kind::kRecursiveMutex &&
        owner_.load(std::memory_order_relaxed) == me) {
      count_.store(count_.load(std::memory_order_relaxed) + 1,
                   std::memory_order_relaxed);
      return true;
    }
    if (!(biased_here_ &&
          bias_word()->load(std::memory_order_relaxed) == Tid() &&
          TryBiasedAcquire()) &&
        !MutexAcquire(block, timeout)) {
      return false;
    }
    owner_.store(me, std::memory_order_relaxed);
    count_.store(1, std::memory_order_relaxed);
    return true;
  }
  // Python's release(): AssertionError for an RLock not owned by the caller,
  // ValueError when a (bounded) semaphore or Lock would exceed maxvalue.
  [[gnu::always_inline]] void Release() {
    if (kind_ == Kind::kRecursiveMutex) {
      if (owner_.load(std::memory_order_relaxed) != ThreadToken()) {
        ThrowNotOwned();
      }
      int count = count_.load(std::memory_order_relaxed);
      if (count > 1) {
        count_.store(count - 1, std::memory_order_relaxed);
        return;
      }
    }
    if (!mutex_) return ReleaseSemaphore();
    // A Lock taken elsewhere may legally be released here: then check that
    // it is held at all (racy against a concurrent release of the same Lock,
    // as CPython's check is). The usual case, taken by this thread, is known
    // to be held without reading the word.
    if (count_.load(std::memory_order_relaxed) == 0 && !Held()) {
      ThrowReleasedTooManyTimes();
    }
    // Before the release: once free another thread may take ownership.
    count_.store(0, std::memory_order_relaxed);
    owner_.store(0, std::memory_order_relaxed);
    if (bias_held_word()->load(std::memory_order_relaxed) == kBiasHeld) {
      ReleaseBias();
    } else {
      ReleaseWord();
    }
  }

  // For Condition.wait: releases a Lock / RLock the caller holds, however
  // deep, returning the recursion level to restore; and reacquires it.
  int ReleaseSave() {
    int count = count_.load(std::memory_order_relaxed);
    count_.store(1, std::memory_order_relaxed);
    Release();
    return count;
  }
  void AcquireRestore(int count) {
    Acquire(true, std::nullopt);
    count_.store(count, std::memory_order_relaxed);
  }

  // True when the calling thread holds this Lock / RLock.
  bool IsMine() const {
    return count_.load(std::memory_order_relaxed) > 0 &&
           owner_.load(std::memory_order_relaxed) == ThreadToken();
  }
  // The recursion level of a Lock / RLock in this process (0 if unowned).
  int Count() const { return count_.load(std::memory_order_relaxed); }
  // True when some other thread of this process holds the Lock / RLock.
  bool HeldByOtherThread() const {
    return count_.load(std::memory_order_relaxed) > 0 &&
           owner_.load(std::memory_order_relaxed) != ThreadToken();
  }
  int GetValue() const;
  Kind kind() const { return kind_; }
  int maxvalue() const { return maxvalue_; }
  const std::string& name() const { return name_; }
  // Made by a "fork" context's factory (ctx.Lock(), ...): CPython shares
  // such a semaphore with fork children only, and so does this library.
  bool fork_context() const { return fork_context_; }
  void set_fork_context() { fork_context_ = true; }

  // Python's reprs.
  std::string LockRepr() const;   // <Lock(owner=...)>
  std::string RLockRepr() const;  // <RLock(owner, count)>

 private:
  SemLock(sem_t* sem, std::string name, Kind kind, int maxvalue, bool creator,
          int mapped_fd = -1);
  bool AcquireSlow(bool block, std::optional<double> timeout);

  // Semaphores (maxvalue > 1) run glibc's protocol on its semaphore word
  // (64-bit: the value in the low half, the number of sleepers in the high
  // half), inline for the uncontended paths, so sem_wait and sem_post stay
  // valid on them. Where the layout check at start-up fails, everything
  // calls glibc.
  static bool g_inline_sem;
  static bool InlineLayoutOk();
  std::atomic<uint64_t>* word() const {
    return reinterpret_cast<std::atomic<uint64_t>*>(sem_);
  }
  bool TryWaitFast() {
    if (!g_inline_sem) return sem_trywait(sem_) == 0;
    uint64_t d = word()->load(std::memory_order_relaxed);
    while ((d & 0xffffffffu) != 0) {
      if (word()->compare_exchange_weak(d, d - 1, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        return true;
      }
    }
    errno = EAGAIN;
    return false;
  }
  int ValueFast() const {
    if (!g_inline_sem) return GetValue();
    return static_cast<int>(word()->load(std::memory_order_relaxed) &
                            0x7fffffffu);
  }
  void PostFast() {
    if (!g_inline_sem || maxvalue_ == kSemValueMax) {
      if (sem_post(sem_) != 0) ThrowPostFailed();
      return;
    }
    // Bounded by maxvalue (checked above), so no overflow check is needed.
    uint64_t old = word()->fetch_add(1, std::memory_order_release);
    if ((old >> 32) != 0) WakeOne();
  }
  bool AcquireSemaphore(bool block, std::optional<double> timeout) {
    return TryWaitFast() || AcquireSlow(block, timeout);
  }
  void ReleaseSemaphore() {
    if (maxvalue_ != kSemValueMax && ValueFast() >= maxvalue_) {
      ThrowReleasedTooManyTimes();
    }
    PostFast();
  }

  // Locks (maxvalue 1: Lock, RLock, BoundedSemaphore(1)) are futex mutexes
  // on the same word, in glibc's layout: the value half is 1 free, 0 held;
  // the other half counts sleepers. Acquiring is one compare-and-swap,
  // releasing a plain store and a read of the sleepers' count (see Release),
  // where glibc's sem_post needs a compare-and-swap loop. Every process agrees
  // on the protocol since maxvalue travels with the name.
  static constexpr uint32_t kFree = 1;
  static constexpr uint32_t kLocked = 0;
  std::atomic<uint32_t>* mutex_word() const {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
    return reinterpret_cast<std::atomic<uint32_t>*>(sem_);
  }
  std::atomic<uint32_t>* sleepers_word() const { return mutex_word() + 1; }
  // Frees the mutex word. A plain store: no atomic read-modify-write, so the
  // release does not wait for this core's earlier stores to drain. Sleepers
  // announce themselves in the other half of the word with a HeavyFence,
  // which makes the LightFence enough (membarrier.h).
  [[gnu::always_inline]] void ReleaseWord() {
    mutex_word()->store(kFree, std::memory_order_release);
    LightFence();
    if (sleepers_word()->load(std::memory_order_relaxed) != 0) WakeOne();
  }

  // Biased locking. Even one atomic read-modify-write per acquire costs more
  // than everything else in an uncontended pair, so a new Lock is biased to
  // the thread that made it: that thread takes and releases it with plain
  // stores to a flag, as long as nobody else ever takes it. Two spare words of
  // the semaphore hold the bias (the biased thread's id; 0 once revoked) and
  // the flag (0 free, kBiasTrying, kBiasHeld). The biased thread sets the
  // flag and then checks the bias and the mutex word; any other taker takes
  // the mutex word, then clears the bias and runs a HeavyFence before it
  // checks the flag (a Dekker handshake with asymmetric fences, membarrier.h)
  // and waits for it to clear, letting the word go meanwhile (so that a taker
  // killed while it waits leaves nothing held) and taking it again after. So
  // the first other taker revokes the bias for good, once, and from then on the
  // Lock is the futex mutex above.
  static constexpr uint32_t kBiasTrying = 1;
  static constexpr uint32_t kBiasHeld = 2;
  static_assert(sizeof(sem_t) >= 6 * sizeof(uint32_t));
  std::atomic<uint32_t>* bias_word() const { return mutex_word() + 4; }
  std::atomic<uint32_t>* bias_held_word() const { return mutex_word() + 5; }
  [[gnu::always_inline]] bool TryBiasedAcquire() {
    std::atomic<uint32_t>* held = bias_held_word();
    if (held->load(std::memory_order_acquire) != 0) return false;
    held->store(kBiasTrying, std::memory_order_relaxed);
    // The bias is only ever given where this process registered for
    // HeavyFence, so a compiler barrier is LightFence here.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (mutex_word()->load(std::memory_order_acquire) == kFree &&
        bias_word()->load(std::memory_order_relaxed) == Tid()) {
      held->store(kBiasHeld, std::memory_order_relaxed);
      return true;
    }
    ReleaseBias();
    return false;
  }
  // Clears the bias flag (a release, or a back-off); once the bias is revoked
  // a revoker may be waiting for it.
  [[gnu::always_inline]] void ReleaseBias() {
    bias_held_word()->store(0, std::memory_order_release);
    LightFence();
    if (bias_word()->load(std::memory_order_relaxed) == 0) WakeBiasWaiters();
  }
  // Whether the bias (or its flag) still needs revoking.
  bool BiasPresent() const {
    return (bias_word()->load(std::memory_order_relaxed) |
            bias_held_word()->load(std::memory_order_relaxed)) != 0;
  }
  // The mutex word's path, then revocation of the bias if there is one.
  [[gnu::always_inline]] bool MutexAcquire(bool block,
                                           std::optional<double> timeout) {
    uint32_t expected = kFree;
    if (!mutex_word()->compare_exchange_strong(expected, kLocked,
                                               std::memory_order_acquire,
                                               std::memory_order_relaxed)) {
      return MutexAcquireSlow(block, timeout);
    }
    if (BiasPresent()) return RevokeBias(DeadlineAfter(block ? timeout : 0.0));
    return true;
  }
  // With the mutex word taken: revokes the bias and waits for the biased
  // thread to let go. False (the word released again) on timeout.
  bool RevokeBias(const Deadline& deadline);
  void WakeBiasWaiters();
  bool Held() const {
    return mutex_word()->load(std::memory_order_relaxed) == kLocked ||
           bias_held_word()->load(std::memory_order_relaxed) == kBiasHeld;
  }
  bool MutexAcquireSlow(bool block, std::optional<double> timeout);
  // Takes the mutex word, sleeping until `deadline`; false if it passed.
  bool TakeWordSleeping(const Deadline& deadline);
  void WakeOne();
  [[noreturn]] static void ThrowNotOwned();
  [[noreturn]] static void ThrowReleasedTooManyTimes();
  [[noreturn]] static void ThrowPostFailed();

  sem_t* const sem_;
  const std::string name_;
  const Kind kind_;
  const int maxvalue_;
  const bool mutex_;  // the futex-mutex protocol (maxvalue 1, inline layout)
  const pid_t creator_pid_;  // 0 when opened by name
  // Made in this process (or its fork parent): only then can the bias name
  // one of this process's threads. (A thread id alone could match a thread
  // of another PID namespace that opened the name.)
  bool biased_here_ = false;
  bool fork_context_ = false;
  // >= 0 when the semaphore was mapped from a received descriptor (kept for
  // sending it on); then sem_ is our mapping, not sem_open's.
  const int mapped_fd_;
  // The owning thread's token and the recursion level; maintained for locks
  // (maxvalue 1) only, and only in this process.
  std::atomic<uint64_t> owner_{0};
  std::atomic<int> count_{0};
};

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_SYNCHRONIZE_INTERNAL_SEMLOCK_H_
