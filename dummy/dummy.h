// multiprocessing::dummy: the API of multiprocessing over threads of this
// process, as Python's multiprocessing.dummy wraps the threading module.
//
//   namespace ns = multiprocessing::dummy;   // or: namespace ns = mp;
//   ns::Queue q;
//   ns::Process p([q]() mutable { q.put(42); });
//   p.start();
//   std::cout << ns::repr(q.get()) << "\n";   // 42
//   p.join();
//
// A program written against the names below switches between processes and
// threads by changing one namespace alias: Process (a thread, like CPython's
// DummyProcess), current_process(), active_children(), Lock, RLock,
// Semaphore, BoundedSemaphore, Condition, Event, Barrier, Queue,
// JoinableQueue (with queues::Empty / Full), Pipe(), Pool (pool::ThreadPool),
// Value, Array, Manager() and Namespace.
//
// Everything here lives in this process's memory and is safe to share
// between threads: the synchronisation types are std::mutex and
// std::condition_variable, handles are cheap to copy and share one object.
// Nothing starts a process (not even a resource tracker), so the types are
// cheaper than their process-shared counterparts and need no pickling: a
// Queue or a Pipe hands an item to the other thread as the same C++ value
// when it is received as its own type, and converts it through pickle only
// when received as another type (get() as a reduction::Object, say).
//
// Differences that follow from threads: a thread cannot be terminated, so
// Process has no terminate() or kill(); exitcode() is 0 once the thread has
// ended (also when its target threw, which prints "Exception in thread
// <name>:" and the error to stderr, as threading does), unset before.
// Non-daemonic threads still running when the program exits are joined
// first; daemonic ones are abandoned.
#ifndef MULTIPROCESSING_DUMMY_DUMMY_H_
#define MULTIPROCESSING_DUMMY_DUMMY_H_

#include <any>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "errors/errors.h"
#include "pool/pool.h"
#include "queues/queues.h"
#include "reduction/object.h"
#include "reduction/pickle.h"
#include "sharedctypes/sharedctypes.h"

namespace multiprocessing::dummy {

using reduction::Object;
using reduction::repr;

// Seconds; std::nullopt blocks for ever; negative means zero.
using Timeout = std::optional<std::chrono::duration<double>>;

class Condition;
class Connection;

namespace internal {
struct ThreadState;
struct LockCore;
struct SemaphoreCore;
struct ConditionCore;
struct EventCore;
struct BarrierCore;
struct QueueCore;
}  // namespace internal

namespace internal {
// When `timeout` from now ends; unset for none.
std::optional<std::chrono::steady_clock::time_point> EndOf(
    const Timeout& timeout);
}  // namespace internal

// ---- Threads

// Python's Process keyword arguments that make sense for a thread.
struct ProcessOptions {
  // Empty: "Thread-N".
  std::string name;
  // Unset: inherited from the creating thread.
  std::optional<bool> daemon;
};

// A thread with the interface of multiprocessing::Process.
class Process {
 public:
  using Timeout = dummy::Timeout;

  // A thread without a target: it does nothing.
  Process() : Process(ProcessOptions{}) {}
  explicit Process(ProcessOptions options);
  // Process(f, args...): the thread calls f(args...) on copies of args.
  template <class F, class... Args>
  requires(!std::is_same_v<std::decay_t<F>, ProcessOptions> &&
           !std::is_same_v<std::decay_t<F>,
                           Process>) explicit Process(F&& target,
                                                      Args&&... args)
      : Process(ProcessOptions{}, std::forward<F>(target),
                std::forward<Args>(args)...) {}
  template <class F, class... Args>
  Process(ProcessOptions options, F&& target, Args&&... args)
      : Process(std::move(options)) {
    static_assert(std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...>,
                  "Process(target, args...): target is not callable with "
                  "these arguments");
    auto bound =
        std::make_shared<std::tuple<std::decay_t<F>, std::decay_t<Args>...>>(
            std::forward<F>(target), std::forward<Args>(args)...);
    SetTarget([bound] {
      std::apply([](auto& f, auto&... a) { std::invoke(f, a...); }, *bound);
    });
  }

