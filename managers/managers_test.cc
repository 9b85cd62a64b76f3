// Managers across real processes: every proxy type, the three start methods,
// reference counting, nested objects, errors, remote servers, shutdown and
// the death of the owner or of the server.
#include "managers/managers.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "connection/connection.h"
#include "connection/listener.h"
#include "errors/errors.h"
#include "gtest/gtest.h"
#include "managers/internal/python_client.h"
#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
namespace managers = mp::managers;
using managers::slice;
using mp::reduction::Object;
using namespace std::chrono_literals;

namespace {

// Every blocking call of a test is bounded by this.
constexpr auto kDeadline = 20s;

std::vector<int> Range(int n) {
  std::vector<int> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

void JoinOrFail(mp::Process& p) {
  p.join(kDeadline);
  ASSERT_FALSE(p.is_alive()) << "the child did not finish in time";
  if (p.is_alive()) p.kill();
  EXPECT_EQ(p.exitcode(), 0);
}

// Waits (bounded) until process `pid` is gone.
bool WaitPidGone(int pid, std::chrono::seconds deadline) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  int r = ::poll(&p, 1, static_cast<int>(deadline.count() * 1000));
  ::close(fd);
  return r == 1;
}

}  // namespace

// Functions run in children under every start method.
void ChildModifies(managers::DictProxy d, managers::ListProxy l,
                   managers::NamespaceProxy ns, managers::ValueProxy v,
                   managers::ArrayProxy a) {
  d[1] = "1";
  d["2"] = 2;
  l.reverse();
  l.append(100);
  ns["x"] = 42;
  v.set(3.5);
  a[0] = -1;
}
MP_REGISTER_FUNCTION(ChildModifies);

void ChildSyncs(managers::QueueProxy q, managers::EventProxy e,
                managers::AcquirerProxy lock, managers::AcquirerProxy sem,
                managers::BarrierProxy barrier, managers::ConditionProxy cond,
                managers::ListProxy log) {
  e.wait(kDeadline);
  {
    std::lock_guard<managers::AcquirerProxy> guard(lock);
    log.append("child has the lock");
  }
  sem.release();
  barrier.wait(kDeadline);
  {
    std::lock_guard<managers::ConditionProxy> guard(cond);
    log.append("notify");
    cond.notify_all();
  }
  q.put(std::string("from child"));
}
MP_REGISTER_FUNCTION(ChildSyncs);

void ChildHoldsProxy(managers::ListProxy l, mp::Connection done) {
  l.append(1);
  done.send(l.len());
  done.recv();  // until the parent has counted
}
MP_REGISTER_FUNCTION(ChildHoldsProxy);

class StartMethods : public ::testing::TestWithParam<const char*> {};

// The manager's server and the children both use the start method.
TEST_P(StartMethods, ProxiesReachChildrenAndChangesComeBack) {
  auto manager = mp::Manager(&mp::get_context(GetParam()));
  auto d = manager.dict();
  auto l = manager.list(Range(5));
  auto ns = manager.Namespace();
  auto v = manager.Value("d", 1.0);
  auto a = manager.Array("i", Range(3));
  mp::Process p =
      mp::get_context(GetParam()).Process(ChildModifies, d, l, ns, v, a);
  p.start();
  JoinOrFail(p);
  EXPECT_EQ(d.str(), "{1: '1', '2': 2}");
  EXPECT_EQ(l.str(), "[4, 3, 2, 1, 0, 100]");
  EXPECT_EQ(ns.str(), "Namespace(x=42)");
  EXPECT_EQ(v.get<double>(), 3.5);
  EXPECT_EQ(a.str(), "array('i', [-1, 1, 2])");
}

TEST_P(StartMethods, SynchronisationPrimitivesAcrossProcesses) {
  auto manager = mp::Manager(&mp::get_context(GetParam()));
  auto q = manager.Queue();
  auto e = manager.Event();
  auto lock = manager.Lock();
  auto sem = manager.Semaphore(0);
  auto barrier = manager.Barrier(2);
  auto cond = manager.Condition();
  auto log = manager.list();
  mp::Process p = mp::get_context(GetParam())
                      .Process(ChildSyncs, q, e, lock, sem, barrier, cond, log);
  p.start();
  lock.acquire();
  e.set();
  // The child blocks on the lock until it is released.
  EXPECT_FALSE(sem.acquire(true, 100ms));
  lock.release();
  EXPECT_TRUE(sem.acquire(true, kDeadline));
  {
    std::lock_guard<managers::ConditionProxy> guard(cond);
    EXPECT_EQ(barrier.wait(kDeadline) >= 0, true);
    EXPECT_TRUE(cond.wait_for([&] { return log.len() == 2; }, kDeadline));
  }
  EXPECT_EQ(q.get<std::string>(true, kDeadline), "from child");
  JoinOrFail(p);
  EXPECT_EQ(log.str(), "['child has the lock', 'notify']");
}

