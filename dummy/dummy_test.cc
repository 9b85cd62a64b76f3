#include "dummy/dummy.h"

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace multiprocessing::dummy {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Every blocking call in these tests has this deadline: a bug fails the test
// instead of hanging it.
constexpr seconds kDeadline(20);

void JoinOrFail(Process& p) {
  p.join(kDeadline);
  ASSERT_FALSE(p.is_alive()) << p.repr() << " did not end in time";
}

TEST(ProcessTest, RunsTargetWithArguments) {
  Queue q;
  Process p([](Queue q, int x, std::string s) { q.put(s + std::to_string(x)); },
            q, 42, std::string("x"));
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.exitcode(), std::nullopt);
  EXPECT_EQ(p.ident(), std::nullopt);
  EXPECT_NE(p.repr().find("initial"), std::string::npos) << p.repr();
  p.start();
  EXPECT_TRUE(p.ident().has_value());
  EXPECT_EQ(q.get<std::string>(true, kDeadline), "x42");
  JoinOrFail(p);
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_NE(p.repr().find("stopped"), std::string::npos) << p.repr();
  EXPECT_EQ(p.repr().rfind("<DummyProcess(Thread-", 0), 0u) << p.repr();
}

TEST(ProcessTest, NamesDaemonAndCurrentProcess) {
  EXPECT_EQ(current_process().name(), "MainThread");
  EXPECT_FALSE(current_process().daemon());
  Queue q;
  Process p({.name = "worker", .daemon = true},
            [q]() mutable { q.put(current_process().name()); });
  EXPECT_EQ(p.name(), "worker");
  EXPECT_TRUE(p.daemon());
  p.start();
  EXPECT_THROW(p.set_daemon(false), RuntimeError);
  EXPECT_EQ(q.get<std::string>(true, kDeadline), "worker");
  JoinOrFail(p);
  EXPECT_THROW(p.start(), RuntimeError);
}

TEST(ProcessTest, JoinErrorsAndTimeout) {
  Process idle;
  EXPECT_THROW(idle.join(milliseconds(1)), RuntimeError);
  Event go;
  Process p([go]() mutable { go.wait(kDeadline); });
  p.start();
  p.join(milliseconds(10));
  EXPECT_TRUE(p.is_alive());
  EXPECT_EQ(p.exitcode(), std::nullopt);
  auto children = active_children();
  ASSERT_EQ(children.size(), 1u);
  EXPECT_TRUE(children[0] == p);
  go.set();
  JoinOrFail(p);
  EXPECT_TRUE(active_children().empty());
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(ProcessTest, ThrowingTargetEndsTheThread) {
  Process p([] { throw ValueError("boom"); });
  testing::internal::CaptureStderr();
  p.start();
  JoinOrFail(p);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("Exception in thread Thread-"), std::string::npos) << err;
  EXPECT_NE(err.find("ValueError: boom"), std::string::npos) << err;
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(ProcessTest, StartFromAnotherThreadIsRefused) {
  Process inner;
  Queue q;
  Process p([inner, q]() mutable {
    try {
      inner.start();
      q.put(std::string("started"));
    } catch (const RuntimeError&) {
      q.put(std::string("refused"));
    }
  });
  p.start();
  EXPECT_EQ(q.get<std::string>(true, kDeadline), "refused");
  JoinOrFail(p);
}

TEST(LockTest, LockAndRLockSemantics) {
  Lock lock;
  EXPECT_TRUE(lock.acquire());
  EXPECT_FALSE(lock.acquire(false));
  EXPECT_FALSE(lock.acquire(true, milliseconds(5)));
  EXPECT_NE(lock.repr().find("<locked _thread.lock"), std::string::npos);
  lock.release();
  EXPECT_THROW(lock.release(), RuntimeError);

  RLock rlock;
  EXPECT_TRUE(rlock.acquire());
  EXPECT_TRUE(rlock.acquire());
  EXPECT_NE(rlock.repr().find("count=2"), std::string::npos) << rlock.repr();
  Queue q;
  Process other([rlock, q]() mutable {
    q.put(rlock.acquire(true, milliseconds(5)));
    try {
      rlock.release();
    } catch (const RuntimeError&) {
      q.put(std::string("not owner"));
    }
  });
  other.start();
  EXPECT_FALSE(q.get<bool>(true, kDeadline));
  EXPECT_EQ(q.get<std::string>(true, kDeadline), "not owner");
  JoinOrFail(other);
  rlock.release();
  rlock.release();
  EXPECT_THROW(rlock.release(), RuntimeError);
}

TEST(LockTest, MutualExclusionAcrossThreads) {
  Lock lock;
  auto counter = Value<int>(0);
  int plain = 0;
  std::vector<Process> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([lock, &plain]() mutable {
      for (int j = 0; j < 1000; ++j) {
        std::lock_guard<Lock> guard(lock);
        ++plain;
      }
    });
  }
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([counter] {
      for (int j = 0; j < 1000; ++j) counter.value() += 1;
    });
  }
  for (auto& t : threads) t.start();
  for (auto& t : threads) JoinOrFail(t);
  EXPECT_EQ(plain, 4000);
  EXPECT_EQ(counter.get(), 4000);
}