  // Calls the target (in the thread).
  void run() const;
  // Starts the thread; RuntimeError when called twice or from another thread
  // than the one that created the object (as DummyProcess).
  void start();
  // Waits until the thread ends, or at most `timeout`. RuntimeError before
  // start() and for the calling thread itself.
  void join(Timeout timeout = std::nullopt);
  bool is_alive() const;

  std::string name() const;
  void set_name(std::string name);
  bool daemon() const;
  // RuntimeError once started.
  void set_daemon(bool daemonic);
  // The thread's id (its Linux tid); unset before start().
  std::optional<int> ident() const;
  std::optional<int> pid() const { return ident(); }
  // 0 once the thread has ended, unset before.
  std::optional<int> exitcode() const;
  // "<DummyProcess(Thread-1, started daemon 1234)>".
  std::string repr() const;

  friend bool operator==(const Process& a, const Process& b) {
    return a.state_ == b.state_;
  }

 private:
  friend Process current_process();
  friend std::vector<Process> active_children();
  explicit Process(std::shared_ptr<internal::ThreadState> state)
      : state_(std::move(state)) {}
  void SetTarget(std::function<void()> target);

  std::shared_ptr<internal::ThreadState> state_;
};

std::ostream& operator<<(std::ostream& os, const Process& p);

// The calling thread: a Process started by this library, "MainThread" for
// the main thread, "Dummy-N" for other threads.
Process current_process();
// The started threads of the calling thread that are still running.
std::vector<Process> active_children();
// Nothing to do for threads; present so that programs switch namespaces.
inline void freeze_support(int /*argc*/ = 0, char** /*argv*/ = nullptr) {}

// ---- Synchronisation (Python's threading types)

namespace internal {
// What Lock and RLock share: a lock core, recursive or not.
class LockHandle {
 public:
  // Blocks until the lock is free (or `timeout` passes: false), then takes
  // it; with block=false, takes it only if it is free. An RLock's owner
  // takes it again at once.
  bool acquire(bool block = true, Timeout timeout = std::nullopt);
  // RuntimeError if the lock is not held (for an RLock: not held by the
  // calling thread).
  void release();
  void lock() { acquire(); }
  bool try_lock() { return acquire(false); }
  void unlock() { release(); }
  // "<unlocked _thread.lock object at 0x...>", "<locked _thread.RLock
  // object owner=1234 count=1 at 0x...>".
  std::string repr() const;
  // Handles of the same lock.
  friend bool operator==(const LockHandle& a, const LockHandle& b) {
    return a.core_ == b.core_;
  }

 protected:
  explicit LockHandle(bool recursive);

 private:
  friend class dummy::Condition;
  std::shared_ptr<LockCore> core_;
};
}  // namespace internal

// A non-recursive lock; any thread may release it.
class Lock : public internal::LockHandle {
 public:
  Lock() : LockHandle(false) {}
};

// A recursive lock, owned by one thread at a time.
class RLock : public internal::LockHandle {
 public:
  RLock() : LockHandle(true) {}
};

// A counting semaphore.
class Semaphore {
 public:
  // ValueError for a negative value.
  explicit Semaphore(int value = 1);
  bool acquire(bool block = true, Timeout timeout = std::nullopt);
  void release();
  void lock() { acquire(); }
  bool try_lock() { return acquire(false); }
  void unlock() { release(); }
  int get_value() const;
  // "<threading.Semaphore at 0x...: value=1>".
  std::string repr() const;

 protected:
  Semaphore(int value, bool bounded);
  std::shared_ptr<internal::SemaphoreCore> core_;
};

// A semaphore whose release() raises ValueError above its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(int value = 1) : Semaphore(value, true) {}
};

// A condition variable over a Lock or an RLock (a new RLock by default).
class Condition {
 public:
  Condition() : Condition(RLock()) {}
  explicit Condition(Lock lock);
  explicit Condition(RLock lock);

