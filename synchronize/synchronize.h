// Process-shared synchronization primitives, as Python's
// multiprocessing.synchronize: Lock, RLock, Semaphore, BoundedSemaphore,
// Condition, Event and Barrier.
//
//   multiprocessing::Lock lock;
//   {
//     std::lock_guard<multiprocessing::Lock> guard(lock);  // Lockable
//     std::cout << "hello world\n";
//   }
//   if (lock.acquire(true, std::chrono::milliseconds(100))) lock.release();
//
// Every object works between threads and between processes: hand it to a
// Process as an argument (it pickles by semaphore name and shared-memory
// descriptor, so spawn and forkserver children reach the same object) or let
// a forked child inherit it. Handles are cheap to copy and share one
// underlying object, as Python references do.
//
// The locks and semaphores are named POSIX semaphores ("/mp-<random>", seen
// as /dev/shm/sem.mp-<random>) unlinked when their creator drops the last
// handle; a resource tracker process unlinks them if the program dies first.
// Condition, Event and Barrier keep their shared state in the shared heap
// and sleep on futexes.
//
// Speed: Lock and RLock are futex mutexes on the semaphore's word, so an
// uncontended acquire is one compare-and-swap and a release one plain store.
// A new lock is also biased to the thread that made it: until any other
// thread or process takes it, that thread acquires and releases it with plain
// stores only (no atomic instruction at all); the first other taker revokes
// the bias once, at the cost of one membarrier system call.
//
// Semantics are Python's: acquire(block, timeout) with a negative timeout
// meaning zero and nullopt meaning forever; releasing an unlocked Lock or
// over-releasing a BoundedSemaphore throws ValueError; an RLock released by
// a thread that does not own it throws AssertionError. A process that dies
// while holding a Lock leaves it held (as in CPython): other processes'
// acquire() with a timeout return false.
#ifndef MULTIPROCESSING_SYNCHRONIZE_SYNCHRONIZE_H_
#define MULTIPROCESSING_SYNCHRONIZE_SYNCHRONIZE_H_

#include <algorithm>
#include <chrono>
#include <climits>
#include <concepts>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include "errors/errors.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"
#include "synchronize/internal/semlock.h"

namespace multiprocessing {

namespace internal {
class SharedBlock;
struct SyncAccess;
}  // namespace internal

namespace synchronize {

// Python's timeout: seconds as any std::chrono duration; nullopt blocks.
using Timeout = std::optional<std::chrono::duration<double>>;

namespace internal {
inline std::optional<double> Seconds(const Timeout& timeout) {
  if (!timeout) return std::nullopt;
  return timeout->count();
}
}  // namespace internal

// A non-recursive lock: any process or thread may release it.
class Lock {
 public:
  Lock();
  // Blocks until the lock is free (or `timeout` passes: false), then takes
  // it. With block=false, takes it only if it is free.
  [[gnu::always_inline]] bool acquire(bool block = true,
                                      Timeout timeout = std::nullopt) {
    return sem_->Acquire(block, internal::Seconds(timeout));
  }
  // ValueError if the lock is not held.
  [[gnu::always_inline]] void release() { sem_->Release(); }

  // Lockable.
  [[gnu::always_inline]] void lock() { sem_->Acquire(true, std::nullopt); }
  [[gnu::always_inline]] bool try_lock() {
    return sem_->Acquire(false, std::nullopt);
  }
  [[gnu::always_inline]] void unlock() { sem_->Release(); }

  // "<Lock(owner=None)>", "<Lock(owner=MainProcess)>", owner=SomeOtherThread
  // / SomeOtherProcess.
  std::string repr() const { return sem_->LockRepr(); }

  friend bool operator==(const Lock& a, const Lock& b) {
    return a.sem_ == b.sem_;
  }

 private:
  friend struct multiprocessing::internal::SyncAccess;
  explicit Lock(std::shared_ptr<multiprocessing::internal::SemLock> sem)
      : sem_(std::move(sem)) {}
  std::shared_ptr<multiprocessing::internal::SemLock> sem_;
};

// A recursive lock, owned by one thread of one process at a time; the owner
// may acquire it again and must release it as many times.
class RLock {
 public:
  RLock();
  [[gnu::always_inline]] bool acquire(bool block = true,
                                      Timeout timeout = std::nullopt) {
    return sem_->Acquire(block, internal::Seconds(timeout));
  }
  // AssertionError unless the calling thread owns the lock.
  [[gnu::always_inline]] void release() { sem_->Release(); }

  [[gnu::always_inline]] void lock() { sem_->Acquire(true, std::nullopt); }
  [[gnu::always_inline]] bool try_lock() {
    return sem_->Acquire(false, std::nullopt);
  }
  [[gnu::always_inline]] void unlock() { sem_->Release(); }