TEST(SemaphoreTest, CountsAndBounds) {
  Semaphore s(2);
  EXPECT_TRUE(s.acquire());
  EXPECT_TRUE(s.acquire(false));
  EXPECT_FALSE(s.acquire(true, milliseconds(5)));
  EXPECT_EQ(s.get_value(), 0);
  s.release();
  s.release();
  s.release();  // unbounded
  EXPECT_EQ(s.get_value(), 3);
  EXPECT_THROW(Semaphore(-1), ValueError);

  BoundedSemaphore b(1);
  EXPECT_THROW(b.release(), ValueError);
  EXPECT_TRUE(b.acquire());
  EXPECT_NE(b.repr().find("BoundedSemaphore"), std::string::npos);
  EXPECT_NE(b.repr().find("value=0/1"), std::string::npos) << b.repr();
  b.release();
}

TEST(ConditionTest, WaitNotifyWithRLockHeldTwice) {
  Condition cond;
  EXPECT_THROW(cond.wait(milliseconds(1)), RuntimeError);
  EXPECT_THROW(cond.notify(), RuntimeError);
  bool ready = false;
  cond.acquire();
  cond.acquire();
  Process p([cond, &ready]() mutable {
    std::lock_guard<Condition> guard(cond);
    ready = true;
    cond.notify();
  });
  p.start();
  EXPECT_TRUE(cond.wait_for([&] { return ready; }, kDeadline));
  EXPECT_NE(cond.repr().find("count=2"), std::string::npos) << cond.repr();
  cond.release();
  cond.release();
  JoinOrFail(p);
  EXPECT_NE(cond.repr().find("count=0"), std::string::npos) << cond.repr();
}

TEST(ConditionTest, TimeoutAndNotifyAllOverLock) {
  Condition cond{Lock()};
  cond.acquire();
  EXPECT_FALSE(cond.wait(milliseconds(5)));
  cond.release();

  std::atomic<int> woken{0};
  std::vector<Process> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([cond, &woken]() mutable {
      std::unique_lock<Condition> guard(cond);
      if (cond.wait(kDeadline)) ++woken;
    });
  }
  for (auto& t : threads) t.start();
  // Wake them once all three are inside wait().
  const auto end = std::chrono::steady_clock::now() + kDeadline;
  for (;;) {
    ASSERT_LT(std::chrono::steady_clock::now(), end);
    std::lock_guard<Condition> guard(cond);
    if (cond.repr().find(", 3)>") != std::string::npos) {
      cond.notify_all();
      break;
    }
  }
  for (auto& t : threads) JoinOrFail(t);
  EXPECT_EQ(woken.load(), 3);
}

TEST(EventTest, SetWaitClear) {
  Event e;
  EXPECT_FALSE(e.is_set());
  EXPECT_FALSE(e.wait(milliseconds(5)));
  EXPECT_NE(e.repr().find("unset"), std::string::npos);
  Process p([e]() mutable { e.set(); });
  p.start();
  EXPECT_TRUE(e.wait(kDeadline));
  JoinOrFail(p);
  e.clear();
  EXPECT_FALSE(e.is_set());
}