  bool acquire(bool block = true, Timeout timeout = std::nullopt);
  void release();
  void lock() { acquire(); }
  bool try_lock() { return acquire(false); }
  void unlock() { release(); }

  // Releases the lock (however deeply an RLock is held), sleeps until
  // notified or `timeout` passes, and takes the lock back. False on timeout;
  // RuntimeError unless the caller holds the lock.
  bool wait(Timeout timeout = std::nullopt);
  // Waits until predicate() is truthy or `timeout` passes; returns its last
  // value.
  template <class Predicate>
  auto wait_for(Predicate predicate, Timeout timeout = std::nullopt)
      -> decltype(predicate());
  // Wakes at most `n` waiters; RuntimeError unless the caller holds the lock.
  void notify(int n = 1);
  void notify_all();
  // For wait_for: false once `end` has passed, else waits until then at
  // most.
  bool WaitUntil(
      const std::optional<std::chrono::steady_clock::time_point>& end);
  // "<Condition(<unlocked _thread.RLock object owner=0 count=0 at 0x...>,
  // 0)>": the lock and the number of waiters.
  std::string repr() const;

 private:
  std::shared_ptr<internal::LockCore> lock_;
  std::shared_ptr<internal::ConditionCore> core_;
};

// A flag threads can wait for.
class Event {
 public:
  Event();
  bool is_set() const;
  void set();
  void clear();
  // Blocks until the flag is set or `timeout` passes; returns the flag.
  bool wait(Timeout timeout = std::nullopt);
  // "<threading.Event at 0x...: unset>".
  std::string repr() const;

 private:
  std::shared_ptr<internal::EventCore> core_;
};

// threading.Barrier.
class Barrier {
 public:
  using Action = std::function<void()>;
  // ValueError unless parties >= 1.
  explicit Barrier(int parties, Action action = nullptr,
                   Timeout timeout = std::nullopt);
  // Waits until `parties` threads are waiting, then releases them all;
  // returns this thread's index (0 .. parties-1). BrokenBarrierError when
  // the barrier is broken, reset or aborted while waiting, or when `timeout`
  // (else the barrier's default) passes, which breaks it. The action runs in
  // one thread before the others are released; if it throws, the barrier
  // breaks.
  int wait(Timeout timeout = std::nullopt);
  void reset();
  void abort();
  int parties() const;
  int n_waiting() const;
  bool broken() const;
  // "<threading.Barrier at 0x...: waiters=0/2>".
  std::string repr() const;

 private:
  std::shared_ptr<internal::BarrierCore> core_;
};

template <class T>
concept DummyPrintable = std::is_same_v<T, Lock> || std::is_same_v<T, RLock> ||
    std::is_base_of_v<Semaphore, T> || std::is_same_v<T, Condition> ||
    std::is_same_v<T, Event> || std::is_same_v<T, Barrier>;

// Prints repr(), as Python's print().
template <DummyPrintable T>
std::ostream& operator<<(std::ostream& os, const T& object) {
  return os << object.repr();
}

// ---- Queues (Python's queue.Queue, which dummy names Queue and
// JoinableQueue)

using queues::Empty;
using queues::Full;

namespace internal {
// One queued item: the value as put, and how to pickle it when the receiver
// asks for another type.
struct Item {
  std::any value;
  std::string (*pickle)(const std::any&) = nullptr;
  const char* type_name = "";
};

template <class T>
Item MakeItem(T value) {
  Item item;
  if constexpr (reduction::Picklable<T>) {
    item.pickle = [](const std::any& a) {
      return reduction::dumps(std::any_cast<const T&>(a));
    };
  }
  item.type_name = typeid(T).name();
  item.value = std::move(value);
  return item;
}

[[noreturn]] void ThrowNotConvertible(const Item& item,
                                      const std::type_info& wanted);

template <class T>
T TakeItem(Item&& item) {
  if (T* exact = std::any_cast<T>(&item.value)) return std::move(*exact);
  if constexpr (reduction::Picklable<T>) {
    if (item.pickle) return reduction::loads<T>(item.pickle(item.value));
  }
  ThrowNotConvertible(item, typeid(T));
}

void Put(QueueCore& q, Item item, bool block, const Timeout& timeout);
Item Get(QueueCore& q, bool block, const Timeout& timeout);
}  // namespace internal

