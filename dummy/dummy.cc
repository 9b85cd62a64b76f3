#include "dummy/dummy.h"

#include <cxxabi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <list>
#include <thread>

namespace multiprocessing::dummy {
namespace internal {

// Python's timeouts: none blocks, negative is zero; absurdly long ones are
// capped so that the deadline does not overflow.
std::optional<std::chrono::steady_clock::time_point> EndOf(
    const Timeout& timeout) {
  if (!timeout) return std::nullopt;
  double seconds = std::clamp(timeout->count(), 0.0, 1e9);
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
             std::chrono::duration<double>(seconds));
}

namespace {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;

Deadline DeadlineOf(const Timeout& timeout) { return EndOf(timeout); }

// Waits on `cv` until `ready()` or the deadline; returns ready().
template <class Ready>
bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
               const Deadline& deadline, Ready ready) {
  if (!deadline) {
    cv.wait(lock, ready);
    return true;
  }
  return cv.wait_until(lock, *deadline, ready);
}

int CurrentTid() {
  thread_local const int tid = static_cast<int>(syscall(SYS_gettid));
  return tid;
}

std::string Address(const void* p) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%p", p);
  return buffer;
}

std::string Demangle(const char* name) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status != 0 || demangled == nullptr) return name;
  std::string result(demangled);
  std::free(demangled);
  return result;
}

}  // namespace

// ---- Threads

enum class Status { kInitial, kStarted, kStopped };

struct ThreadState {
  std::mutex mutex;
  std::condition_variable cv;
  std::string class_name = "DummyProcess";
  std::string name;
  bool daemon = false;
  Status status = Status::kInitial;
  int ident = 0;
  std::function<void()> target;
  std::thread thread;
  std::weak_ptr<ThreadState> parent;
  std::vector<std::weak_ptr<ThreadState>> children;
};

namespace {

std::atomic<int> g_counter{0};

thread_local std::shared_ptr<ThreadState> t_current;

std::shared_ptr<ThreadState> Running(std::string class_name, std::string name,
                                     bool daemon) {
  auto state = std::make_shared<ThreadState>();
  state->class_name = std::move(class_name);
  state->name = std::move(name);
  state->daemon = daemon;
  state->status = Status::kStarted;
  state->ident = CurrentTid();
  return state;
}

const std::shared_ptr<ThreadState>& MainState() {
  static const auto* main = new std::shared_ptr<ThreadState>(
      Running("_MainThread", "MainThread", false));
  return *main;
}

std::shared_ptr<ThreadState> CurrentState() {
  if (t_current) return t_current;
  if (CurrentTid() == static_cast<int>(getpid())) {
    t_current = MainState();
  } else {
    t_current =
        Running("_DummyThread", "Dummy-" + std::to_string(++g_counter), true);
  }
  return t_current;
}

// Started non-daemonic threads not joined yet: joined when the program
// exits, as Python's threading does.
struct ExitJoins {
  std::mutex mutex;
  std::vector<std::shared_ptr<ThreadState>> states;
};

ExitJoins& Joins() {
  static ExitJoins* joins = new ExitJoins;
  return *joins;
}

// Joins the OS thread of `state` if it has ended and nobody joined it yet.
void JoinThread(ThreadState& state) {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    thread = std::move(state.thread);
  }
  if (thread.joinable()) thread.join();
}

void JoinAtExit() {
  for (;;) {
    std::shared_ptr<ThreadState> state;
    {
      ExitJoins& joins = Joins();
      std::lock_guard<std::mutex> lock(joins.mutex);
      if (joins.states.empty()) return;
      state = std::move(joins.states.back());
      joins.states.pop_back();
    }
    JoinThread(*state);
  }
}

void Forget(const std::shared_ptr<ThreadState>& state) {
  ExitJoins& joins = Joins();
  std::lock_guard<std::mutex> lock(joins.mutex);
  std::erase(joins.states, state);
}

void Remember(std::shared_ptr<ThreadState> state) {
  static const bool registered = [] {
    std::atexit(JoinAtExit);
    return true;
  }();
  (void)registered;
  ExitJoins& joins = Joins();
  std::lock_guard<std::mutex> lock(joins.mutex);
  joins.states.push_back(std::move(state));
}