TEST(BarrierTest, IndicesActionTimeoutAndReset) {
  std::atomic<int> actions{0};
  Barrier b(3, [&actions] { ++actions; });
  EXPECT_THROW(Barrier(0), ValueError);
  Queue q;
  std::vector<Process> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([b, q]() mutable { q.put(b.wait(kDeadline)); });
  }
  for (auto& t : threads) t.start();
  int mine = b.wait(kDeadline);
  std::vector<int> indices{mine, q.get<int>(true, kDeadline),
                           q.get<int>(true, kDeadline)};
  std::sort(indices.begin(), indices.end());
  EXPECT_EQ(indices, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(actions.load(), 1);
  for (auto& t : threads) JoinOrFail(t);

  EXPECT_THROW(b.wait(milliseconds(5)), BrokenBarrierError);
  EXPECT_TRUE(b.broken());
  EXPECT_THROW(b.wait(kDeadline), BrokenBarrierError);
  b.reset();
  EXPECT_FALSE(b.broken());
  EXPECT_EQ(b.n_waiting(), 0);

  Process waiter([b, q]() mutable {
    try {
      b.wait(kDeadline);
      q.put(std::string("passed"));
    } catch (const BrokenBarrierError&) {
      q.put(std::string("broken"));
    }
  });
  waiter.start();
  while (b.n_waiting() == 0) std::this_thread::yield();
  b.abort();
  EXPECT_EQ(q.get<std::string>(true, kDeadline), "broken");
  JoinOrFail(waiter);
}

TEST(QueueTest, TypesFullEmptyAndTaskTracking) {
  Queue q(2);
  q.put(1);
  q.put("two");
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put(3, true, milliseconds(5)), Full);
  EXPECT_THROW(q.put_nowait(3), Full);
  EXPECT_EQ(q.qsize(), 2);
  EXPECT_EQ(q.get<int>(true, kDeadline), 1);
  // A str item received as an Object, through pickle.
  EXPECT_EQ(repr(q.get(true, kDeadline)), "'two'");
  EXPECT_THROW(q.get(true, milliseconds(5)), Empty);
  EXPECT_THROW(q.get_nowait(), Empty);
  EXPECT_TRUE(q.empty());

  // A non-picklable value travels as itself, and only as itself.
  struct Opaque {
    int x;
  };
  q.put(Opaque{7});
  q.put(Opaque{8});
  EXPECT_EQ(q.get<Opaque>(true, kDeadline).x, 7);
  EXPECT_THROW(q.get<int>(true, kDeadline), TypeError);

  q.task_done();
  q.task_done();
  q.task_done();
  EXPECT_FALSE(q.join(milliseconds(5)));  // one item is not done
  q.task_done();
  EXPECT_TRUE(q.join(kDeadline));
  EXPECT_THROW(q.task_done(), ValueError);
}

TEST(QueueTest, JoinableQueueAcrossThreads) {
  JoinableQueue q;
  std::atomic<int> sum{0};
  Process consumer({.daemon = true}, [q, &sum]() mutable {
    for (;;) {
      int v = q.get<int>();
      sum += v;
      q.task_done();
    }
  });
  consumer.start();
  for (int i = 1; i <= 100; ++i) q.put(i);
  EXPECT_TRUE(q.join(kDeadline));
  EXPECT_EQ(sum.load(), 5050);
}

TEST(PipeTest, DuplexSimplexPollAndEof) {
  auto [a, b] = Pipe();
  Connection writer = b;
  EXPECT_FALSE(b.poll());
  a.send(std::vector<int>{1, 2});
  EXPECT_TRUE(b.poll(kDeadline));
  EXPECT_EQ(repr(b.recv()), "[1, 2]");
  b.send_bytes("thank you", 6);
  EXPECT_EQ(a.recv_bytes(), "you");
  b.send_bytes("toolong");
  EXPECT_THROW(a.recv_bytes(3), OSError);
  EXPECT_THROW(a.send_bytes("x", 2), ValueError);

  Process p([writer]() mutable {
    for (int i = 0; i < 3; ++i) writer.send(i);
    writer.close();
  });
  p.start();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a.recv<int>(), i);
  JoinOrFail(p);
  EXPECT_TRUE(a.poll(kDeadline));  // end of file is ready
  EXPECT_THROW(a.recv(), EOFError);
  EXPECT_THROW(b.send(1), OSError);

  auto [r, w] = Pipe(false);
  EXPECT_TRUE(r.readable());
  EXPECT_FALSE(r.writable());
  EXPECT_THROW(r.send(1), OSError);
  EXPECT_THROW(w.recv(), OSError);
  w.send(std::string("x"));
  EXPECT_EQ(r.recv<std::string>(), "x");
}