// A thread queue with task tracking. Items keep their C++ type: get<T>()
// returns the very value put when T is its type, and converts through pickle
// otherwise (TypeError when it cannot).
class Queue {
 public:
  // `maxsize` <= 0 means unbounded.
  explicit Queue(int64_t maxsize = 0);

  // With `block`, waits up to `timeout` for a free slot when the queue is
  // full, then raises queues::Full; without, raises it at once.
  template <class T>
  void put(const T& obj, bool block = true, Timeout timeout = std::nullopt) {
    internal::Put(*core_, internal::MakeItem<Storage<T>>(obj), block, timeout);
  }
  template <class T>
  void put_nowait(const T& obj) {
    put(obj, false);
  }
  // With `block`, waits up to `timeout` for an item, then raises
  // queues::Empty; without, raises it at once.
  template <class T = Object>
  T get(bool block = true, Timeout timeout = std::nullopt) {
    return internal::TakeItem<T>(internal::Get(*core_, block, timeout));
  }
  template <class T = Object>
  T get_nowait() {
    return get<T>(false);
  }

  int64_t qsize() const;
  bool empty() const;
  bool full() const;
  int64_t maxsize() const;

  // Marks one item got as processed; ValueError if called more times than
  // items were put.
  void task_done();
  // Waits until every item put has been marked done; false if `timeout`
  // passed first.
  bool join(Timeout timeout = std::nullopt);

  // multiprocessing.Queue's methods, with nothing to do for threads.
  void close() {}
  void join_thread() {}
  void cancel_join_thread() {}

 private:
  friend class Connection;
  // String literals are stored as std::string.
  template <class T>
  using Storage =
      std::conditional_t<std::is_convertible_v<const T&, std::string_view> &&
                             !std::is_same_v<T, Object>,
                         std::string, T>;
  std::shared_ptr<internal::QueueCore> core_;
};

// Python's multiprocessing.dummy.JoinableQueue is queue.Queue too.
using JoinableQueue = Queue;

// ---- Pipes (multiprocessing.dummy.connection)

// One end of a thread pipe: what one end sends, the other receives, in
// order. Objects keep their C++ type as in Queue. Closing an end (or dropping
// its last handle) makes the other end's recv() raise EOFError once the
// messages sent before are consumed; using a closed end raises OSError.
class Connection {
 public:
  Connection() = default;

  template <class T>
  void send(const T& obj) {
    internal::Put(Out(), internal::MakeItem<Queue::Storage<T>>(obj), true,
                  std::nullopt);
  }
  template <class T = Object>
  T recv() {
    return internal::TakeItem<T>(internal::Get(In(), true, std::nullopt));
  }
  void send_bytes(std::string_view buf, std::size_t offset = 0,
                  std::optional<std::size_t> size = std::nullopt);
  std::string recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);
  // Whether a message (or the end of file) is ready: at once by default,
  // within `timeout`, or waiting for ever with std::nullopt.
  bool poll(Timeout timeout = std::chrono::duration<double>::zero());
  void close();
  bool closed() const;
  bool readable() const;
  bool writable() const;

  friend bool operator==(const Connection& a, const Connection& b) {
    return a.impl_ == b.impl_;
  }

  struct Impl;

 private:
  friend std::pair<Connection, Connection> Pipe(bool duplex);
  internal::QueueCore& In() const;
  internal::QueueCore& Out() const;
  std::shared_ptr<Impl> impl_;
};

// Returns (conn1, conn2): with duplex (the default) both ends send and
// receive; otherwise conn1 only receives and conn2 only sends.
std::pair<Connection, Connection> Pipe(bool duplex = true);

// ---- Pools

// multiprocessing.dummy.Pool is multiprocessing.pool.ThreadPool.
using Pool = pool::ThreadPool;

// ---- Shared values