void Bootstrap(const std::shared_ptr<ThreadState>& state) {
  t_current = state;
  std::function<void()> target;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    state->ident = CurrentTid();
    target = std::move(state->target);
    state->target = nullptr;
  }
  state->cv.notify_all();
  try {
    if (target) target();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cout.flush();
    std::string name;
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      name = state->name;
    }
    std::cerr << "Exception in thread " << name << ":\n"
              << PythonNameOf(e) << ": " << e.what() << std::endl;
  } catch (...) {
    std::lock_guard<std::mutex> lock(state->mutex);
    std::cerr << "Exception in thread " << state->name
              << ":\nan exception that is not a std::exception" << std::endl;
  }
  target = nullptr;  // the arguments go with the thread, as in Python
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    state->status = Status::kStopped;
  }
  state->cv.notify_all();
  t_current.reset();
}

}  // namespace

void ThrowNotConvertible(const Item& item, const std::type_info& wanted) {
  throw TypeError("the item is a " + Demangle(item.type_name) +
                  ", which cannot be received as a " + Demangle(wanted.name()) +
                  "; receive it as its own type, or send a picklable value");
}

}  // namespace internal

using internal::Status;
using internal::ThreadState;

Process::Process(ProcessOptions options)
    : state_(std::make_shared<ThreadState>()) {
  auto parent = internal::CurrentState();
  state_->parent = parent;
  state_->name = options.name.empty()
                     ? "Thread-" + std::to_string(++internal::g_counter)
                     : std::move(options.name);
  if (options.daemon) {
    state_->daemon = *options.daemon;
  } else {
    std::lock_guard<std::mutex> lock(parent->mutex);
    state_->daemon = parent->daemon;
  }
}

void Process::SetTarget(std::function<void()> target) {
  state_->target = std::move(target);
}

void Process::run() const {
  std::function<void()> target;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    target = state_->target;
  }
  if (target) target();
}

void Process::start() {
  auto current = internal::CurrentState();
  auto parent = state_->parent.lock();
  if (parent != current) {
    throw RuntimeError("Parent is " + Process(parent).repr() +
                       " but current_process is " + Process(current).repr() +
                       ": start a thread from the thread that created it");
  }
  bool daemon;
  {
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (state_->status != Status::kInitial) {
      throw RuntimeError("threads can only be started once");
    }
    state_->status = Status::kStarted;
    daemon = state_->daemon;
    try {
      state_->thread =
          std::thread([state = state_] { internal::Bootstrap(state); });
    } catch (const std::system_error& e) {
      state_->status = Status::kInitial;
      throw RuntimeError(std::string("can't start new thread: ") + e.what());
    }
    // Like threading: start() returns once the thread runs, so ident() is
    // known and is_alive() is true.
    state_->cv.wait(lock, [&] { return state_->ident != 0; });
    if (daemon) state_->thread.detach();
  }
  {
    std::lock_guard<std::mutex> lock(current->mutex);
    std::erase_if(current->children, [](const std::weak_ptr<ThreadState>& w) {
      return w.expired();
    });
    current->children.push_back(state_);
  }
  if (!daemon) internal::Remember(state_);
}

void Process::join(Timeout timeout) {
  if (state_ == internal::CurrentState()) {
    throw RuntimeError("cannot join current thread");
  }
  {
    std::unique_lock<std::mutex> lock(state_->mutex);
    if (state_->status == Status::kInitial) {
      throw RuntimeError("cannot join thread before it is started");
    }
    if (!internal::WaitUntil(
            state_->cv, lock, internal::DeadlineOf(timeout),
            [&] { return state_->status == Status::kStopped; })) {
      return;
    }
    if (!state_->thread.joinable()) return;
  }
  internal::JoinThread(*state_);
  internal::Forget(state_);
}

bool Process::is_alive() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->status == Status::kStarted;
}

std::string Process::name() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->name;
}

void Process::set_name(std::string name) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->name = std::move(name);
}

bool Process::daemon() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->daemon;
}

void Process::set_daemon(bool daemonic) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->status != Status::kInitial) {
    throw RuntimeError(
        "cannot set daemon status of active thread; set it before start()");
  }
  state_->daemon = daemonic;
}

std::optional<int> Process::ident() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->ident == 0) return std::nullopt;
  return state_->ident;
}

std::optional<int> Process::exitcode() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->status != Status::kStopped) return std::nullopt;
  return 0;
}

