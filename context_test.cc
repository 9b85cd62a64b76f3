// A context's whole API (ctx.Lock(), ctx.Queue(), ctx.Pool(), ...) under each
// start method, and what happens when objects of a fork context meet a child
// of another start method.
#include <chrono>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "multiprocessing.h"

namespace {

using std::chrono::seconds;

int square(int x) { return x * x; }
MP_REGISTER_FUNCTION(square);

std::string StartMethodHere(int) { return *mp::get_start_method(); }
MP_REGISTER_FUNCTION(StartMethodHere);

// Uses every kind of object it is handed, so a child of each start method
// proves it received working handles.
void UseEverything(mp::Lock lock, mp::RLock rlock, mp::Semaphore sem,
                   mp::BoundedSemaphore bounded, mp::Condition cond,
                   mp::Event event, mp::Barrier barrier, mp::Queue q,
                   mp::JoinableQueue jq, mp::SimpleQueue sq,
                   mp::Connection conn, mp::sharedctypes::Synchronized<int> v,
                   mp::sharedctypes::SynchronizedArray<double> a,
                   mp::sharedctypes::CValue<long> raw_v,
                   mp::sharedctypes::CArray<int> raw_a) {
  {
    std::lock_guard<mp::Lock> g1(lock);
    std::lock_guard<mp::RLock> g2(rlock);
    v.value() += 1;
    a[0] = 2.5;
    raw_v.value() = 7;
    raw_a[1] = 9;
  }
  sem.release();
  bounded.acquire();
  q.put(std::string("q"));
  jq.put(1);
  sq.put(2);
  conn.send(3);
  {
    std::lock_guard<mp::Condition> g(cond);
    cond.notify_all();
  }
  event.set();
  barrier.wait(seconds(60));
}
MP_REGISTER_FUNCTION(UseEverything);

void SetEvent(mp::Event e) { e.set(); }
MP_REGISTER_FUNCTION(SetEvent);
void TakeLock(mp::Lock lock) { std::lock_guard<mp::Lock> g(lock); }
MP_REGISTER_FUNCTION(TakeLock);
void BumpValue(mp::sharedctypes::Synchronized<int> v) { v.value() += 1; }
MP_REGISTER_FUNCTION(BumpValue);

class ContextTest : public ::testing::TestWithParam<const char*> {
 protected:
  const mp::Context& ctx() const { return mp::get_context(GetParam()); }
  static void Join(mp::Process& p) {
    p.join(seconds(60));
    ASSERT_FALSE(p.is_alive()) << p.name() << " did not finish";
    EXPECT_EQ(p.exitcode(), 0);
  }
};

TEST_P(ContextTest, EveryObjectReachesAChildOfTheSameContext) {
  const mp::Context& c = ctx();
  mp::Lock lock = c.Lock();
  mp::RLock rlock = c.RLock();
  mp::Semaphore sem = c.Semaphore(0);
  mp::BoundedSemaphore bounded = c.BoundedSemaphore(1);
  mp::Condition cond = c.Condition();
  mp::Event event = c.Event();
  mp::Barrier barrier = c.Barrier(2);
  mp::Queue q = c.Queue();
  mp::JoinableQueue jq = c.JoinableQueue(4);
  mp::SimpleQueue sq = c.SimpleQueue();
  auto [mine, theirs] = c.Pipe();
  auto v = c.Value<int>(41);
  auto a = c.Array<double>({0.0, 1.0});
  auto raw_v = c.RawValue<'l'>(0);
  auto raw_a = c.RawArray<int>(3);

  mp::Process p =
      c.Process(&UseEverything, lock, rlock, sem, bounded, cond, event, barrier,
                q, jq, sq, theirs, v, a, raw_v, raw_a);
  p.start();
  barrier.wait(seconds(60));
  Join(p);
  EXPECT_EQ(v.get(), 42);
  EXPECT_EQ(a[0], 2.5);
  EXPECT_EQ(raw_v.value(), 7);
  EXPECT_EQ(raw_a[1], 9);
  EXPECT_TRUE(sem.acquire(true, seconds(0)));
  EXPECT_EQ(bounded.get_value(), 0) << "the child took it";
  EXPECT_EQ(q.get<std::string>(true, seconds(30)), "q");
  EXPECT_EQ(jq.get<int>(true, seconds(30)), 1);
  EXPECT_EQ(sq.get<int>(), 2);
  ASSERT_TRUE(mine.poll(seconds(30)));
  EXPECT_EQ(mine.recv<int>(), 3);
  EXPECT_TRUE(event.is_set());
}

TEST_P(ContextTest, PoolAndManagerUseTheContextsStartMethod) {
  mp::Pool pool = ctx().Pool(2);
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}),
            (std::vector<int>{1, 4, 9}));
  EXPECT_EQ(pool.apply(StartMethodHere, 0), GetParam());
  pool.close();
  pool.join();

  auto manager = ctx().Manager();
  auto list = manager.list();
  list.append(5);
  EXPECT_EQ(list.str(), "[5]");
  manager.shutdown();
}

TEST_P(ContextTest, ForkContextObjectsStayWithForkChildren) {
  const mp::Context& fork = mp::get_context("fork");
  mp::Lock lock = fork.Lock();
  mp::Event event = fork.Event();
  auto value = fork.Value<int>(0);
  if (std::string(GetParam()) == "fork") {
    mp::Process p1 = ctx().Process(&TakeLock, lock);
    mp::Process p2 = ctx().Process(&SetEvent, event);
    mp::Process p3 = ctx().Process(&BumpValue, value);
    for (mp::Process* p : {&p1, &p2, &p3}) p->start();
    for (mp::Process* p : {&p1, &p2, &p3}) Join(*p);
    EXPECT_TRUE(event.is_set());
    EXPECT_EQ(value.get(), 1);
    return;
  }
  // As CPython: refused when the child is started, before it runs.
  mp::Process p1 = ctx().Process(&TakeLock, lock);
  EXPECT_THROW(p1.start(), mp::RuntimeError);
  mp::Process p2 = ctx().Process(&SetEvent, event);
  EXPECT_THROW(p2.start(), mp::RuntimeError);
  mp::Process p3 = ctx().Process(&BumpValue, value);
  EXPECT_THROW(p3.start(), mp::RuntimeError);
  EXPECT_FALSE(event.is_set());

  // Objects of the spawn context, or of the module's functions, go
  // anywhere.
  mp::Event anywhere = mp::Event();
  mp::Process p4 = ctx().Process(&SetEvent, anywhere);
  p4.start();
  Join(p4);
  EXPECT_TRUE(anywhere.is_set());
  mp::Lock spawn_lock = mp::get_context("spawn").Lock();
  mp::Process p5 = ctx().Process(&TakeLock, spawn_lock);
  p5.start();
  Join(p5);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ContextTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) {
                           return std::string(info.param);
                         });

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