TEST_P(StartMethods, ChildTakesItsOwnReference) {
  auto manager = mp::Manager();
  const int64_t before = manager.number_of_objects();
  auto [mine, theirs] = mp::Pipe();
  mp::Process p;
  {
    // As in Python, the parent keeps its proxy alive until the child has
    // its own (Process drops its arguments after start()).
    auto l = manager.list();
    p = mp::get_context(GetParam()).Process(ChildHoldsProxy, l, theirs);
    p.start();
    ASSERT_TRUE(mine.poll(kDeadline));
    EXPECT_EQ(mine.recv<int64_t>(), 1);
  }
  // The parent's proxy is gone; the child's reference keeps the list alive.
  EXPECT_EQ(manager.number_of_objects(), before + 1);
  mine.send(0);
  JoinOrFail(p);
  p = mp::Process();
  EXPECT_EQ(manager.number_of_objects(), before);
}

// A Barrier's action runs in the manager's server: it counts there, and a
// manager type reads the count.
std::atomic<int> g_barrier_actions{0};
void CountBarrierAction() { ++g_barrier_actions; }
MP_REGISTER_FUNCTION(CountBarrierAction);
void FailingBarrierAction() {
  throw mp::ValueError("the barrier's action failed");
}
MP_REGISTER_FUNCTION(FailingBarrierAction);
void UnregisteredBarrierAction() {}
struct ActionCount {
  int get() { return g_barrier_actions.load(); }
};
MP_EXPOSE(ActionCount, get);

class ActionManager : public managers::SyncManager {
 public:
  explicit ActionManager(const mp::Context* ctx = nullptr)
      : SyncManager(std::nullopt, std::nullopt, ctx) {
    register_("ActionCount", managers::Factory<ActionCount>());
  }
};
MP_REGISTER_MANAGER(ActionManager);

// Each party sees the action's count of the generation it passed.
void ChildWaitsAtBarrier(managers::BarrierProxy barrier,
                         managers::AutoProxy count, mp::Connection out) {
  std::vector<int> seen;
  for (int i = 0; i < 3; ++i) {
    barrier.wait(kDeadline);
    seen.push_back(count._callmethod<int>("get"));
  }
  out.send(seen);
}
MP_REGISTER_FUNCTION(ChildWaitsAtBarrier);

TEST_P(StartMethods, BarrierActionRunsInTheServer) {
  ActionManager manager(&mp::get_context(GetParam()));
  manager.start();
  auto count = manager.create("ActionCount");
  auto barrier = manager.Barrier(2, CountBarrierAction, kDeadline);
  auto [mine, theirs] = mp::Pipe();
  mp::Process p = mp::get_context(GetParam())
                      .Process(ChildWaitsAtBarrier, barrier, count, theirs);
  p.start();
  std::vector<int> seen;
  for (int i = 0; i < 3; ++i) {
    barrier.wait(kDeadline);
    seen.push_back(count._callmethod<int>("get"));
  }
  ASSERT_TRUE(mine.poll(kDeadline));
  std::vector<int> child_seen = mine.recv<std::vector<int>>();
  JoinOrFail(p);
  // The action ran once per generation, before either party went on.
  EXPECT_EQ(count._callmethod<int>("get"), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_GE(seen[i], i + 1);
    EXPECT_GE(child_seen[i], i + 1);
  }
  // Not in this process: the server is another one.
  EXPECT_EQ(g_barrier_actions.load(), 0);

  // A failing action: its party gets the exception, the barrier breaks.
  auto failing = manager.Barrier(1, &FailingBarrierAction);
  EXPECT_THROW(failing.wait(kDeadline), mp::ValueError);
  EXPECT_TRUE(failing.broken());
  EXPECT_THROW(failing.wait(kDeadline), mp::BrokenBarrierError);
}

TEST(Barrier, ActionsThatCannotReachTheServerAreRefused) {
  auto manager = mp::Manager();
  const int64_t before = manager.number_of_objects();
  int local = 0;
  EXPECT_THROW(manager.Barrier(2, UnregisteredBarrierAction),
               mp::PicklingError);
  EXPECT_THROW(manager.Barrier(2, [&local] { ++local; }), mp::PicklingError);
  EXPECT_THROW(manager.Barrier(2, std::function<void()>([&local] { ++local; })),
               mp::PicklingError);
  // A lambda without captures converts to a function, which is not
  // registered.
  EXPECT_THROW(manager.Barrier(2, [] {}), mp::PicklingError);
  // A registered function held by a std::function travels.
  auto b = manager.Barrier(1, std::function<void()>(CountBarrierAction));
  EXPECT_EQ(b.wait(kDeadline), 0);
  auto none = manager.Barrier(1, nullptr);
  EXPECT_EQ(none.wait(kDeadline), 0);
  EXPECT_EQ(manager.number_of_objects(), before + 2);
}

// A manager's Pool: the pool lives in the server, functions travel by name.
int PoolSquare(int x) { return x * x; }
MP_REGISTER_FUNCTION(PoolSquare);
int PoolAdd(int a, int b) { return a + b; }
MP_REGISTER_FUNCTION(PoolAdd);
int PoolFailOnThree(int x) {
  if (x == 3) throw mp::ValueError("three is refused");
  return x;
}
MP_REGISTER_FUNCTION(PoolFailOnThree);
int PoolWorkerPid(int) { return static_cast<int>(::getpid()); }
MP_REGISTER_FUNCTION(PoolWorkerPid);