TEST(PipeTest, DroppingTheLastHandleIsEndOfFile) {
  Connection reader;
  {
    auto [r, w] = Pipe(false);
    reader = r;
    w.send(5);
  }
  EXPECT_EQ(reader.recv<int>(), 5);
  EXPECT_THROW(reader.recv(), EOFError);
}

int Square(int x) { return x * x; }

TEST(PoolTest, IsThreadPool) {
  Pool pool(3);
  auto squares = pool.map(Square, std::vector<int>{1, 2, 3});
  EXPECT_EQ(squares, (std::vector<int>{1, 4, 9}));
}

TEST(SharedTest, ValueArrayAndRepr) {
  auto v = Value<'d'>(1.5);
  v.value() = v.value() * 2;
  EXPECT_EQ(v.get(), 3.0);
  EXPECT_EQ(v.repr(), "<Value(c_double(3.0))>");
  auto a = Array<'i'>({0, 1, 2, 3});
  a[1] = -a[1];
  a[-1] += 10;
  EXPECT_EQ(a.list(), (std::vector<int>{0, -1, 2, 13}));
  EXPECT_EQ(a.slice(1, 100), (std::vector<int>{-1, 2, 13}));
  EXPECT_THROW(a[4], IndexError);
  EXPECT_EQ(Array<double>(3).len(), 3u);
  std::lock_guard<RLock> guard(a.get_lock());
  a[0] = 5;  // the lock is recursive
  EXPECT_EQ(a.get(0), 5);
}

TEST(ManagerTest, PlainThreadSharedObjects) {
  auto manager = Manager();
  auto d = manager.dict();
  auto l = manager.list(std::vector<int>{9, 8});
  auto ns = manager.Namespace();
  Process p([d, l, ns] {
    d.set(1, "1");
    d.set("2", 2);
    d.set(0.25, nullptr);
    l.append(7);
    l.set(0, 10);
    ns["x"] = 10;
    ns.setattr("y", "hello");
    ns.setattr("_hidden", 1);
  });
  p.start();
  JoinOrFail(p);
  EXPECT_EQ(d.repr(), "{1: '1', '2': 2, 0.25: None}");
  EXPECT_EQ(repr(d[1]), "'1'");
  EXPECT_THROW(d[3], KeyError);
  EXPECT_EQ(repr(d.get(3, "none")), "'none'");
  EXPECT_TRUE(d.contains("2"));
  d.del("2");
  EXPECT_EQ(d.len(), 2);
  EXPECT_THROW(d.set(std::vector<int>{1}, 1), TypeError);
  EXPECT_EQ(l.repr(), "[10, 8, 7]");
  EXPECT_EQ(repr(l[-1]), "7");
  EXPECT_THROW(l[3], IndexError);
  l.extend(std::vector<int>{1, 2});
  EXPECT_EQ(l.len(), 5);
  EXPECT_EQ(ns.repr(), "Namespace(x=10, y='hello')");
  EXPECT_EQ(ns["x"].as<int>(), 10);
  EXPECT_THROW(ns.getattr("z"), AttributeError);
  ns.delattr("x");
  EXPECT_FALSE(ns.hasattr("x"));

  auto lock = manager.Lock();
  auto cond = manager.Condition(lock);
  auto q = manager.Queue(1);
  q.put(1);
  EXPECT_THROW(q.put_nowait(2), Full);
  auto value = manager.Value<int>(3);
  EXPECT_EQ(value.get(), 3);
  EXPECT_EQ(manager.Array<int>(std::vector<int>{1, 2}).len(), 2u);
  EXPECT_EQ(manager.Semaphore(2).get_value(), 2);
  manager.shutdown();
}

}  // namespace
}  // namespace multiprocessing::dummy
