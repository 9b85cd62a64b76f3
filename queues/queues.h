// Queues between processes, as Python's multiprocessing.Queue, SimpleQueue and
// JoinableQueue.
//
//   multiprocessing::Queue q;
//   multiprocessing::Process p([q]() mutable {
//     q.put(std::make_tuple(42, std::nullopt, "hello"));
//   });
//   p.start();
//   std::cout << repr(q.get()) << "\n";   // (42, None, 'hello')
//   p.join();
//
// Items are pickled (reduction/) in put(), in the calling thread, so an item
// that cannot be pickled raises there (CPython loses it in the feeder thread).
// Items may carry file descriptors (a Connection, a Lock...): they travel
// beside the pickle, and stay valid even if the putting process exits first.
// get<T>() unpickles into T; the default, Object, takes any value. Queues are
// passed to children as Process arguments under every start method.
//
// The transport is a ring in shared memory (internal/shm_ring.h) rather than
// CPython's pipe: put copies the pickle into the ring when there is room
// (waiting up to half a millisecond for consumers to make some), and otherwise
// hands it to the queue's feeder thread, which writes buffered items in
// batches as consumers make room; so put never blocks for long on a full
// ring, as in CPython. A process that exits flushes what its feeder holds
// unless it called cancel_join_thread().
//
// Processes that die (SIGKILL, a crash) mid-put or mid-get. An item is
// delivered whole or not at all: a consumer never gets a torn item. A consumer
// killed in get() does not wedge the others, and an item is taken only once
// its copy is complete, so the item it was taking (even one larger than the
// ring, gathered through a spill that the next consumer resumes) goes to the
// next consumer. What can still be lost:
//   - an item that get() had returned to a process that then died;
//   - items a producer put that were still in its feeder thread when it died
//     (or exited after cancel_join_thread()): qsize() does not count them, but
//     on a bounded queue their slots stay taken, and a JoinableQueue counts
//     them as unfinished, so join() waits for them until its timeout;
//   - an item larger than the ring (4 MiB) whose producer died before it had
//     written all of it: the consumer that meets it gets OSError ("a producer
//     died in the middle of putting an item"), and its next get continues
//     with the items after it;
//   - an item carrying file descriptors whose consumer died while receiving
//     them: the next consumer gets OSError for it.
// A small item whose producer died while writing it is never seen (its seal is
// written last).
#ifndef MULTIPROCESSING_QUEUES_QUEUES_H_
#define MULTIPROCESSING_QUEUES_QUEUES_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "errors/errors.h"
#include "reduction/pickle.h"

namespace multiprocessing {
namespace queues {

// queue.Empty and queue.Full.
class Empty : public Exception {
 public:
  explicit Empty(const std::string& message = "") : Exception(message) {}
  const char* python_name() const noexcept override { return "Empty"; }
};
class Full : public Exception {
 public:
  explicit Full(const std::string& message = "") : Exception(message) {}
  const char* python_name() const noexcept override { return "Full"; }
};

// Seconds; std::nullopt blocks for ever.
using Timeout = std::optional<std::chrono::duration<double>>;

namespace internal {
class QueueCore;

// This thread's buffer for pickling items, reused put after put.
std::string& PickleBuffer();

// Pickles a queue item into this thread's buffer, valid until its next put;
// the descriptors it carries go to `oob`.
template <class T>
std::string_view PickleItem(const T& obj, reduction::OutOfBand* oob) {
  std::string& buffer = PickleBuffer();
  reduction::dumps_into(&buffer, obj, oob);
  return buffer;
}
}  // namespace internal

// Python's multiprocessing.Queue. Copies are handles to the same queue.
class Queue {
 public:
  // `maxsize` <= 0 means unbounded.
  explicit Queue(int64_t maxsize = 0);

  // Puts `obj`; with `block`, waits up to `timeout` for a free slot when the
  // queue is full, else raises queues::Full at once. Raises ValueError after
  // close().
  template <class T>
  void put(const T& obj, bool block = true, Timeout timeout = std::nullopt) {
    reduction::OutOfBand oob;
    put_view(internal::PickleItem(obj, &oob), block, timeout, &oob);
  }
  template <class T>
  void put_nowait(const T& obj) {
    put(obj, false);
  }

  // Takes the next item; with `block`, waits up to `timeout` for one, else
  // raises queues::Empty. OSError if the next item was lost with a process
  // that died (see above); the next get continues after it.
  template <class T = reduction::Object>
  T get(bool block = true, Timeout timeout = std::nullopt) {
    reduction::OutOfBand oob;
    std::string_view pickled = get_view(block, timeout, &oob);
    return reduction::loads<T>(pickled, &oob);
  }
  template <class T = reduction::Object>
  T get_nowait() {
    return get<T>(false);
  }

  // The same with already pickled items. put_view takes over the
  // descriptors in `oob` that the pickle refers to; get_view gives them to
  // `oob` (else closes them).
  void put_bytes(const std::string& pickled, bool block = true,
                 Timeout timeout = std::nullopt) {
    put_view(pickled, block, timeout);
  }
  void put_view(std::string_view pickled, bool block = true,
                Timeout timeout = std::nullopt,
                reduction::OutOfBand* oob = nullptr);
  std::string get_bytes(bool block = true, Timeout timeout = std::nullopt);
  // The next pickle, in a buffer of this thread's that the next get reuses.
  std::string_view get_view(bool block = true, Timeout timeout = std::nullopt,
                            reduction::OutOfBand* oob = nullptr);