  // "<RLock(None, 0)>", "<RLock(MainProcess, 2)>".
  std::string repr() const { return sem_->RLockRepr(); }

  friend bool operator==(const RLock& a, const RLock& b) {
    return a.sem_ == b.sem_;
  }

 private:
  friend struct multiprocessing::internal::SyncAccess;
  explicit RLock(std::shared_ptr<multiprocessing::internal::SemLock> sem)
      : sem_(std::move(sem)) {}
  std::shared_ptr<multiprocessing::internal::SemLock> sem_;
};

// A counting semaphore.
class Semaphore {
 public:
  // ValueError for a negative value.
  explicit Semaphore(int value = 1);
  bool acquire(bool block = true, Timeout timeout = std::nullopt) {
    return sem_->Acquire(block, internal::Seconds(timeout));
  }
  void release() { sem_->Release(); }
  void lock() { sem_->Acquire(true, std::nullopt); }
  bool try_lock() { return sem_->Acquire(false, std::nullopt); }
  void unlock() { sem_->Release(); }
  int get_value() const { return sem_->GetValue(); }
  // "<Semaphore(value=3)>".
  std::string repr() const;

 protected:
  friend struct multiprocessing::internal::SyncAccess;
  explicit Semaphore(std::shared_ptr<multiprocessing::internal::SemLock> sem)
      : sem_(std::move(sem)) {}
  std::shared_ptr<multiprocessing::internal::SemLock> sem_;
};

// A semaphore whose release() throws ValueError above its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(int value = 1);
  // "<BoundedSemaphore(value=1, maxvalue=2)>".
  std::string repr() const;

 private:
  friend struct multiprocessing::internal::SyncAccess;
  explicit BoundedSemaphore(
      std::shared_ptr<multiprocessing::internal::SemLock> sem)
      : Semaphore(std::move(sem)) {}
};

// A condition variable over a Lock or RLock (a new RLock by default).
class Condition {
 public:
  Condition();
  explicit Condition(Lock lock);
  explicit Condition(RLock lock);

  bool acquire(bool block = true, Timeout timeout = std::nullopt) {
    return lock_->Acquire(block, internal::Seconds(timeout));
  }
  void release() { lock_->Release(); }
  void lock() { lock_->Acquire(true, std::nullopt); }
  bool try_lock() { return lock_->Acquire(false, std::nullopt); }
  void unlock() { lock_->Release(); }

  // Releases the lock (however deep an RLock is held), sleeps until
  // notified or `timeout` passes, and reacquires the lock. Returns false on
  // timeout. AssertionError unless the caller holds the lock.
  bool wait(Timeout timeout = std::nullopt);
  // Waits until `predicate()` is truthy or `timeout` passes; returns the
  // last value of `predicate()`.
  template <class Predicate>
  auto wait_for(Predicate predicate, Timeout timeout = std::nullopt)
      -> decltype(predicate());
  // Wakes at most `n` waiters (possibly more, as Python allows); the caller
  // must hold the lock (AssertionError).
  void notify(int n = 1);
  void notify_all();

  // True when the lock is an RLock (the default), false for a Lock.
  bool has_rlock() const {
    return lock_->kind() ==
           multiprocessing::internal::SemLock::Kind::kRecursiveMutex;
  }

  // "<Condition(<RLock(None, 0)>, 0)>": the lock and the number of waiters.
  std::string repr() const;

 private:
  friend struct multiprocessing::internal::SyncAccess;
  struct State;
  Condition(std::shared_ptr<multiprocessing::internal::SemLock> lock,
            std::shared_ptr<multiprocessing::internal::SharedBlock> block);
  State* state() const { return state_; }
  void Notify(unsigned n);

  std::shared_ptr<multiprocessing::internal::SemLock> lock_;
  std::shared_ptr<multiprocessing::internal::SharedBlock> block_;
  State* state_;
};

// A flag processes can wait for.
class Event {
 public:
  Event();
  bool is_set() const;
  // Sets the flag and wakes every waiter.
  void set();
  void clear();
  // Blocks until the flag is set or `timeout` passes; returns the flag.
  bool wait(Timeout timeout = std::nullopt);
  // "<Event at 0x7f... unset>".
  std::string repr() const;