void ChildUsesPool(managers::PoolProxy pool, mp::Connection out) {
  out.send(pool.map<int>(PoolSquare, std::vector<int>{1, 2, 3}));
}
MP_REGISTER_FUNCTION(ChildUsesPool);

TEST_P(StartMethods, PoolLivesInTheServer) {
  const mp::Context& ctx = mp::get_context(GetParam());
  auto manager = mp::Manager(&ctx);
  auto pool = manager.Pool(2);
  EXPECT_EQ(pool.apply<int>(PoolAdd, 2, 3), 5);
  EXPECT_EQ(pool.map<int>(PoolSquare, Range(5)),
            (std::vector<int>{0, 1, 4, 9, 16}));
  EXPECT_EQ(pool.map<int>(PoolSquare, Range(7), 3),
            (std::vector<int>{0, 1, 4, 9, 16, 25, 36}));
  EXPECT_EQ(pool.starmap<int>(
                PoolAdd, std::vector<std::tuple<int, int>>{{1, 2}, {3, 4}}),
            (std::vector<int>{3, 7}));
  managers::AsyncResultProxy r = pool.apply_async(PoolAdd, 20, 22);
  EXPECT_EQ(r.get<int>(kDeadline), 42);
  EXPECT_TRUE(r.ready());
  EXPECT_TRUE(r.successful());
  managers::AsyncResultProxy m = pool.map_async(PoolSquare, Range(3));
  EXPECT_EQ(m.get<std::vector<int>>(kDeadline), (std::vector<int>{0, 1, 4}));
  std::vector<int64_t> got;
  for (const Object& x : pool.imap(PoolSquare, Range(4))) {
    got.push_back(x.as_int());
  }
  EXPECT_EQ(got, (std::vector<int64_t>{0, 1, 4, 9}));
  EXPECT_THROW(pool.map<int>(PoolFailOnThree, Range(5)), mp::ValueError);
  managers::AsyncResultProxy failed = pool.apply_async(PoolFailOnThree, 3);
  EXPECT_THROW(failed.get(kDeadline), mp::ValueError);
  EXPECT_FALSE(failed.successful());
  EXPECT_THROW(pool.apply(UnregisteredBarrierAction), mp::PicklingError);
  EXPECT_EQ(pool.apply<int>(std::function<int(int, int)>(PoolAdd), 1, 1), 2);
  // The workers are neither this process nor the server.
  auto pids = pool.map<int>(PoolWorkerPid, Range(4));
  for (int pid : pids) EXPECT_NE(pid, ::getpid());

  auto [mine, theirs] = mp::Pipe();
  mp::Process p = ctx.Process(ChildUsesPool, pool, theirs);
  p.start();
  ASSERT_TRUE(mine.poll(kDeadline));
  EXPECT_EQ(mine.recv<std::vector<int>>(), (std::vector<int>{1, 4, 9}));
  JoinOrFail(p);
  pool.close();
  pool.join();
  EXPECT_THROW(pool.apply(PoolAdd, 1, 2), mp::ValueError);
}

INSTANTIATE_TEST_SUITE_P(Managers, StartMethods,
                         ::testing::Values("fork", "spawn", "forkserver"));

TEST(ListProxy, BehavesLikeAList) {
  auto manager = mp::Manager();
  std::vector<int> squares;
  for (int i = 0; i < 10; ++i) squares.push_back(i * i);
  auto l = manager.list(squares);
  EXPECT_EQ(l.str(), "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]");
  EXPECT_TRUE(l.repr().starts_with("<ListProxy object, typeid 'list' at 0x"));
  EXPECT_EQ(Object(l[4]), Object(16));
  EXPECT_EQ(Object(l[-1]), Object(81));
  EXPECT_EQ(repr(l[slice(2, 5)]), "[4, 9, 16]");
  EXPECT_EQ(repr(l[slice(std::nullopt, std::nullopt, -3)]), "[81, 36, 9, 0]");
  l[0] = "zero";
  l.set_slice(slice(1, 3), std::vector<std::string>{"a", "b", "c"});
  EXPECT_EQ(l.len(), 11);
  l.del(slice(1, 4));
  l.append(nullptr);
  l.extend(std::vector<double>{0.5});
  l += std::vector<int>{7};
  EXPECT_EQ(l.str(), "['zero', 9, 16, 25, 36, 49, 64, 81, None, 0.5, 7]");
  EXPECT_EQ(l.index(16), 2);
  EXPECT_EQ(l.count(7), 1);
  EXPECT_TRUE(l.contains(0.5));
  EXPECT_EQ(l.pop(), Object(7));
  l.insert(0, "first");
  l.remove("zero");
  std::vector<Object> seen;
  for (const Object& x : l) seen.push_back(x);
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(seen.front(), Object("first"));
  auto nums = manager.list(std::vector<int>{3, 1, 2});
  nums.sort();
  EXPECT_EQ(nums.str(), "[1, 2, 3]");
  nums.sort(/*reverse=*/true);
  EXPECT_EQ(nums.str(), "[3, 2, 1]");
  EXPECT_EQ(nums._getvalue(), Object::list({3, 2, 1}));
  EXPECT_FALSE(nums == Object::list({3, 2, 1}));
  EXPECT_THROW(l[20].get(), mp::IndexError);
  EXPECT_THROW(l.remove("absent"), mp::ValueError);
  EXPECT_THROW(l.sort(), mp::TypeError);  // str and int do not compare
  // Scalars of every kind come back as they went (each is one request and
  // one reply of the direct decoding).
  const std::vector<Object> scalars = {
      Object(int64_t{-1} << 40), Object(INT64_MAX), Object(-129), Object(65535),
      Object(3.25), Object::bytes("x"), Object("\u00e9"), Object(true),
      Object(), Object(""), Object(std::string(300, 'a')),
      // Larger than the buffers kept for requests and replies.
      Object(std::string(100000, 'b')),
      Object::from_sign_magnitude(true, absl::uint128(1) << 100)};
  auto kinds = manager.list();
  for (const Object& x : scalars) kinds.append(x);
  for (size_t i = 0; i < scalars.size(); ++i) {
    EXPECT_EQ(Object(kinds[static_cast<int64_t>(i)]), scalars[i]) << i;
  }
  // Ranges expand as Python's list(range(...)) does.
  auto evens = manager.list(Object::range(2, 9, 2));
  EXPECT_EQ(evens.str(), "[2, 4, 6, 8]");
  evens.extend(Object::range(3));
  EXPECT_EQ(repr(evens[slice(-3, std::nullopt)]), "[0, 1, 2]");
  EXPECT_THROW(evens[slice(0, 1, 0)], mp::ValueError);
  // A failure to create is a RemoteError, as in Python.
  EXPECT_THROW(manager.list(Object::range(int64_t{1} << 40)), mp::RemoteError);
}

