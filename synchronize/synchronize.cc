#include "synchronize/synchronize.h"

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <string>
#include <tuple>

#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"
#include "synchronize/internal/futex.h"
#include "synchronize/internal/heap.h"

namespace multiprocessing::synchronize {

using multiprocessing::internal::Deadline;
using multiprocessing::internal::DeadlineAfter;
using multiprocessing::internal::FutexWait;
using multiprocessing::internal::FutexWake;
using multiprocessing::internal::SemLock;
using multiprocessing::internal::SharedBlock;

namespace {

std::string Address(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%#zx", reinterpret_cast<size_t>(p));
  return buf;
}

// A short spin before sleeping: a notifier usually releases the lock or
// bumps the word within a microsecond or two, far cheaper than a futex
// sleep and wake-up.
template <class Done>
bool SpinUntil(Done done) {
  for (int i = 0; i < 200; ++i) {
    if (done()) return true;
    __builtin_ia32_pause();
  }
  return done();
}

std::string CurrentProcessName() { return current_process().name(); }

// Reprs name the owning process as Python does.
[[maybe_unused]] const bool g_provider_installed = [] {
  multiprocessing::internal::g_process_name_provider = &CurrentProcessName;
  return true;
}();

// A new semaphore, marked when a "fork" context's factory makes it.
std::shared_ptr<SemLock> NewSemLock(SemLock::Kind kind, int value,
                                    int maxvalue) {
  std::shared_ptr<SemLock> sem = SemLock::Create(kind, value, maxvalue);
  if (multiprocessing::internal::CreatingStartMethod() == "fork") {
    sem->set_fork_context();
  }
  return sem;
}

}  // namespace

// ---- Lock, RLock, Semaphore, BoundedSemaphore

Lock::Lock() : sem_(NewSemLock(SemLock::Kind::kSemaphore, 1, 1)) {}

RLock::RLock() : sem_(NewSemLock(SemLock::Kind::kRecursiveMutex, 1, 1)) {}

Semaphore::Semaphore(int value)
    : sem_(NewSemLock(SemLock::Kind::kSemaphore, value,
                      SemLock::kSemValueMax)) {}

std::string Semaphore::repr() const {
  return "<Semaphore(value=" + std::to_string(sem_->GetValue()) + ")>";
}

BoundedSemaphore::BoundedSemaphore(int value)
    : Semaphore(NewSemLock(SemLock::Kind::kSemaphore, value,
                           value < 1 ? 1 : value)) {}

std::string BoundedSemaphore::repr() const {
  return "<BoundedSemaphore(value=" + std::to_string(sem_->GetValue()) +
         ", maxvalue=" + std::to_string(sem_->maxvalue()) + ")>";
}

// ---- Condition
//
// Shared state, changed under the condition's lock except where noted:
//   seq      bumped by every notify that wakes someone; waiters sleep on it.
//   waiting  waiters not yet granted a wake-up.
//   tokens   wake-ups granted and not yet taken (taken without the lock).
// A waiter takes a token only after seq moved past the value it saw when it
// started waiting, so a notify wakes waiters that were already waiting, and
// each token wakes exactly one of them.

struct Condition::State {
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> waiting;
  std::atomic<uint32_t> tokens;
};

namespace {
bool TakeToken(std::atomic<uint32_t>& tokens) {
  uint32_t t = tokens.load(std::memory_order_acquire);
  while (t > 0) {
    if (tokens.compare_exchange_weak(t, t - 1, std::memory_order_acq_rel)) {
      return true;
    }
  }
  return false;
}
}  // namespace

Condition::Condition() : Condition(RLock()) {}

Condition::Condition(Lock lock)
    : Condition(multiprocessing::internal::SyncAccess::Sem(lock),
                SharedBlock::Allocate(sizeof(State))) {}

Condition::Condition(RLock lock)
    : Condition(multiprocessing::internal::SyncAccess::Sem(lock),
                SharedBlock::Allocate(sizeof(State))) {}

Condition::Condition(std::shared_ptr<SemLock> lock,
                     std::shared_ptr<SharedBlock> block)
    : lock_(std::move(lock)),
      block_(std::move(block)),
      state_(static_cast<State*>(block_->data())) {
  if (block_->size() < sizeof(State)) {
    throw ValueError("Condition: shared state block too small");
  }
}

bool Condition::wait(Timeout timeout) {
  if (!lock_->IsMine()) {
    throw AssertionError("must acquire() condition before using wait()");
  }
  State& s = *state_;
  uint32_t seen = s.seq.load(std::memory_order_acquire);
  const uint32_t registered = seen;
  s.waiting.fetch_add(1, std::memory_order_relaxed);
  int count = lock_->ReleaseSave();
  Deadline deadline = DeadlineAfter(internal::Seconds(timeout));
  bool notified = false;
  for (;;) {
    uint32_t now = s.seq.load(std::memory_order_acquire);
    if (now != seen) {
      if (TakeToken(s.tokens)) {
        notified = true;
        break;
      }
      seen = now;  // the wake-ups went to others: wait for the next notify
      continue;
    }
    if (SpinUntil(
            [&] { return s.seq.load(std::memory_order_acquire) != seen; })) {
      continue;
    }
    if (!FutexWait(&s.seq, seen, deadline)) break;  // timed out
  }
  lock_->AcquireRestore(count);
  if (!notified) {
    // Timed out. A notify may have granted us a token meanwhile; with the
    // lock held nothing else can change the counts.
    if (s.seq.load(std::memory_order_acquire) != registered &&
        TakeToken(s.tokens)) {
      notified = true;
    } else {
      s.waiting.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  return notified;
}

void Condition::Notify(unsigned n) {
  if (!lock_->IsMine()) throw AssertionError("lock is not owned");
  State& s = *state_;
  uint32_t waiting = s.waiting.load(std::memory_order_relaxed);
  uint32_t k = std::min<uint32_t>(waiting, n);
  if (k == 0) return;
  s.waiting.store(waiting - k, std::memory_order_relaxed);
  s.tokens.fetch_add(k, std::memory_order_release);
  s.seq.fetch_add(1, std::memory_order_release);
  FutexWake(&s.seq, k >= INT_MAX ? INT_MAX : static_cast<int>(k));
}

void Condition::notify(int n) {
  if (n < 0) throw ValueError("notify(n): n must be >= 0");
  Notify(static_cast<unsigned>(n));
}

void Condition::notify_all() { Notify(UINT_MAX); }

std::string Condition::repr() const {
  std::string lock = has_rlock() ? lock_->RLockRepr() : lock_->LockRepr();
  return "<Condition(" + lock + ", " +
         std::to_string(state_->waiting.load(std::memory_order_relaxed)) + ")>";
}

// ---- Event
//
// word = generation * 2 + flag; set() bumps the generation, so a waiter
// wakes for every set() even if clear() follows at once (it then returns
// the flag: false, as CPython's).

struct Event::State {
  std::atomic<uint32_t> word;
  std::atomic<uint32_t> sleepers;
};

Event::Event() : Event(SharedBlock::Allocate(sizeof(State))) {
  fork_context_ = multiprocessing::internal::CreatingStartMethod() == "fork";
}

Event::Event(std::shared_ptr<SharedBlock> block)
    : block_(std::move(block)), state_(static_cast<State*>(block_->data())) {
  if (block_->size() < sizeof(State)) {
    throw ValueError("Event: shared state block too small");
  }
}

bool Event::is_set() const {
  return (state_->word.load(std::memory_order_acquire) & 1) != 0;
}

void Event::set() {
  State& s = *state_;
  uint32_t w = s.word.load(std::memory_order_relaxed);
  while ((w & 1) == 0) {
    if (s.word.compare_exchange_weak(w, (w | 1) + 2,
                                     std::memory_order_seq_cst)) {
      if (s.sleepers.load(std::memory_order_seq_cst) > 0) {
        FutexWake(&s.word, INT_MAX);
      }
      return;
    }
  }
}

void Event::clear() {
  state_->word.fetch_and(~uint32_t{1}, std::memory_order_acq_rel);
}

bool Event::wait(Timeout timeout) {
  State& s = *state_;
  uint32_t w = s.word.load(std::memory_order_acquire);
  if (w & 1) return true;
  const uint32_t generation = w >> 1;
  Deadline deadline = DeadlineAfter(internal::Seconds(timeout));
  s.sleepers.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    w = s.word.load(std::memory_order_seq_cst);
    if ((w & 1) || (w >> 1) != generation) break;
    if (!FutexWait(&s.word, w, deadline)) break;
  }
  s.sleepers.fetch_sub(1, std::memory_order_relaxed);
  return is_set();
}

std::string Event::repr() const {
  return "<Event at " + Address(state_) + (is_set() ? " set>" : " unset>");
}

// ---- Barrier (threading.Barrier's algorithm over a process-shared
// Condition; state: 0 filling, 1 draining, -1 resetting, -2 broken).

struct Barrier::State {
  std::atomic<int32_t> state;
  std::atomic<int32_t> count;
};

Barrier::Barrier(int parties, Action action, Timeout timeout)
    : Barrier(parties, std::move(action), timeout, Condition(),
              SharedBlock::Allocate(sizeof(State))) {}

Barrier::Barrier(int parties, Action action, Timeout timeout, Condition cond,
                 std::shared_ptr<SharedBlock> block)
    : parties_(parties),
      action_(std::move(action)),
      timeout_(timeout),
      cond_(std::move(cond)),
      block_(std::move(block)),
      state_(static_cast<State*>(block_->data())) {
  if (parties < 1) throw ValueError("parties must be >= 1");
  if (block_->size() < sizeof(State)) {
    throw ValueError("Barrier: shared state block too small");
  }
}

int Barrier::wait(Timeout timeout) {
  if (!timeout) timeout = timeout_;
  std::lock_guard<Condition> guard(cond_);
  Enter();
  int index = state_->count.load(std::memory_order_relaxed);
  state_->count.store(index + 1, std::memory_order_relaxed);
  try {
    if (index + 1 == parties_) {
      Release();
    } else {
      Wait(timeout);
    }
  } catch (...) {
    state_->count.fetch_sub(1, std::memory_order_relaxed);
    Exit();
    throw;
  }
  state_->count.fetch_sub(1, std::memory_order_relaxed);
  Exit();
  return index;
}

void Barrier::Enter() {
  // Wait while a previous cycle drains or resets.
  while (state_->state.load() == -1 || state_->state.load() == 1) {
    cond_.wait();
  }
  if (state_->state.load() < 0) {
    throw BrokenBarrierError(
        "the barrier is broken (aborted, reset or timed "
        "out); call reset() to use it again");
  }
}

void Barrier::Release() {
  try {
    if (action_) action_();
    state_->state.store(1);
    cond_.notify_all();
  } catch (...) {
    Break();
    throw;
  }
}

void Barrier::Wait(Timeout timeout) {
  bool done =
      cond_.wait_for([&] { return state_->state.load() != 0; }, timeout);
  if (!done) {
    Break();
    throw BrokenBarrierError(
        "Barrier.wait() timed out; the barrier is now "
        "broken");
  }
  if (state_->state.load() < 0) {
    throw BrokenBarrierError(
        "the barrier was broken (aborted, reset or timed "
        "out) while waiting");
  }
}

void Barrier::Exit() {
  if (state_->count.load() == 0) {
    int32_t st = state_->state.load();
    if (st == -1 || st == 1) {
      state_->state.store(0);
      cond_.notify_all();
    }
  }
}

void Barrier::Break() {
  state_->state.store(-2);
  cond_.notify_all();
}

void Barrier::reset() {
  std::lock_guard<Condition> guard(cond_);
  if (state_->count.load() > 0) {
    int32_t st = state_->state.load();
    if (st == 0 || st == -2) {
      state_->state.store(-1);  // drained by the last waiter to leave
    }
  } else {
    state_->state.store(0);
  }
  cond_.notify_all();
}

void Barrier::abort() {
  std::lock_guard<Condition> guard(cond_);
  Break();
}

int Barrier::n_waiting() const {
  return state_->state.load() == 0 ? state_->count.load() : 0;
}

bool Barrier::broken() const { return state_->state.load() == -2; }

std::string Barrier::repr() const {
  std::string head =
      "<multiprocessing.synchronize.Barrier at " + Address(state_) + ": ";
  if (broken()) return head + "broken>";
  return head + "waiters=" + std::to_string(n_waiting()) + "/" +
         std::to_string(parties_) + ">";
}

}  // namespace multiprocessing::synchronize

// ---- Pickling

namespace multiprocessing::internal {

void CheckSharedWithForkOnly(bool fork_context) {
  if (!fork_context || SpawningStartMethod().empty()) return;
  throw RuntimeError(
      "an object made by a fork context (its lock or semaphore) is being "
      "shared with a process started by the " +
      SpawningStartMethod() +
      " method, which is not supported (as in CPython); make the objects "
      "and the Process with the same context");
}

void SaveSemLock(reduction::Writer& w, const SemLock& sem) {
  CheckSharedWithForkOnly(sem.fork_context());
  // By name and by descriptor: the receiver maps the descriptor, so it does
  // not depend on the name surviving until it runs.
  int fd = sem.DupFd();
  size_t index;
  try {
    index = w.add_fd(fd);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  w.save(std::make_tuple(sem.name(), static_cast<int>(sem.kind()),
                         sem.maxvalue(), static_cast<uint64_t>(index)));
}

std::shared_ptr<SemLock> LoadSemLock(reduction::Reader& r) {
  auto [name, kind, maxvalue, index] =
      r.load<std::tuple<std::string, int, int, uint64_t>>();
  if (kind != static_cast<int>(SemLock::Kind::kRecursiveMutex) &&
      kind != static_cast<int>(SemLock::Kind::kSemaphore)) {
    throw ValueError("unrecognized semaphore kind " + std::to_string(kind));
  }
  int fd = r.dup_fd(index);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  return SemLock::OpenFd(name, fd, static_cast<SemLock::Kind>(kind), maxvalue);
}

void SaveBlock(reduction::Writer& w, const SharedBlock& block) {
  size_t index = w.add_fd(block.fd());
  w.save(std::make_tuple(static_cast<uint64_t>(index),
                         static_cast<uint64_t>(block.offset()),
                         static_cast<uint64_t>(block.size())));
}

std::shared_ptr<SharedBlock> LoadBlock(reduction::Reader& r) {
  auto [index, offset, size] =
      r.load<std::tuple<uint64_t, uint64_t, uint64_t>>();
  int fd = r.dup_fd(index);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  return SharedBlock::Rebuild(fd, offset, size);
}

}  // namespace multiprocessing::internal

namespace multiprocessing::reduction {

using multiprocessing::internal::LoadBlock;
using multiprocessing::internal::LoadSemLock;
using multiprocessing::internal::SaveBlock;
using multiprocessing::internal::SaveSemLock;
using multiprocessing::internal::SyncAccess;

void Pickler<synchronize::Condition>::Save(Writer& w,
                                           const synchronize::Condition& c) {
  w.begin_tuple();
  SaveSemLock(w, *SyncAccess::ConditionLock(c));
  SaveBlock(w, *SyncAccess::ConditionBlock(c));
  w.end_tuple();
}

synchronize::Condition Pickler<synchronize::Condition>::Load(Reader& r) {
  std::shared_ptr<multiprocessing::internal::SemLock> lock;
  std::shared_ptr<multiprocessing::internal::SharedBlock> block;
  int n = 0;
  r.read_sequence(
      Reader::kTuple,
      [&] {
        if (n == 0) {
          lock = LoadSemLock(r);
        } else if (n == 1) {
          block = LoadBlock(r);
        } else {
          r.fail_type("a Condition (lock, state)");
        }
        ++n;
      },
      [&](size_t keep) { n = static_cast<int>(keep); });
  if (!lock || !block || lock->maxvalue() != 1) {
    throw TypeError("a pickled Condition needs a Lock or RLock and its state");
  }
  return SyncAccess::MakeCondition(std::move(lock), std::move(block));
}

void Pickler<synchronize::Event>::Save(Writer& w, const synchronize::Event& e) {
  multiprocessing::internal::CheckSharedWithForkOnly(
      SyncAccess::EventForkContext(e));
  SaveBlock(w, *SyncAccess::EventBlock(e));
}

synchronize::Event Pickler<synchronize::Event>::Load(Reader& r) {
  return SyncAccess::MakeEvent(LoadBlock(r));
}

void Pickler<synchronize::Barrier>::Save(Writer& w,
                                         const synchronize::Barrier& b) {
  w.begin_tuple();
  w.write_int(b.parties());
  if (b.action()) {
    const void* address = SyncAccess::BarrierActionAddress(b);
    if (address == nullptr) {
      throw PicklingError(
          "the Barrier's action is not a plain function, so it cannot be "
          "pickled for a spawn or forkserver child; pass a function "
          "registered with MP_REGISTER_FUNCTION, or use the fork start "
          "method");
    }
    const RegisteredFunction* f = FindFunction(address);
    if (f == nullptr) reduction::internal::FunctionNotRegistered(address);
    w.write_str(f->name);
  } else {
    w.write_none();
  }
  if (b.timeout()) {
    w.write_float(b.timeout()->count());
  } else {
    w.write_none();
  }
  w.save(SyncAccess::BarrierCondition(b));
  SaveBlock(w, *SyncAccess::BarrierBlock(b));
  w.end_tuple();
}

synchronize::Barrier Pickler<synchronize::Barrier>::Load(Reader& r) {
  int parties = 0;
  synchronize::Barrier::Action action;
  const void* action_address = nullptr;
  synchronize::Timeout timeout;
  std::optional<synchronize::Condition> cond;
  std::shared_ptr<multiprocessing::internal::SharedBlock> block;
  int n = 0;
  r.read_sequence(
      Reader::kTuple,
      [&] {
        switch (n++) {
          case 0:
            parties = r.read_int<int>();
            break;
          case 1:
            if (r.next_is_none()) {
              r.read_none();
            } else {
              std::string name = r.read_str();
              const RegisteredFunction* f = FindFunction(name);
              if (f == nullptr) {
                throw UnpicklingError("Barrier action '" + name +
                                      "' is not registered in this program");
              }
              // Through the registry's pickled call, which knows the
              // function's real type (its result may be any value).
              action = [f] {
                f->call_pickled(dumps(std::tuple<>()), nullptr, nullptr);
              };
              action_address = f->address;
            }
            break;
          case 2:
            if (r.next_is_none()) {
              r.read_none();
            } else {
              timeout = std::chrono::duration<double>(r.read_float());
            }
            break;
          case 3:
            cond = r.load<synchronize::Condition>();
            break;
          case 4:
            block = LoadBlock(r);
            break;
          default:
            r.fail_type("a Barrier (parties, action, timeout, cond, state)");
        }
      },
      [&](size_t keep) { n = static_cast<int>(keep); });
  if (!cond || !block) {
    throw TypeError("a pickled Barrier needs its condition and state");
  }
  return SyncAccess::MakeBarrier(parties, std::move(action), action_address,
                                 timeout, std::move(*cond), std::move(block));
}

}  // namespace multiprocessing::reduction