 private:
  friend struct multiprocessing::internal::SyncAccess;
  struct State;
  explicit Event(std::shared_ptr<multiprocessing::internal::SharedBlock> block);
  std::shared_ptr<multiprocessing::internal::SharedBlock> block_;
  State* state_;
  bool fork_context_ = false;  // as SemLock::fork_context()
};

// A barrier for a fixed number of parties, as threading.Barrier. The action
// runs in one of the waiting processes (the last to arrive) when all parties
// have arrived. Any callable taking no arguments works in processes started
// by fork; to cross a spawn or forkserver boundary it must be a function
// registered with MP_REGISTER_FUNCTION (anything else is a PicklingError
// when the barrier is pickled for such a child).
class Barrier {
 public:
  // Its result, if any, is ignored.
  using Action = std::function<void()>;
  // ValueError unless parties >= 1.
  explicit Barrier(int parties, Action action = nullptr,
                   Timeout timeout = std::nullopt);
  // A plain function: it travels to spawn and forkserver children by its
  // registered name.
  template <class R>
  Barrier(int parties, R (*action)(), Timeout timeout = std::nullopt)
      : Barrier(parties, action ? Action(action) : Action(), timeout) {
    if (action != nullptr) {
      action_address_ = reduction::internal::FunctionAddress(action);
    }
  }
  // Waits until all parties arrived; returns this party's index (0 ..
  // parties-1, distinct per party). BrokenBarrierError when the barrier is
  // broken, reset or aborted while waiting, or `timeout` (else the
  // barrier's default timeout) passes — which breaks it.
  int wait(Timeout timeout = std::nullopt);
  // Back to the initial state; current waiters get BrokenBarrierError.
  void reset();
  // Breaks the barrier: current and future waiters get BrokenBarrierError.
  void abort();
  int parties() const { return parties_; }
  int n_waiting() const;
  bool broken() const;
  const Action& action() const { return action_; }
  Timeout timeout() const { return timeout_; }
  // "<multiprocessing.synchronize.Barrier at 0x...: waiters=0/2>".
  std::string repr() const;

 private:
  friend struct multiprocessing::internal::SyncAccess;
  struct State;
  Barrier(int parties, Action action, Timeout timeout, Condition cond,
          std::shared_ptr<multiprocessing::internal::SharedBlock> block);
  void Enter();
  void Release();
  void Wait(Timeout timeout);
  void Exit();
  void Break();

  int parties_;
  Action action_;
  // The function pointer behind action_, when it is one (for pickling it by
  // its registered name); null for other callables.
  const void* action_address_ = nullptr;
  Timeout timeout_;
  Condition cond_;
  std::shared_ptr<multiprocessing::internal::SharedBlock> block_;
  State* state_;
};

template <class T>
concept HasRepr = requires(const T& t) {
  { t.repr() } -> std::convertible_to<std::string>;
};

// Prints repr(), as Python's print().
template <class T>
requires HasRepr<T> &&
    (std::is_same_v<T, Lock> || std::is_same_v<T, RLock> ||
     std::is_base_of_v<Semaphore, T> || std::is_same_v<T, Condition> ||
     std::is_same_v<T, Event> || std::is_same_v<T, Barrier>)std::ostream&
    operator<<(std::ostream& os, const T& object) {
  return os << object.repr();
}

// ---------------------------------------------------------------------------

template <class Predicate>
auto Condition::wait_for(Predicate predicate, Timeout timeout)
    -> decltype(predicate()) {
  auto result = predicate();
  if (result) return result;
  std::optional<std::chrono::steady_clock::time_point> end;
  if (timeout) {
    end = std::chrono::steady_clock::now() +
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
              std::max(*timeout, std::chrono::duration<double>(0)));
  }
  Timeout wait_time;
  while (!result) {
    if (end) {
      wait_time = *end - std::chrono::steady_clock::now();
      if (wait_time->count() <= 0) break;
    }
    wait(wait_time);
    result = predicate();
  }
  return result;
}

}  // namespace synchronize

// The top-level names, as Python's multiprocessing.Lock etc.
using synchronize::Barrier;
using synchronize::BoundedSemaphore;
using synchronize::Condition;
using synchronize::Event;
using synchronize::Lock;
using synchronize::RLock;
using synchronize::Semaphore;