std::string Process::repr() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  std::string status = state_->status == Status::kInitial   ? "initial"
                       : state_->status == Status::kStarted ? "started"
                                                            : "stopped";
  if (state_->daemon) status += " daemon";
  if (state_->ident != 0) status += " " + std::to_string(state_->ident);
  return "<" + state_->class_name + "(" + state_->name + ", " + status + ")>";
}

std::ostream& operator<<(std::ostream& os, const Process& p) {
  return os << p.repr();
}

Process current_process() { return Process(internal::CurrentState()); }

std::vector<Process> active_children() {
  auto current = internal::CurrentState();
  std::vector<std::shared_ptr<ThreadState>> children;
  {
    std::lock_guard<std::mutex> lock(current->mutex);
    for (const auto& weak : current->children) {
      if (auto child = weak.lock()) children.push_back(std::move(child));
    }
  }
  std::vector<Process> alive;
  std::vector<std::shared_ptr<ThreadState>> kept;
  for (auto& child : children) {
    Process p(child);
    if (p.is_alive()) {
      alive.push_back(p);
      kept.push_back(child);
    }
  }
  std::lock_guard<std::mutex> lock(current->mutex);
  std::erase_if(current->children, [&](const std::weak_ptr<ThreadState>& w) {
    auto child = w.lock();
    return !child || std::find(kept.begin(), kept.end(), child) == kept.end();
  });
  return alive;
}

// ---- Locks

namespace internal {

struct LockCore {
  explicit LockCore(bool recursive) : recursive(recursive) {}
  const bool recursive;
  std::mutex mutex;
  std::condition_variable cv;
  int count = 0;  // > 0 while held (the depth for an RLock)
  std::thread::id owner;
  int owner_tid = 0;
};

namespace {

bool AcquireLock(LockCore& core, bool block, const Timeout& timeout) {
  const auto me = std::this_thread::get_id();
  std::unique_lock<std::mutex> lock(core.mutex);
  if (core.recursive && core.count > 0 && core.owner == me) {
    ++core.count;
    return true;
  }
  auto free = [&] { return core.count == 0; };
  bool ok =
      block ? WaitUntil(core.cv, lock, DeadlineOf(timeout), free) : free();
  if (!ok) return false;
  core.count = 1;
  core.owner = me;
  core.owner_tid = CurrentTid();
  return true;
}

void ReleaseLock(LockCore& core) {
  {
    std::lock_guard<std::mutex> lock(core.mutex);
    if (core.count == 0 ||
        (core.recursive && core.owner != std::this_thread::get_id())) {
      throw RuntimeError(core.recursive
                             ? "cannot release un-acquired lock: only the "
                               "thread that acquired an RLock may release it"
                             : "release unlocked lock");
    }
    if (--core.count > 0) return;
    core.owner = std::thread::id();
    core.owner_tid = 0;
  }
  core.cv.notify_one();
}

// Whether the calling thread may wait on / notify a condition over `core`:
// it owns the RLock, or the Lock is held (a Lock has no owner).
bool Owned(LockCore& core) {
  std::lock_guard<std::mutex> lock(core.mutex);
  if (core.count == 0) return false;
  return !core.recursive || core.owner == std::this_thread::get_id();
}

std::string LockRepr(LockCore& core) {
  std::lock_guard<std::mutex> lock(core.mutex);
  std::string state = core.count > 0 ? "<locked" : "<unlocked";
  if (!core.recursive)
    return state + " _thread.lock object at " + Address(&core) + ">";
  return state +
         " _thread.RLock object owner=" + std::to_string(core.owner_tid) +
         " count=" + std::to_string(core.count) + " at " + Address(&core) + ">";
}

}  // namespace
}  // namespace internal

namespace internal {
LockHandle::LockHandle(bool recursive)
    : core_(std::make_shared<LockCore>(recursive)) {}
bool LockHandle::acquire(bool block, Timeout timeout) {
  return AcquireLock(*core_, block, timeout);
}
void LockHandle::release() { ReleaseLock(*core_); }
std::string LockHandle::repr() const { return LockRepr(*core_); }
}  // namespace internal

// ---- Semaphores

namespace internal {
struct SemaphoreCore {
  std::mutex mutex;
  std::condition_variable cv;
  int value;
  int initial;
  bool bounded;
};
}  // namespace internal

Semaphore::Semaphore(int value) : Semaphore(value, false) {}