namespace internal {
// A reference to one element, read and written under the owner's lock.
template <class T>
class Ref {
 public:
  Ref(T* p, RLock* lock) : p_(p), lock_(lock) {}
  operator T() const { return get(); }  // NOLINT: reads like Python
  T get() const {
    std::lock_guard<RLock> g(*lock_);
    return *p_;
  }
  const Ref& operator=(const T& v) const {
    std::lock_guard<RLock> g(*lock_);
    *p_ = v;
    return *this;
  }
  const Ref& operator=(const Ref& other) const { return *this = other.get(); }
  // v += x and v -= x as one locked step.
  template <class U>
  const Ref& operator+=(const U& v) const {
    return Update([&v](T& t) { t += v; });
  }
  template <class U>
  const Ref& operator-=(const U& v) const {
    return Update([&v](T& t) { t -= v; });
  }
  template <class F>
  const Ref& Update(F&& f) const {
    std::lock_guard<RLock> g(*lock_);
    f(*p_);
    return *this;
  }

 private:
  T* p_;
  RLock* lock_;
};

template <class T>
std::ostream& operator<<(std::ostream& os, const Ref<T>& r) {
  return os << r.get();
}
}  // namespace internal

// A value shared between threads (what Value returns). Each access takes
// the value's lock; hold get_lock() for several steps at once.
template <sharedctypes::CType T>
class SharedValue {
 public:
  explicit SharedValue(const T& initial)
      : state_(std::make_shared<State>(State{initial, RLock()})) {}
  // v.value() = 3; int x = v.value(); v.value() += 1 (one locked step).
  internal::Ref<T> value() const { return {&state_->value, &state_->lock}; }
  T get() const { return value().get(); }
  void set(const T& v) const { value() = v; }
  RLock& get_lock() const { return state_->lock; }
  // "<Value(c_int(10))>".
  std::string repr() const {
    std::lock_guard<RLock> g(state_->lock);
    return "<Value(" + sharedctypes::internal::ValueRepr(&state_->value) + ")>";
  }

 private:
  struct State {
    T value;
    RLock lock;
  };
  std::shared_ptr<State> state_;
};

// An array shared between threads (what Array returns).
template <sharedctypes::CType T>
class SharedArray {
 public:
  using value_type = T;
  explicit SharedArray(std::vector<T> items)
      : state_(std::make_shared<State>(State{std::move(items), RLock()})) {}
  size_t size() const { return state_->items.size(); }
  size_t len() const { return size(); }
  // a[i], negative from the end; IndexError outside.
  internal::Ref<T> operator[](long long i) const {
    size_t index = sharedctypes::internal::CheckIndex(i, state_->items.size());
    return {&state_->items[index], &state_->lock};
  }
  T get(long long i) const { return (*this)[i].get(); }
  void set(long long i, const T& v) const { (*this)[i] = v; }
  // a[start:stop] with Python's clamping.
  std::vector<T> slice(long long start, long long stop) const {
    std::lock_guard<RLock> g(state_->lock);
    auto [b, e] =
        sharedctypes::internal::ClampSlice(start, stop, state_->items.size());
    return std::vector<T>(state_->items.begin() + b, state_->items.begin() + e);
  }
  // a[:]
  std::vector<T> list() const {
    std::lock_guard<RLock> g(state_->lock);
    return state_->items;
  }
  RLock& get_lock() const { return state_->lock; }

 private:
  struct State {
    std::vector<T> items;
    RLock lock;
  };
  std::shared_ptr<State> state_;
};