TEST(DictProxy, BehavesLikeADict) {
  auto manager = mp::Manager();
  auto d = manager.dict(Object::dict({{"a", 1}}));
  d["b"] = 2;
  d[3] = std::vector<int>{1, 2};
  EXPECT_EQ(d.str(), "{'a': 1, 'b': 2, 3: [1, 2]}");
  EXPECT_EQ(Object(d["b"]), Object(2));
  EXPECT_EQ(d.get("zz", Object(0)), Object(0));
  EXPECT_EQ(repr(d.keys()), "['a', 'b', 3]");
  EXPECT_EQ(repr(d.items()), "[('a', 1), ('b', 2), (3, [1, 2])]");
  EXPECT_EQ(d.len(), 3);
  EXPECT_TRUE(d.contains("a"));
  EXPECT_EQ(d.pop("a"), Object(1));
  d.update(Object::dict({{"c", 3}}));
  EXPECT_EQ(d.setdefault("c", 9), Object(3));
  EXPECT_THROW(d["missing"].get(), mp::KeyError);
  EXPECT_THROW(d[Object::list()] = 1, mp::TypeError);  // unhashable
  d.clear();
  EXPECT_EQ(d.str(), "{}");
}

TEST(NamespaceProxy, UnderscoreNamesStayOnTheProxy) {
  auto manager = mp::Manager();
  auto ns = manager.Namespace();
  ns["x"] = 10;
  ns["y"] = "hello";
  ns["_z"] = 12.3;
  EXPECT_EQ(ns.str(), "Namespace(x=10, y='hello')");
  EXPECT_EQ(ns["_z"].as<double>(), 12.3);
  EXPECT_EQ(ns["x"].as<int>(), 10);
  EXPECT_THROW(ns.getattr("nothing"), mp::AttributeError);
}