Semaphore::Semaphore(int value, bool bounded) {
  if (value < 0) {
    throw ValueError("semaphore initial value must be >= 0, got " +
                     std::to_string(value));
  }
  core_ = std::make_shared<internal::SemaphoreCore>();
  core_->value = value;
  core_->initial = value;
  core_->bounded = bounded;
}

bool Semaphore::acquire(bool block, Timeout timeout) {
  std::unique_lock<std::mutex> lock(core_->mutex);
  auto available = [&] { return core_->value > 0; };
  bool ok = block
                ? internal::WaitUntil(core_->cv, lock,
                                      internal::DeadlineOf(timeout), available)
                : available();
  if (ok) --core_->value;
  return ok;
}

void Semaphore::release() {
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    if (core_->bounded && core_->value >= core_->initial) {
      throw ValueError("Semaphore released too many times");
    }
    ++core_->value;
  }
  core_->cv.notify_one();
}

int Semaphore::get_value() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->value;
}

std::string Semaphore::repr() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  std::string value = std::to_string(core_->value);
  if (core_->bounded) value += "/" + std::to_string(core_->initial);
  return std::string("<threading.") +
         (core_->bounded ? "BoundedSemaphore" : "Semaphore") + " at " +
         internal::Address(core_.get()) + ": value=" + value + ">";
}

// ---- Condition

namespace internal {
struct ConditionCore {
  struct Waiter {
    bool notified = false;
  };
  std::mutex mutex;
  std::condition_variable cv;
  std::list<Waiter*> waiters;
};
}  // namespace internal

Condition::Condition(Lock lock)
    : lock_(std::move(lock.core_)),
      core_(std::make_shared<internal::ConditionCore>()) {}
Condition::Condition(RLock lock)
    : lock_(std::move(lock.core_)),
      core_(std::make_shared<internal::ConditionCore>()) {}

bool Condition::acquire(bool block, Timeout timeout) {
  return internal::AcquireLock(*lock_, block, timeout);
}
void Condition::release() { internal::ReleaseLock(*lock_); }

bool Condition::wait(Timeout timeout) {
  if (!internal::Owned(*lock_)) {
    throw RuntimeError(
        "cannot wait on un-acquired lock: acquire the condition first");
  }
  const auto deadline = internal::DeadlineOf(timeout);
  internal::ConditionCore::Waiter waiter;
  std::unique_lock<std::mutex> waiting(core_->mutex);
  core_->waiters.push_back(&waiter);
  // Release the lock however deep it is held; a notifier needs it, and then
  // core_->mutex, which this thread holds until it sleeps: no notification
  // is lost.
  int depth;
  {
    std::lock_guard<std::mutex> lock(lock_->mutex);
    depth = lock_->count;
    lock_->count = 0;
    lock_->owner = std::thread::id();
    lock_->owner_tid = 0;
  }
  lock_->cv.notify_one();
  bool notified = internal::WaitUntil(core_->cv, waiting, deadline,
                                      [&] { return waiter.notified; });
  if (!notified) core_->waiters.remove(&waiter);
  waiting.unlock();
  std::unique_lock<std::mutex> lock(lock_->mutex);
  lock_->cv.wait(lock, [&] { return lock_->count == 0; });
  lock_->count = depth;
  lock_->owner = std::this_thread::get_id();
  lock_->owner_tid = internal::CurrentTid();
  return notified;
}

void Condition::notify(int n) {
  if (!internal::Owned(*lock_)) {
    throw RuntimeError(
        "cannot notify on un-acquired lock: acquire the condition first");
  }
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    for (int i = 0; i < n && !core_->waiters.empty(); ++i) {
      core_->waiters.front()->notified = true;
      core_->waiters.pop_front();
    }
  }
  core_->cv.notify_all();
}

void Condition::notify_all() { notify(INT32_MAX); }

bool Condition::WaitUntil(
    const std::optional<std::chrono::steady_clock::time_point>& end) {
  if (!end) {
    wait();
    return true;
  }
  auto left = *end - std::chrono::steady_clock::now();
  if (left <= left.zero()) return false;
  wait(std::chrono::duration<double>(left));
  return true;
}

std::string Condition::repr() const {
  size_t waiters;
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    waiters = core_->waiters.size();
  }
  return "<Condition(" + internal::LockRepr(*lock_) + ", " +
         std::to_string(waiters) + ")>";
}

// ---- Event

namespace internal {
struct EventCore {
  std::mutex mutex;
  std::condition_variable cv;
  bool flag = false;
};
}  // namespace internal