// Value<int>(10) or Value<'i'>(10).
template <sharedctypes::CType T>
SharedValue<T> Value(const T& initial = T{}) {
  return SharedValue<T>(initial);
}
template <char C>
SharedValue<sharedctypes::TypeCode<C>> Value(
    const sharedctypes::TypeCode<C>& initial = {}) {
  return SharedValue<sharedctypes::TypeCode<C>>(initial);
}
// Array<int>(10) (zeros), Array<int>({1, 2}), Array<'d'>(a_vector), ...
template <sharedctypes::CType T>
SharedArray<T> Array(size_t length) {
  return SharedArray<T>(std::vector<T>(length));
}
template <sharedctypes::CType T>
SharedArray<T> Array(std::initializer_list<T> init) {
  return SharedArray<T>(std::vector<T>(init));
}
template <sharedctypes::CType T, class R>
requires sharedctypes::InitializerRange<R, T> SharedArray<T> Array(
    const R& init) {
  return SharedArray<T>(std::vector<T>(std::begin(init), std::end(init)));
}
template <char C>
SharedArray<sharedctypes::TypeCode<C>> Array(size_t length) {
  return Array<sharedctypes::TypeCode<C>>(length);
}
template <char C>
SharedArray<sharedctypes::TypeCode<C>> Array(
    std::initializer_list<sharedctypes::TypeCode<C>> init) {
  return Array<sharedctypes::TypeCode<C>>(init);
}
template <char C, class R>
requires sharedctypes::InitializerRange<R, sharedctypes::TypeCode<C>>
    SharedArray<sharedctypes::TypeCode<C>> Array(const R& init) {
  return Array<sharedctypes::TypeCode<C>>(init);
}

template <class T>
std::ostream& operator<<(std::ostream& os, const SharedValue<T>& v) {
  return os << v.repr();
}

namespace internal {
// Converts any picklable value to an Object.
template <class T>
Object ToObject(const T& value) {
  if constexpr (std::is_convertible_v<const T&, Object>) {
    return Object(value);
  } else {
    return reduction::loads<Object>(reduction::dumps(value));
  }
}
template <class T>
T FromObject(const Object& value) {
  if constexpr (std::is_same_v<T, Object>) {
    return value;
  } else {
    return reduction::loads<T>(reduction::dumps(value));
  }
}

// A container Object and the mutex that guards it.
struct Shared {
  mutable std::mutex mutex;
  Object object;
};
}  // namespace internal

// Python's Namespace: named attributes, shared between threads.
//   ns.setattr("x", 10); ns["y"] = "hello"; ns.getattr("x") == Object(10)
//   repr(ns) == "Namespace(x=10, y='hello')"
class Namespace {
 public:
  Namespace();
  // AttributeError when absent.
  Object getattr(const std::string& name) const;
  template <class T>
  void setattr(const std::string& name, const T& value) const {
    SetObject(name, internal::ToObject(value));
  }
  // AttributeError when absent.
  void delattr(const std::string& name) const;
  bool hasattr(const std::string& name) const;

  class AttrRef {
   public:
    AttrRef(const Namespace& ns, std::string name)
        : ns_(ns), name_(std::move(name)) {}
    Object get() const { return ns_.getattr(name_); }
    operator Object() const { return get(); }  // NOLINT
    template <class T>
    T as() const {
      return internal::FromObject<T>(get());
    }
    template <class T>
    const AttrRef& operator=(const T& value) const {
      ns_.setattr(name_, value);
      return *this;
    }

   private:
    const Namespace& ns_;
    std::string name_;
  };
  AttrRef operator[](std::string name) const {
    return AttrRef(*this, std::move(name));
  }
  // "Namespace(x=10, y='hello')": the attributes sorted by name.
  std::string repr() const;

 private:
  void SetObject(const std::string& name, Object value) const;
  struct State;
  std::shared_ptr<State> state_;
};
std::ostream& operator<<(std::ostream& os, const Namespace& ns);
std::ostream& operator<<(std::ostream& os, const Namespace::AttrRef& ref);

// A list shared between threads (what Manager().list() returns); each call
// is one step under the list's mutex.
class List {
 public:
  List() : List(Object::list()) {}
  template <class S>
  explicit List(const S& sequence)
      : List(ToList(internal::ToObject(sequence))) {}