TEST(Proxies, NestedObjectsAndErrors) {
  auto manager = mp::Manager();
  auto a = manager.list();
  auto b = manager.list();
  a.append(b);
  EXPECT_EQ(a.str() + " " + b.str(), "[[]] []");
  b.append("hello");
  EXPECT_EQ(a.str() + " " + b.str(), "[['hello']] ['hello']");
  EXPECT_EQ(Object(a[0]), Object::list({"hello"}));  // a copy
  auto d = manager.dict();
  d["inner"] = b;
  b.append(1);
  EXPECT_EQ(d.str(), "{'inner': ['hello', 1]}");
  // The nested list outlives its last proxy while a holds it.
  const int64_t count = manager.number_of_objects();
  b = managers::ListProxy();
  EXPECT_EQ(manager.number_of_objects(), count - 1);
  EXPECT_EQ(a.str(), "[['hello', 1]]");

  EXPECT_THROW(a._callmethod("__getitem__", 20), mp::IndexError);
  try {
    a._callmethod("no_such_method");
    FAIL() << "a method that is not exposed was called";
  } catch (const mp::RemoteError& e) {
    EXPECT_NE(std::string(e.what()).find("is not in exposed"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(managers::ListProxy().len(), mp::ValueError);
}

TEST(Refcounting, ObjectsAreFreedWithTheirLastProxy) {
  auto manager = mp::Manager();
  const int64_t base = manager.number_of_objects();
  {
    auto l = manager.list();
    auto copy = l;
    EXPECT_EQ(manager.number_of_objects(), base + 1);
    {
      auto q = manager.Queue();
      EXPECT_EQ(manager.number_of_objects(), base + 2);
    }
    EXPECT_EQ(manager.number_of_objects(), base + 1);
  }
  EXPECT_EQ(manager.number_of_objects(), base);
}

TEST(Queue, TimeoutsAndFullEmpty) {
  auto manager = mp::Manager();
  auto q = manager.Queue(1);
  q.put(1);
  EXPECT_THROW(q.put(2, true, 50ms), mp::queues::Full);
  EXPECT_THROW(q.put_nowait(2), mp::queues::Full);
  EXPECT_EQ(q.get<int>(), 1);
  EXPECT_THROW(q.get(true, 50ms), mp::queues::Empty);
  EXPECT_TRUE(q.empty());
  auto jq = manager.JoinableQueue();
  jq.put("x");
  EXPECT_EQ(jq.get<std::string>(), "x");
  jq.task_done();
  jq.join();
  EXPECT_THROW(jq.task_done(), mp::ValueError);
}

TEST(Locks, RLockSemaphoreAndBarrier) {
  auto manager = mp::Manager();
  auto r = manager.RLock();
  EXPECT_TRUE(r.acquire());
  EXPECT_TRUE(r.acquire());
  r.release();
  r.release();
  EXPECT_THROW(r.release(), mp::RuntimeError);
  auto b = manager.BoundedSemaphore(1);
  EXPECT_TRUE(b.acquire(false));
  EXPECT_FALSE(b.acquire(false));
  b.release();
  EXPECT_THROW(b.release(), mp::ValueError);
  auto l = manager.Lock();
  EXPECT_THROW(l.release(), mp::RuntimeError);
  auto barrier = manager.Barrier(2);
  EXPECT_EQ(barrier.parties(), 2);
  EXPECT_THROW(barrier.wait(50ms), mp::BrokenBarrierError);
  EXPECT_TRUE(barrier.broken());
  barrier.reset();
  EXPECT_FALSE(barrier.broken());
  auto cond = manager.Condition(manager.Lock());
  EXPECT_THROW(cond.wait(10ms), mp::RuntimeError);  // not acquired
  EXPECT_TRUE(cond.acquire());
  EXPECT_FALSE(cond.wait(10ms));
  cond.release();
}

// --- user types ---------------------------------------------------------

struct Counter {
  int value = 0;
  int increment(int by) { return value += by; }
  int get() const { return value; }
  void _reset() { value = 0; }
  int fail() { throw mp::ValueError("counter failed on purpose"); }
};
MP_EXPOSE(Counter, increment, get, _reset, fail);

int ServerPid() { return static_cast<int>(::getpid()); }
struct Pid {
  int pid() { return ServerPid(); }
};
MP_EXPOSE(Pid, pid);

// Set by a manager's initializer in its server process.
int g_marker = 0;
void SetMarker() { g_marker = 7; }
MP_REGISTER_FUNCTION(SetMarker);
struct Marker {
  int get() { return g_marker; }
};
MP_EXPOSE(Marker, get);

// An iterator over n, n-1, ..., 1.
struct Countdown {
  explicit Countdown(int n) : left(n) {}
  int left;
  int next() {
    if (left <= 0) throw mp::StopIteration();
    return left--;
  }
};
MP_EXPOSE_METHODS(Countdown, managers::Method<&Countdown::next>("__next__"));

class CounterManager : public managers::BaseManager {
 public:
  explicit CounterManager(const mp::Context* ctx = nullptr)
      : BaseManager(std::nullopt, std::nullopt, ctx) {
    register_("Counter", managers::Factory<Counter>());
    register_("PrivateCounter", managers::Factory<Counter>(),
              {.exposed = std::vector<std::string>{"get", "_reset"}});
    register_("Pid", managers::Factory<Pid>());
    register_("Marker", managers::Factory<Marker>());
    register_("Countdown", managers::Factory<Countdown, int>(),
              {.exposed = std::vector<std::string>{"__next__"}});
  }
};
MP_REGISTER_MANAGER(CounterManager);

std::string ReadFile(const std::string& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  return text;
}

int ParentPidOf(int pid) {
  // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  int ppid = -1;
  std::sscanf(stat.c_str() + close + 1, " %*c %d", &ppid);
  return ppid;
}

class ManagerStartMethods : public ::testing::TestWithParam<const char*> {};

TEST_P(ManagerStartMethods, ServerProcessIsMadeWithTheStartMethod) {
  const std::string method = GetParam();
  CounterManager manager(&mp::get_context(method));
  manager.start(SetMarker);
  const int server = manager.create("Pid")._callmethod<int>("pid");
  ASSERT_NE(server, ::getpid());
  // A forked server runs this program's image as it was; spawn and
  // forkserver ones were started from a new one (another command line), and
  // forkserver's are children of the fork server.
  const bool same_image =
      ReadFile("/proc/" + std::to_string(server) + "/cmdline") ==
      ReadFile("/proc/self/cmdline");
  EXPECT_EQ(same_image, method == "fork");
  EXPECT_EQ(ParentPidOf(server) == ::getpid(), method != "forkserver");
  // The registrations and the initializer reached the server.
  EXPECT_EQ(manager.create("Marker")._callmethod<int>("get"), 7);
  auto c = manager.create("Counter");
  EXPECT_EQ(c._callmethod<int>("increment", 2), 2);
  manager.shutdown();
  EXPECT_TRUE(WaitPidGone(server, kDeadline));
}

TEST_P(ManagerStartMethods, DefaultContextFollowsSetStartMethod) {
  const std::string method = GetParam();
  const std::string before = mp::get_start_method().value_or("fork");
  mp::set_start_method(method, /*force=*/true);
  CounterManager manager;
  manager.start();
  mp::set_start_method(before, /*force=*/true);
  const int server = manager.create("Pid")._callmethod<int>("pid");
  EXPECT_EQ(ReadFile("/proc/" + std::to_string(server) + "/cmdline") ==
                ReadFile("/proc/self/cmdline"),
            method == "fork");
  auto d = mp::Manager(&mp::get_context(method));
  auto l = d.list(Range(3));
  l.append(3);
  EXPECT_EQ(l.str(), "[0, 1, 2, 3]");
}

void OwnerStartsManagerWith(std::string method, mp::Connection report) {
  CounterManager manager(&mp::get_context(method));
  manager.start();
  report.send(manager.create("Pid")._callmethod<int>("pid"));
  report.recv();  // killed while waiting here
}
MP_REGISTER_FUNCTION(OwnerStartsManagerWith);

TEST_P(ManagerStartMethods, ServerEndsWhenItsOwnerDies) {
  auto [mine, theirs] = mp::Pipe();
  mp::Process owner(OwnerStartsManagerWith, std::string(GetParam()), theirs);
  owner.start();
  ASSERT_TRUE(mine.poll(kDeadline));
  int server_pid = mine.recv<int>();
  owner.kill();
  owner.join(kDeadline);
  EXPECT_TRUE(WaitPidGone(server_pid, kDeadline));
}

INSTANTIATE_TEST_SUITE_P(Managers, ManagerStartMethods,
                         ::testing::Values("fork", "spawn", "forkserver"));

TEST(BaseManager, SpawnNeedsRegistrationsANewProcessCanRebuild) {
  // A typeid registered after construction is unknown to a new image.
  CounterManager late(&mp::get_context("spawn"));
  late.register_("Late", managers::Factory<Counter>());
  EXPECT_THROW(late.start(), mp::ValueError);
  // An initializer must be a registered function there.
  CounterManager lambda(&mp::get_context("forkserver"));
  EXPECT_THROW(lambda.start([] {}), mp::ValueError);
  // Both are fine under fork.
  CounterManager forked(&mp::get_context("fork"));
  forked.register_("Late", managers::Factory<Counter>());
  forked.start([] { g_marker = 3; });
  EXPECT_EQ(forked.create("Late")._callmethod<int>("increment", 1), 1);
  EXPECT_EQ(forked.create("Marker")._callmethod<int>("get"), 3);
}

TEST(BaseManager, RegisteredTypesAndExposure) {
  CounterManager manager;
  manager.start();
  auto c = manager.create("Counter");
  EXPECT_EQ(c._callmethod<int>("increment", 5), 5);
  EXPECT_EQ(c._callmethod<int>("get"), 5);
  auto exposed = c._exposed_();
  std::sort(exposed.begin(), exposed.end());
  EXPECT_EQ(exposed, (std::vector<std::string>{"fail", "get", "increment"}));
  EXPECT_THROW(c._callmethod("_reset"), mp::RemoteError);
  EXPECT_THROW(c._callmethod("fail"), mp::ValueError);
  EXPECT_THROW(c._callmethod("increment", "not an int"), mp::TypeError);
  auto p = manager.create("PrivateCounter");
  p._callmethod<void>("_reset");
  EXPECT_THROW(p._callmethod("increment", 1), mp::RemoteError);
  EXPECT_TRUE(c.repr().starts_with(
      "<AutoProxy[Counter] object, typeid 'Counter' at 0x"));
  EXPECT_THROW(manager.create("Unknown"), mp::RemoteError);
  EXPECT_THROW(manager.start(), mp::ProcessError);
  manager.shutdown();
  manager.shutdown();  // repeatable
  EXPECT_THROW(manager.create("Counter"), mp::ProcessError);
}

TEST(IteratorProxy, StopsAtStopIteration) {
  CounterManager manager;
  manager.start();
  auto it = manager.create<managers::IteratorProxy>("Countdown", 5);
  EXPECT_EQ(it.next<int>(), 5);
  std::vector<int64_t> rest;
  for (const Object& x : it) rest.push_back(x.as_int());
  EXPECT_EQ(rest, (std::vector<int64_t>{4, 3, 2, 1}));
  // Exhausted: next() raises StopIteration (also by its Python name), and a
  // loop runs no more.
  EXPECT_THROW(it.next(), mp::StopIteration);
  EXPECT_THROW(mp::RaiseByName("StopIteration", ""), mp::StopIteration);
  for (const Object& x : it) ADD_FAILURE() << repr(x);
  EXPECT_TRUE(it.repr().starts_with("<IteratorProxy object, typeid"));
}

// Malformed and mutated requests get an error answer; the server carries
// on.
TEST(Server, HostileRequestsGetErrorAnswers) {
  auto manager = mp::Manager();
  auto target = manager.list(Range(3));
  auto witness = manager.list(Range(3));
  mp::Connection c = mp::connection::Client(
      manager.address(), {.authkey = mp::current_process().authkey()});
  c.send(Object::tuple({Object(), Object("accept_connection"),
                        Object::tuple({Object("test")}), Object::dict()}));
  ASSERT_TRUE(c.poll(kDeadline));
  c.recv_bytes();
  const std::string valid = managers::internal::EncodeRequest(
      target._id(), "__getitem__", int64_t{1});
  std::vector<std::string> requests = {
      "",
      std::string("\x80\x04", 2),
      std::string("\x80\x04(", 3),
      valid.substr(0, valid.size() - 1),
      valid.substr(0, valid.size() / 2),
      // A str longer than the message; a LONG1 of 9 bytes; a cut BININT.
      std::string{'(', 'X', '\xff', '\xff', '\xff', '\x7f'},
      std::string{'(', '\x8c', '\x01', 'a', '\x8c', '\x01', 'b', '(', '\x8a',
                  '\x09', '\x01', 't', '}', 't', '.'},
      std::string{'(', '\x8c', '\x01', 'a', '\x8c', '\x01', 'b', '(', 'J',
                  '\x01', '\x02', 't', '}', 't', '.'},
  };
  std::mt19937 random(12345);
  for (int i = 0; i < 300; ++i) {
    std::string m = valid;
    const int flips = 1 + static_cast<int>(random() % 3);
    for (int k = 0; k < flips; ++k) {
      m[random() % m.size()] = static_cast<char>(random() & 0xFF);
    }
    requests.push_back(std::move(m));
  }
  for (const std::string& r : requests) {
    c.send_bytes(r);
    ASSERT_TRUE(c.poll(kDeadline)) << "no answer";
    std::string answer = c.recv_bytes();
    EXPECT_FALSE(answer.empty());
  }
  EXPECT_EQ(witness.str(), "[0, 1, 2]");
  EXPECT_GE(target.len(), 0);
}

TEST(BaseManager, ServerDeathIsAClearErrorNotAHang) {
  CounterManager manager;
  manager.start();
  auto pid = manager.create("Pid");
  int server_pid = pid._callmethod<int>("pid");
  ASSERT_NE(server_pid, ::getpid());
  auto c = manager.create("Counter");
  ::kill(server_pid, SIGKILL);
  ASSERT_TRUE(WaitPidGone(server_pid, kDeadline));
  EXPECT_THROW(c._callmethod("get"), mp::Exception);
  manager.shutdown();
}

void RemoteServe(managers::Server* server) { server->serve_forever(); }

void RemoteClientPuts(int port, std::string authkey) {
  managers::BaseManager m(mp::connection::Address("127.0.0.1", port), authkey);
  m.register_("get_queue");
  m.connect();
  m.create<managers::QueueProxy>("get_queue").put(std::string("hello"));
}
MP_REGISTER_FUNCTION(RemoteClientPuts);

TEST(RemoteManager, ServerAndTwoClientProcesses) {
  auto queue = managers::MakeQueue();
  managers::BaseManager m(mp::connection::Address("127.0.0.1", 0),
                          "abracadabra");
  m.register_("get_queue", managers::Shared(queue));
  managers::Server server = m.get_server();
  const int port = server.address().port();
  ASSERT_NE(port, 0);
  mp::Process serving(RemoteServe, &server);
  serving.start();
  mp::Process client = mp::get_context("spawn").Process(
      RemoteClientPuts, port, std::string("abracadabra"));
  client.start();
  JoinOrFail(client);

  managers::BaseManager getter(mp::connection::Address("127.0.0.1", port),
                               "abracadabra");
  getter.register_("get_queue");
  getter.connect();
  auto q = getter.create<managers::QueueProxy>("get_queue");
  EXPECT_EQ(q.get<std::string>(true, kDeadline), "hello");

  managers::BaseManager wrong(mp::connection::Address("127.0.0.1", port),
                              "wrong key");
  EXPECT_THROW(wrong.connect(), mp::AuthenticationError);

  serving.terminate();
  serving.join(kDeadline);
  EXPECT_FALSE(serving.is_alive());
  // The server is gone: a call fails at once.
  EXPECT_THROW(q.qsize(), mp::Exception);
}

// A CPython program (managers/testdata/python_queue_server.py) serving the
// documentation's QueueManager, with pipes to its stdin and stdout; closing
// stdin ends it.
class PythonServer {
 public:
  PythonServer() {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2 failed";
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    const char* argv[] = {"python3", "managers/testdata/python_queue_server.py",
                          "0", nullptr};
    extern char** environ;
    int rc = ::posix_spawnp(&pid_, "python3", &actions, nullptr,
                            const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    if (rc != 0) {
      pid_ = 0;
      ADD_FAILURE() << "could not run python3: " << rc;
      return;
    }
    port_ = std::atoi(ReadLine().c_str());
  }
  ~PythonServer() {
    if (stdin_ >= 0) ::close(stdin_);
    if (pid_ > 0 && !WaitPidGone(pid_, kDeadline)) ::kill(pid_, SIGKILL);
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    if (stdout_ >= 0) ::close(stdout_);
  }
  int port() const { return port_; }
  // Closes its stdin; returns the number of objects it still held.
  int Finish() {
    ::close(stdin_);
    stdin_ = -1;
    return std::atoi(ReadLine().c_str());
  }

 private:
  // One line of its stdout, waiting at most kDeadline.
  std::string ReadLine() {
    std::string line;
    const auto end = std::chrono::steady_clock::now() + kDeadline;
    char c;
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 100) != 1) continue;
      if (::read(stdout_, &c, 1) != 1 || c == '\n') return line;
      line.push_back(c);
    }
    ADD_FAILURE() << "the Python server printed no line in time";
    return line;
  }
  pid_t pid_ = 0;
  int stdin_ = -1;
  int stdout_ = -1;
  int port_ = 0;
};

void PythonServerClientPuts(int port) {
  managers::BaseManager m(mp::connection::Address("127.0.0.1", port),
                          "abracadabra");
  m.register_("get_queue");
  m.connect();
  m.create<managers::QueueProxy>("get_queue").put(std::string("hello"));
}
MP_REGISTER_FUNCTION(PythonServerClientPuts);

// C++ clients of CPython's manager server: the doc's put and get from two
// processes, errors of each kind, a method returning a proxy, and reference
// counting that leaves the server holding nothing.
TEST(CPythonInterop, CppClientsUsePythonServer) {
  PythonServer python;
  ASSERT_GT(python.port(), 0);
  mp::Process putter =
      mp::get_context("spawn").Process(PythonServerClientPuts, python.port());
  putter.start();
  JoinOrFail(putter);
  {
    managers::BaseManager m(mp::connection::Address("127.0.0.1", python.port()),
                            "abracadabra");
    m.register_("get_queue");
    m.register_("Maths");
    m.connect();
    auto q = m.create<managers::QueueProxy>("get_queue");
    EXPECT_EQ(q.get<std::string>(true, kDeadline), "hello");
    EXPECT_THROW(q.get_nowait(), mp::queues::Empty);
    q.put(Object::list({1, 2.5, nullptr, "x"}));
    EXPECT_EQ(repr(q.get(true, kDeadline)), "[1, 2.5, None, 'x']");
    EXPECT_EQ(m.number_of_objects(), 1);

    auto maths = m.create("Maths");
    EXPECT_EQ(maths._callmethod<int>("add", 4, 3), 7);
    try {
      maths._callmethod("fail");
      ADD_FAILURE() << "fail() did not raise";
    } catch (const mp::KeyError& e) {
      EXPECT_EQ(std::string(e.what()), "'nope'");
    }
    EXPECT_THROW(maths._callmethod("broken"), mp::RemoteError);
    try {
      maths._callmethod("no_such_method");
      ADD_FAILURE() << "no_such_method() did not raise";
    } catch (const mp::RemoteError& e) {
      EXPECT_NE(std::string(e.what()).find("AttributeError"), std::string::npos)
          << e.what();
    }
    {
      auto child = maths._callmethod<managers::AutoProxy>("child");
      EXPECT_EQ(child._callmethod<int>("add", 40, 2), 42);
      auto grandchild = child._callmethod<managers::AutoProxy>("child");
      EXPECT_EQ(grandchild._callmethod<std::string>("add", "a", "b"), "ab");
      EXPECT_EQ(m.number_of_objects(), 4);
    }
    EXPECT_EQ(m.number_of_objects(), 2);
    managers::BaseManager wrong(
        mp::connection::Address("127.0.0.1", python.port()), "wrong key");
    EXPECT_THROW(wrong.connect(), mp::AuthenticationError);
  }
  // Every proxy is gone: the server holds nothing.
  EXPECT_EQ(python.Finish(), 0);
}

// CPython's BaseManager.connect() clients use a C++ server for built-in
// types: the protocol and the pickles are CPython's.
TEST(CPythonInterop, PythonClientUsesCppServer) {
  managers::SyncManager m(mp::connection::Address("127.0.0.1", 0),
                          "interop key");
  managers::Server server = m.get_server();
  const std::string script = R"(
import queue, sys
from multiprocessing.managers import SyncManager
m = SyncManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'interop key')
m.connect()
l = m.list(list(range(10)))
l.append('x')
d = m.dict()
d['a'] = [1, 2.5, None]
q = m.Queue()
try:
    q.get(timeout=0.05)
except queue.Empty:
    print('empty')
try:
    l[20]
except IndexError as e:
    print('IndexError', e)
print(l[2], len(l), str(l), d.items())
r = m.list(range(10))
print(r[1:3], r[::3], r[-2:], r[100:])
r[1:3] = ['a', 'b', 'c']
del r[::2]
print(r, list(r))
a = m.Array('i', range(4))
print(a[1:3], len(a))
s = m.list()
for x in (-2**40, 2**63 - 1, -129, 65535, 3.25, b'x', '\u00e9', True, None):
    s.append(x)
print(s[:], s.index(-129), s[-3])
)";
  int status;
  std::string text =
      managers::testing::RunPythonClient(server, script, &status);
  EXPECT_EQ(status, 0) << text;
  EXPECT_EQ(text,
            "empty\nIndexError list index out of range\n2 11 "
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 'x'] [('a', [1, 2.5, None])]\n"
            "[1, 2] [0, 3, 6, 9] [8, 9] []\n"
            "['a', 'c', 4, 6, 8] ['a', 'c', 4, 6, 8]\n"
            "[1, 2] 4\n"
            "[-1099511627776, 9223372036854775807, -129, 65535, 3.25, b'x', "
            "'\u00e9', True, None] 2 \u00e9\n");
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