Event::Event() : core_(std::make_shared<internal::EventCore>()) {}

bool Event::is_set() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->flag;
}

void Event::set() {
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    core_->flag = true;
  }
  core_->cv.notify_all();
}

void Event::clear() {
  std::lock_guard<std::mutex> lock(core_->mutex);
  core_->flag = false;
}

bool Event::wait(Timeout timeout) {
  std::unique_lock<std::mutex> lock(core_->mutex);
  return internal::WaitUntil(core_->cv, lock, internal::DeadlineOf(timeout),
                             [&] { return core_->flag; });
}

std::string Event::repr() const {
  return "<threading.Event at " + internal::Address(core_.get()) + ": " +
         (is_set() ? "set" : "unset") + ">";
}

// ---- Barrier

namespace internal {
struct BarrierCore {
  // One round of the barrier: it ends when all parties arrived (done) or
  // when reset() cut it short.
  struct Round {
    bool done = false;
    bool reset = false;
  };
  std::mutex mutex;
  std::condition_variable cv;
  int parties;
  Barrier::Action action;
  Timeout timeout;
  int count = 0;
  bool broken = false;
  std::shared_ptr<Round> round = std::make_shared<Round>();
};

namespace {
[[noreturn]] void ThrowBroken() {
  throw BrokenBarrierError(
      "the barrier is broken (a party timed out, the action failed, or it "
      "was reset or aborted); reset() it to use it again");
}
}  // namespace
}  // namespace internal

Barrier::Barrier(int parties, Action action, Timeout timeout) {
  if (parties < 1) {
    throw ValueError("a Barrier needs at least one party, got " +
                     std::to_string(parties));
  }
  core_ = std::make_shared<internal::BarrierCore>();
  core_->parties = parties;
  core_->action = std::move(action);
  core_->timeout = timeout;
}

int Barrier::wait(Timeout timeout) {
  auto& core = *core_;
  std::unique_lock<std::mutex> lock(core.mutex);
  if (core.broken) internal::ThrowBroken();
  const int index = core.count++;
  auto round = core.round;
  if (core.count == core.parties) {
    if (core.action) {
      try {
        core.action();
      } catch (...) {
        core.broken = true;
        core.cv.notify_all();
        throw;
      }
    }
    round->done = true;
    core.count = 0;
    core.round = std::make_shared<internal::BarrierCore::Round>();
    core.cv.notify_all();
    return index;
  }
  bool ended = internal::WaitUntil(
      core.cv, lock, internal::DeadlineOf(timeout ? timeout : core.timeout),
      [&] { return round->done || round->reset || core.broken; });
  if (round->done) return index;
  if (!ended) {
    core.broken = true;
    core.cv.notify_all();
  }
  internal::ThrowBroken();
}

void Barrier::reset() {
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    core_->round->reset = true;
    core_->round = std::make_shared<internal::BarrierCore::Round>();
    core_->count = 0;
    core_->broken = false;
  }
  core_->cv.notify_all();
}

void Barrier::abort() {
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    core_->broken = true;
  }
  core_->cv.notify_all();
}

int Barrier::parties() const { return core_->parties; }

int Barrier::n_waiting() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->broken ? 0 : core_->count;
}

bool Barrier::broken() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->broken;
}

std::string Barrier::repr() const {
  if (broken()) {
    return "<threading.Barrier at " + internal::Address(core_.get()) +
           ": broken>";
  }
  return "<threading.Barrier at " + internal::Address(core_.get()) +
         ": waiters=" + std::to_string(n_waiting()) + "/" +
         std::to_string(core_->parties) + ">";
}

// ---- Queues