  template <class T>
  void append(const T& value) const {
    Append(internal::ToObject(value));
  }
  template <class S>
  void extend(const S& values) const {
    Extend(internal::ToObject(values));
  }
  // l[i] (negative from the end; IndexError outside).
  Object operator[](int64_t index) const;
  template <class T>
  void set(int64_t index, const T& value) const {
    Set(index, internal::ToObject(value));
  }
  int64_t len() const;
  // A copy of the whole list (Python's l[:]).
  Object copy() const;
  std::string repr() const;

 private:
  explicit List(Object list);
  static Object ToList(Object sequence);
  void Append(Object value) const;
  void Extend(Object values) const;
  void Set(int64_t index, Object value) const;
  std::shared_ptr<internal::Shared> state_;
};

// A dict shared between threads (what Manager().dict() returns).
class Dict {
 public:
  Dict();
  template <class K, class V>
  void set(const K& key, const V& value) const {
    Set(internal::ToObject(key), internal::ToObject(value));
  }
  // d[key]; KeyError when absent.
  template <class K>
  Object operator[](const K& key) const {
    return Get(internal::ToObject(key));
  }
  template <class K>
  Object get(const K& key, const Object& fallback = Object()) const {
    return GetOr(internal::ToObject(key), fallback);
  }
  template <class K>
  bool contains(const K& key) const {
    return Contains(internal::ToObject(key));
  }
  // del d[key]; KeyError when absent.
  template <class K>
  void del(const K& key) const {
    Del(internal::ToObject(key));
  }
  int64_t len() const;
  Object copy() const;
  std::string repr() const;

 private:
  void Set(Object key, Object value) const;
  Object Get(const Object& key) const;
  Object GetOr(const Object& key, const Object& fallback) const;
  bool Contains(const Object& key) const;
  void Del(const Object& key) const;
  std::shared_ptr<internal::Shared> state_;
};

std::ostream& operator<<(std::ostream& os, const List& l);
std::ostream& operator<<(std::ostream& os, const Dict& d);

// What Manager() returns: the factories of a SyncManager, making objects
// that threads share directly.
class SyncManager {
 public:
  // Nothing to start or stop: present so that programs switch namespaces.
  void start() {}
  void shutdown() {}

  dummy::Queue Queue(int64_t maxsize = 0) { return dummy::Queue(maxsize); }
  dummy::Queue JoinableQueue(int64_t maxsize = 0) {
    return dummy::Queue(maxsize);
  }
  dummy::Event Event() { return {}; }
  dummy::Lock Lock() { return {}; }
  dummy::RLock RLock() { return {}; }
  dummy::Semaphore Semaphore(int value = 1) { return dummy::Semaphore(value); }
  dummy::BoundedSemaphore BoundedSemaphore(int value = 1) {
    return dummy::BoundedSemaphore(value);
  }
  dummy::Condition Condition() { return {}; }
  dummy::Condition Condition(dummy::Lock lock) {
    return dummy::Condition(std::move(lock));
  }
  dummy::Condition Condition(dummy::RLock lock) {
    return dummy::Condition(std::move(lock));
  }
  dummy::Barrier Barrier(int parties, Timeout timeout = std::nullopt) {
    return dummy::Barrier(parties, nullptr, timeout);
  }
  template <sharedctypes::CType T>
  SharedValue<T> Value(const T& initial = T{}) {
    return dummy::Value<T>(initial);
  }
  template <sharedctypes::CType T, class R>
  SharedArray<T> Array(const R& init) {
    return dummy::Array<T>(init);
  }
  dummy::Namespace Namespace() { return {}; }
  Dict dict() { return {}; }
  List list() { return {}; }
  template <class S>
  List list(const S& sequence) {
    return List(sequence);
  }
};

// Python's multiprocessing.dummy.Manager().
inline SyncManager Manager() { return {}; }

// ---------------------------------------------------------------------------

template <class Predicate>
auto Condition::wait_for(Predicate predicate, Timeout timeout)
    -> decltype(predicate()) {
  const auto end = internal::EndOf(timeout);
  auto result = predicate();
  while (!result && WaitUntil(end)) result = predicate();
  return result;
}

}  // namespace multiprocessing::dummy

#endif  // MULTIPROCESSING_DUMMY_DUMMY_H_