  // Approximate, as in Python: items in the queue's ring and in this
  // process's feeder thread, not yet got. Items in other processes' feeders are
  // not counted (they may never arrive: their process may die).
  int64_t qsize() const;
  bool empty() const;
  bool full() const;
  int64_t maxsize() const;

  // This process will put no more: the feeder flushes what it holds and ends.
  // put and get then raise.
  void close();
  // Waits for the feeder to flush and end; only after close() (else
  // AssertionError).
  void join_thread();
  // Exit (and the last handle going) won't wait for the feeder: buffered items
  // may be lost.
  void cancel_join_thread();

  // For Pickler<Queue>: the ring's fd and its descriptor channel's ends, and
  // a queue built from received ones (taking ownership of them).
  int fd() const;
  int channel_send_fd() const;
  int channel_recv_fd() const;
  static Queue FromFds(int fd, int channel_send, int channel_recv,
                       int64_t maxsize);

 protected:
  explicit Queue(std::shared_ptr<internal::QueueCore> core)
      : core_(std::move(core)) {}
  std::shared_ptr<internal::QueueCore> core_;
};

// Python's JoinableQueue: a Queue whose consumers call task_done() for each
// item, and join() waits until every item put has been marked done.
class JoinableQueue : public Queue {
 public:
  explicit JoinableQueue(int64_t maxsize = 0);
  // ValueError if called more times than items were put.
  void task_done();
  // Waits until every item put was marked done; false if `timeout` passed
  // first.
  bool join(Timeout timeout = std::nullopt);

  static JoinableQueue FromFds(int fd, int channel_send, int channel_recv,
                               int64_t maxsize);

 private:
  explicit JoinableQueue(std::shared_ptr<internal::QueueCore> core)
      : Queue(std::move(core)) {}
};

// Python's SimpleQueue: no feeder thread and no size; put writes straight into
// the ring, waiting for room.
class SimpleQueue {
 public:
  SimpleQueue();
  template <class T>
  void put(const T& obj) {
    reduction::OutOfBand oob;
    put_view(internal::PickleItem(obj, &oob), &oob);
  }
  template <class T = reduction::Object>
  T get() {
    reduction::OutOfBand oob;
    std::string pickled = get_bytes(&oob);
    return reduction::loads<T>(pickled, &oob);
  }
  void put_bytes(const std::string& pickled) { put_view(pickled); }
  // As Queue's.
  void put_view(std::string_view pickled, reduction::OutOfBand* oob = nullptr);
  std::string get_bytes(reduction::OutOfBand* oob = nullptr);
  bool empty() const;
  void close();

  int fd() const;
  int channel_send_fd() const;
  int channel_recv_fd() const;
  static SimpleQueue FromFds(int fd, int channel_send, int channel_recv);

 private:
  explicit SimpleQueue(std::shared_ptr<internal::QueueCore> core)
      : core_(std::move(core)) {}
  std::shared_ptr<internal::QueueCore> core_;
};

}  // namespace queues

// Queues travel to spawn and forkserver children as their ring's fd and its
// descriptor channel's (out of band), and their size.
namespace reduction {
template <class Q>
requires std::is_same_v<Q, queues::Queue> ||
    std::is_same_v<Q, queues::JoinableQueue> ||
    std::is_same_v<Q, queues::SimpleQueue>
struct Pickler<Q> {
  static void Save(Writer& w, const Q& q) {
    int64_t maxsize = 0;
    if constexpr (!std::is_same_v<Q, queues::SimpleQueue>)
      maxsize = q.maxsize();
    auto index = [&w](int fd) { return static_cast<int64_t>(w.add_fd(fd)); };
    w.save(std::make_tuple(index(q.fd()), index(q.channel_send_fd()),
                           index(q.channel_recv_fd()), maxsize));
  }
  static Q Load(Reader& r) {
    auto [ring, send, recv, maxsize] =
        r.load<std::tuple<int64_t, int64_t, int64_t, int64_t>>();
    // Each dup is owned by a guard until the queue takes them all.
    reduction::OutOfBand fds;
    for (int64_t index : {ring, send, recv}) {
      fds.fds.push_back(r.dup_fd(static_cast<size_t>(index)));
    }
    const int f0 = fds.release(0), f1 = fds.release(1), f2 = fds.release(2);
    if constexpr (std::is_same_v<Q, queues::SimpleQueue>) {
      return Q::FromFds(f0, f1, f2);
    } else {
      return Q::FromFds(f0, f1, f2, maxsize);
    }
  }
};
}  // namespace reduction

using queues::JoinableQueue;
using queues::Queue;
using queues::SimpleQueue;

namespace internal {
// ctx.Queue(), ctx.JoinableQueue(), ctx.SimpleQueue() (process/context.h).
struct ContextQueues {
  static queues::Queue Queue(int64_t maxsize) { return queues::Queue(maxsize); }
  static queues::JoinableQueue JoinableQueue(int64_t maxsize) {
    return queues::JoinableQueue(maxsize);
  }
  static queues::SimpleQueue SimpleQueue() { return queues::SimpleQueue(); }
};
}  // namespace internal

}  // namespace multiprocessing

#endif  // MULTIPROCESSING_QUEUES_QUEUES_H_