namespace internal {

struct QueueCore {
  explicit QueueCore(int64_t maxsize) : maxsize(maxsize) {}
  std::mutex mutex;
  std::condition_variable not_empty;
  std::condition_variable not_full;
  std::condition_variable all_done;
  std::deque<Item> items;
  const int64_t maxsize;
  int64_t unfinished = 0;
  // For pipes: the writing end is closed; readers get EOFError once empty.
  bool eof = false;
};

void Put(QueueCore& q, Item item, bool block, const Timeout& timeout) {
  {
    std::unique_lock<std::mutex> lock(q.mutex);
    if (q.maxsize > 0) {
      auto room = [&] {
        return static_cast<int64_t>(q.items.size()) < q.maxsize;
      };
      if (!(block ? WaitUntil(q.not_full, lock, DeadlineOf(timeout), room)
                  : room())) {
        throw Full("the queue is full (maxsize " + std::to_string(q.maxsize) +
                   "); get items first, or put with a longer timeout");
      }
    }
    q.items.push_back(std::move(item));
    ++q.unfinished;
  }
  q.not_empty.notify_one();
}

Item Get(QueueCore& q, bool block, const Timeout& timeout) {
  Item item;
  {
    std::unique_lock<std::mutex> lock(q.mutex);
    auto ready = [&] { return !q.items.empty() || q.eof; };
    if (!(block ? WaitUntil(q.not_empty, lock, DeadlineOf(timeout), ready)
                : ready())) {
      throw Empty(
          "the queue is empty; put items first, or get with a "
          "longer timeout");
    }
    if (q.items.empty()) {
      throw EOFError(
          "the other end of the pipe was closed and nothing is left to "
          "receive");
    }
    item = std::move(q.items.front());
    q.items.pop_front();
  }
  q.not_full.notify_one();
  return item;
}

}  // namespace internal

Queue::Queue(int64_t maxsize)
    : core_(std::make_shared<internal::QueueCore>(maxsize)) {}

int64_t Queue::qsize() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return static_cast<int64_t>(core_->items.size());
}

bool Queue::empty() const { return qsize() == 0; }

bool Queue::full() const {
  return core_->maxsize > 0 && qsize() >= core_->maxsize;
}

int64_t Queue::maxsize() const { return core_->maxsize; }

void Queue::task_done() {
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    if (core_->unfinished <= 0) {
      throw ValueError(
          "task_done() called too many times: call it once per item got");
    }
    if (--core_->unfinished > 0) return;
  }
  core_->all_done.notify_all();
}

bool Queue::join(Timeout timeout) {
  std::unique_lock<std::mutex> lock(core_->mutex);
  return internal::WaitUntil(core_->all_done, lock,
                             internal::DeadlineOf(timeout),
                             [&] { return core_->unfinished == 0; });
}

// ---- Pipes

struct Connection::Impl {
  std::shared_ptr<internal::QueueCore> in;   // null: not readable
  std::shared_ptr<internal::QueueCore> out;  // null: not writable
  std::atomic<bool> closed{false};

  void Close() {
    if (closed.exchange(true)) return;
    if (out) {
      {
        std::lock_guard<std::mutex> lock(out->mutex);
        out->eof = true;
      }
      out->not_empty.notify_all();
    }
  }
  ~Impl() { Close(); }
};

std::pair<Connection, Connection> Pipe(bool duplex) {
  auto a = std::make_shared<internal::QueueCore>(0);
  Connection c1, c2;
  c1.impl_ = std::make_shared<Connection::Impl>();
  c2.impl_ = std::make_shared<Connection::Impl>();
  c1.impl_->in = a;
  c2.impl_->out = a;
  if (duplex) {
    auto b = std::make_shared<internal::QueueCore>(0);
    c1.impl_->out = b;
    c2.impl_->in = b;
  }
  return {c1, c2};
}

internal::QueueCore& Connection::In() const {
  if (!impl_ || impl_->closed) throw OSError(EBADF, "handle is closed");
  if (!impl_->in) throw OSError(EBADF, "connection is write-only");
  return *impl_->in;
}

internal::QueueCore& Connection::Out() const {
  if (!impl_ || impl_->closed) throw OSError(EBADF, "handle is closed");
  if (!impl_->out) throw OSError(EBADF, "connection is read-only");
  return *impl_->out;
}

void Connection::send_bytes(std::string_view buf, std::size_t offset,
                            std::optional<std::size_t> size) {
  if (offset > buf.size()) throw ValueError("offset is out of bounds");
  std::size_t n = size.value_or(buf.size() - offset);
  if (n > buf.size() - offset)
    throw ValueError("buffer length < offset + size");
  internal::Put(Out(), internal::MakeItem(std::string(buf.substr(offset, n))),
                true, std::nullopt);
}

std::string Connection::recv_bytes(std::optional<std::size_t> maxlength) {
  std::string bytes =
      internal::TakeItem<std::string>(internal::Get(In(), true, std::nullopt));
  if (maxlength && bytes.size() > *maxlength) {
    throw OSError(EMSGSIZE,
                  "bad message length: " + std::to_string(bytes.size()) +
                      " bytes, more than maxlength");
  }
  return bytes;
}