namespace internal {
// Access to the pieces of the primitives, for pickling and for sharedctypes.
struct SyncAccess {
  template <class T>
  static const std::shared_ptr<SemLock>& Sem(const T& lock) {
    return lock.sem_;
  }
  template <class T>
  static T FromSem(std::shared_ptr<SemLock> sem) {
    return T(std::move(sem));
  }
  static const std::shared_ptr<SemLock>& ConditionLock(
      const synchronize::Condition& c) {
    return c.lock_;
  }
  static const std::shared_ptr<SharedBlock>& ConditionBlock(
      const synchronize::Condition& c) {
    return c.block_;
  }
  static synchronize::Condition MakeCondition(std::shared_ptr<SemLock> lock,
                                              std::shared_ptr<SharedBlock> b) {
    return synchronize::Condition(std::move(lock), std::move(b));
  }
  static const std::shared_ptr<SharedBlock>& EventBlock(
      const synchronize::Event& e) {
    return e.block_;
  }
  static bool EventForkContext(const synchronize::Event& e) {
    return e.fork_context_;
  }
  static synchronize::Event MakeEvent(std::shared_ptr<SharedBlock> b) {
    return synchronize::Event(std::move(b));
  }
  static const synchronize::Condition& BarrierCondition(
      const synchronize::Barrier& b) {
    return b.cond_;
  }
  static const std::shared_ptr<SharedBlock>& BarrierBlock(
      const synchronize::Barrier& b) {
    return b.block_;
  }
  static const void* BarrierActionAddress(const synchronize::Barrier& b) {
    return b.action_address_;
  }
  static synchronize::Barrier MakeBarrier(int parties,
                                          synchronize::Barrier::Action action,
                                          const void* action_address,
                                          synchronize::Timeout timeout,
                                          synchronize::Condition cond,
                                          std::shared_ptr<SharedBlock> b) {
    synchronize::Barrier barrier(parties, std::move(action), timeout,
                                 std::move(cond), std::move(b));
    barrier.action_address_ = action_address;
    return barrier;
  }
};

// Throws RuntimeError when an object made by a "fork" context is pickled
// for a spawn or forkserver child, as CPython does.
void CheckSharedWithForkOnly(bool fork_context);

// Pickling pieces shared with sharedctypes: a semaphore travels as (name,
// kind, maxvalue); a shared block as (descriptor index, offset, size) with
// its arena's descriptor out of band.
void SaveSemLock(reduction::Writer& w, const SemLock& sem);
std::shared_ptr<SemLock> LoadSemLock(reduction::Reader& r);
void SaveBlock(reduction::Writer& w, const SharedBlock& block);
std::shared_ptr<SharedBlock> LoadBlock(reduction::Reader& r);
}  // namespace internal

}  // namespace multiprocessing

namespace multiprocessing::reduction {
// The primitives pickle by reference to the same underlying objects (the
// semaphore's name, the shared state's descriptor), so a spawn or forkserver
// child gets handles on the very lock, condition, ... of its parent. A
// Barrier's action travels by its registered name (PicklingError if it is
// not registered with MP_REGISTER_FUNCTION).
template <class T>
requires(std::is_same_v<T, synchronize::Lock> ||
         std::is_same_v<T, synchronize::RLock> ||
         std::is_same_v<T, synchronize::Semaphore> ||
         std::is_same_v<T, synchronize::BoundedSemaphore>) struct Pickler<T> {
  static void Save(Writer& w, const T& v) {
    multiprocessing::internal::SaveSemLock(
        w, *multiprocessing::internal::SyncAccess::Sem(v));
  }
  static T Load(Reader& r) {
    auto sem = multiprocessing::internal::LoadSemLock(r);
    using Kind = multiprocessing::internal::SemLock::Kind;
    bool recursive = sem->kind() == Kind::kRecursiveMutex;
    bool want_recursive = std::is_same_v<T, synchronize::RLock>;
    bool want_lock = std::is_same_v<T, synchronize::Lock> ||
                     std::is_same_v<T, synchronize::RLock>;
    if (recursive != want_recursive || (want_lock && sem->maxvalue() != 1)) {
      throw TypeError(
          "the pickled semaphore is not of the expected kind (Lock, RLock, "
          "Semaphore or BoundedSemaphore)");
    }
    return multiprocessing::internal::SyncAccess::FromSem<T>(std::move(sem));
  }
};
template <>
struct Pickler<synchronize::Condition> {
  static void Save(Writer& w, const synchronize::Condition& c);
  static synchronize::Condition Load(Reader& r);
};
template <>
struct Pickler<synchronize::Event> {
  static void Save(Writer& w, const synchronize::Event& e);
  static synchronize::Event Load(Reader& r);
};
template <>
struct Pickler<synchronize::Barrier> {
  static void Save(Writer& w, const synchronize::Barrier& b);
  static synchronize::Barrier Load(Reader& r);
};
}  // namespace multiprocessing::reduction

namespace multiprocessing::internal {
// ctx.Lock(), ctx.RLock(), ... (process/context.h).
struct ContextSynchronize {
  static synchronize::Lock Lock() { return synchronize::Lock(); }
  static synchronize::RLock RLock() { return synchronize::RLock(); }
  static synchronize::Semaphore Semaphore(int value) {
    return synchronize::Semaphore(value);
  }
  static synchronize::BoundedSemaphore BoundedSemaphore(int value) {
    return synchronize::BoundedSemaphore(value);
  }
  template <class... L>
  static synchronize::Condition Condition(L&&... lock) {
    return synchronize::Condition(std::forward<L>(lock)...);
  }
  static synchronize::Event Event() { return synchronize::Event(); }
  template <class... A>
  static synchronize::Barrier Barrier(A&&... args) {
    return synchronize::Barrier(std::forward<A>(args)...);
  }
};
}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_SYNCHRONIZE_SYNCHRONIZE_H_