bool Connection::poll(Timeout timeout) {
  internal::QueueCore& q = In();
  std::unique_lock<std::mutex> lock(q.mutex);
  return internal::WaitUntil(q.not_empty, lock, internal::DeadlineOf(timeout),
                             [&] { return !q.items.empty() || q.eof; });
}

void Connection::close() {
  if (impl_) impl_->Close();
}

bool Connection::closed() const { return !impl_ || impl_->closed; }
bool Connection::readable() const { return impl_ && impl_->in; }
bool Connection::writable() const { return impl_ && impl_->out; }

// ---- Namespace, List, Dict

struct Namespace::State {
  std::mutex mutex;
  std::map<std::string, Object> attributes;
};

Namespace::Namespace() : state_(std::make_shared<State>()) {}

namespace {
[[noreturn]] void ThrowNoAttribute(const std::string& name) {
  throw AttributeError("'Namespace' object has no attribute '" + name + "'");
}
}  // namespace

Object Namespace::getattr(const std::string& name) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  auto it = state_->attributes.find(name);
  if (it == state_->attributes.end()) ThrowNoAttribute(name);
  return it->second;
}

void Namespace::SetObject(const std::string& name, Object value) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->attributes[name] = std::move(value);
}

void Namespace::delattr(const std::string& name) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->attributes.erase(name) == 0) ThrowNoAttribute(name);
}

bool Namespace::hasattr(const std::string& name) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->attributes.count(name) != 0;
}

std::string Namespace::repr() const {
  std::vector<std::string> items;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    for (const auto& [name, value] : state_->attributes) {
      if (!name.empty() && name[0] == '_') continue;
      items.push_back(name + "=" + reduction::repr(value));
    }
  }
  std::sort(items.begin(), items.end());
  std::string text = "Namespace(";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) text += ", ";
    text += items[i];
  }
  return text + ")";
}

std::ostream& operator<<(std::ostream& os, const Namespace& ns) {
  return os << ns.repr();
}
std::ostream& operator<<(std::ostream& os, const Namespace::AttrRef& ref) {
  return os << ref.get();
}

List::List(Object list) : state_(std::make_shared<internal::Shared>()) {
  state_->object = std::move(list);
}

Object List::ToList(Object sequence) {
  if (sequence.is_list()) return sequence;
  if (sequence.is_tuple() || sequence.is_set() || sequence.is_frozenset()) {
    return Object::list(sequence.items());
  }
  throw TypeError(std::string("list() needs a sequence, not ") +
                  sequence.type_name());
}

void List::Append(Object value) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->object.append(std::move(value));
}

void List::Extend(Object values) const {
  Object items = ToList(std::move(values));
  std::lock_guard<std::mutex> lock(state_->mutex);
  for (const Object& item : items.items()) state_->object.append(item);
}

Object List::operator[](int64_t index) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->object[Object(index)];
}

void List::Set(int64_t index, Object value) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->object.set_item(Object(index), std::move(value));
}

int64_t List::len() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return static_cast<int64_t>(state_->object.size());
}

Object List::copy() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->object;
}

std::string List::repr() const { return reduction::repr(copy()); }

Dict::Dict() : state_(std::make_shared<internal::Shared>()) {
  state_->object = Object::dict();
}

void Dict::Set(Object key, Object value) const {
  key.hash();  // TypeError for an unhashable key, before changing anything
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->object.set_item(std::move(key), std::move(value));
}

Object Dict::Get(const Object& key) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->object[key];
}

Object Dict::GetOr(const Object& key, const Object& fallback) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  const Object* value = state_->object.get(key);
  return value ? *value : fallback;
}

bool Dict::Contains(const Object& key) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->object.contains(key);
}

void Dict::Del(const Object& key) const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (!state_->object.erase(key)) throw KeyError(reduction::repr(key));
}

int64_t Dict::len() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return static_cast<int64_t>(state_->object.size());
}

Object Dict::copy() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->object;
}

std::string Dict::repr() const { return reduction::repr(copy()); }

std::ostream& operator<<(std::ostream& os, const List& l) {
  return os << l.repr();
}
std::ostream& operator<<(std::ostream& os, const Dict& d) {
  return os << d.repr();
}

}  // namespace multiprocessing::dummy
