// mpi::Pool across real MPI processes. mpirun_test.sh runs this binary in both
// start modes: as a singleton whose pools spawn their workers, and under
// `mpirun -n 4` whose ranks 1..3 are the workers. Tests that kill workers come
// last: in static mode a dead rank stays dead.
#include "mpi/pool.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "errors/errors.h"
#include "gtest/gtest.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
namespace mpi = multiprocessing::mpi;

namespace {

int square(int x) { return x * x; }
MP_REGISTER_FUNCTION(square);

int add(int a, int b) { return a + b; }
MP_REGISTER_FUNCTION(add);

int pid_of(int) { return static_cast<int>(getpid()); }
MP_REGISTER_FUNCTION(pid_of);

int fail_on_three(int x) {
  if (x == 3) throw mp::ValueError("three is not allowed");
  if (x == 4) throw std::out_of_range("four is out of range");
  return x;
}
MP_REGISTER_FUNCTION(fail_on_three);

// Sleeps x milliseconds, then returns x: later inputs finish first.
int nap(int x) {
  usleep(static_cast<useconds_t>(x) * 1000);
  return x;
}
MP_REGISTER_FUNCTION(nap);

std::string reverse(std::string s) {
  std::reverse(s.begin(), s.end());
  return s;
}
MP_REGISTER_FUNCTION(reverse);

// Exits the worker without a word on 1 (a crash in the middle of a task).
int die_on_one(int x) {
  if (x == 1) _exit(7);
  usleep(20000);
  return x;
}
MP_REGISTER_FUNCTION(die_on_one);

int die(int) { _exit(9); }
MP_REGISTER_FUNCTION(die);

int not_registered(int x) { return x; }

int initialized = 0;
void init(int v) { initialized = v; }
MP_REGISTER_FUNCTION(init);
int get_initialized(int) { return initialized; }
MP_REGISTER_FUNCTION(get_initialized);

constexpr auto kDeadline = std::chrono::seconds(60);

// Two workers: spawned in dynamic mode, the first two worker ranks in static.
mpi::PoolOptions Two() { return {.processes = 2}; }

TEST(MpiPool, MapInOrder) {
  mpi::Pool pool(Two());
  EXPECT_EQ(pool.processes(), 2);
  std::vector<int> in(1000);
  std::iota(in.begin(), in.end(), 0);
  std::vector<int> out = pool.map(square, in);
  ASSERT_EQ(out.size(), in.size());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(out[i], i * i);
  EXPECT_EQ(pool.map(square, in, 1)[999], 999 * 999);
  EXPECT_EQ(pool.map(square, std::vector<int>{}), std::vector<int>{});
}

TEST(MpiPool, TasksRunOnOtherProcesses) {
  mpi::Pool pool(Two());
  std::vector<int> pids = pool.map(pid_of, std::vector<int>(200, 0), 1);
  std::set<int> distinct(pids.begin(), pids.end());
  EXPECT_FALSE(distinct.count(static_cast<int>(getpid())));
  EXPECT_GE(distinct.size(), 1u);
  EXPECT_LE(distinct.size(), 2u);
}

TEST(MpiPool, ApplyAndCallbacks) {
  mpi::Pool pool(Two());
  EXPECT_EQ(pool.apply(add, {2, 3}), 5);
  std::atomic<int> seen{0};
  auto r = pool.apply_async(square, {7},
                            {.callback = [&](const int& v) { seen = v; }});
  EXPECT_EQ(r.get(kDeadline), 49);
  EXPECT_EQ(seen.load(), 49);
  EXPECT_TRUE(r.successful());
  std::atomic<bool> failed{false};
  auto bad = pool.apply_async(
      fail_on_three, {3},
      {.error_callback = [&](const std::exception&) { failed = true; }});
  bad.wait(kDeadline);
  EXPECT_FALSE(bad.successful());
  EXPECT_TRUE(failed.load());
  auto m = pool.map_async(
      square, std::vector<int>{1, 2, 3}, std::nullopt,
      {.callback = [&](const std::vector<int>& v) { seen = v[2]; }});
  EXPECT_EQ(m.get(kDeadline), (std::vector<int>{1, 4, 9}));
  EXPECT_EQ(seen.load(), 9);
}

TEST(MpiPool, Starmap) {
  mpi::Pool pool(Two());
  std::vector<std::tuple<int, int>> in{{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool.starmap(add, in), (std::vector<int>{3, 7, 11}));
  EXPECT_EQ(pool.starmap_async(add, in, 2).get(kDeadline),
            (std::vector<int>{3, 7, 11}));
}

TEST(MpiPool, ImapInOrderAndUnordered) {
  mpi::Pool pool(Two());
  std::vector<int> in{300, 10, 20, 30};
  std::vector<int> ordered;
  auto it = pool.imap(nap, in);
  while (auto v = it.next(kDeadline)) ordered.push_back(*v);
  EXPECT_EQ(ordered, in);
  // The 300 ms task finishes last: completion order puts it at the end.
  std::vector<int> unordered;
  auto un = pool.imap_unordered(nap, in);
  while (auto v = un.next(kDeadline)) unordered.push_back(*v);
  ASSERT_EQ(unordered.size(), 4u);
  EXPECT_EQ(unordered.back(), 300);
  EXPECT_EQ(std::multiset<int>(unordered.begin(), unordered.end()),
            std::multiset<int>(in.begin(), in.end()));
  int sum = 0;
  for (int v : pool.imap(square, std::vector<int>{1, 2, 3}, 2)) sum += v;
  EXPECT_EQ(sum, 14);
}

TEST(MpiPool, ExceptionsKeepTheirPythonClass) {
  mpi::Pool pool(Two());
  EXPECT_THROW(pool.apply(fail_on_three, {3}), mp::ValueError);
  try {
    pool.apply(fail_on_three, {4});
    ADD_FAILURE() << "no exception";
  } catch (const mp::Exception& e) {
    EXPECT_STREQ(e.python_name(), "IndexError") << e.what();
  }
  EXPECT_THROW(pool.map(fail_on_three, std::vector<int>{1, 2, 3}),
               mp::ValueError);
  auto it = pool.imap(fail_on_three, std::vector<int>{2, 3, 5});
  EXPECT_EQ(it.next(kDeadline), 2);
  EXPECT_THROW(it.next(kDeadline), mp::ValueError);
  EXPECT_EQ(it.next(kDeadline), 5);
  // The pool is fine afterwards.
  EXPECT_EQ(pool.apply(square, {9}), 81);
}

TEST(MpiPool, UnregisteredFunctionIsPicklingError) {
  mpi::Pool pool(Two());
  EXPECT_THROW(pool.apply(not_registered, {1}), mp::PicklingError);
}

TEST(MpiPool, LargeArgumentsAndResults) {
  mpi::Pool pool(Two());
  std::string big(32 << 20, 'a');
  for (size_t i = 0; i < big.size(); i += 4096)
    big[i] = static_cast<char>('a' + i % 26);
  std::string back = pool.apply(reverse, {big});
  ASSERT_EQ(back.size(), big.size());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), big.rbegin()));
  std::vector<std::string> two =
      pool.map(reverse, std::vector<std::string>{big, big}, 1);
  EXPECT_EQ(two[1], back);
}

TEST(MpiPool, Initializer) {
  mpi::PoolOptions options = Two();
  options.initializer = {init, 42};
  mpi::Pool pool(options);
  EXPECT_EQ(pool.map(get_initialized, std::vector<int>(8, 0), 1),
            std::vector<int>(8, 42));
}

TEST(MpiPool, CloseJoinAndTerminate) {
  mpi::Pool pool(Two());
  auto r = pool.map_async(nap, std::vector<int>{50, 50, 50});
  pool.close();
  EXPECT_THROW(pool.apply(square, {1}), mp::ValueError);
  pool.join();
  EXPECT_EQ(r.get(std::chrono::seconds(0)), (std::vector<int>{50, 50, 50}));

  mpi::Pool other(Two());
  EXPECT_THROW(other.join(), mp::ValueError);  // still running
  auto slow = other.apply_async(nap, {200});
  auto start = std::chrono::steady_clock::now();
  other.terminate();
  other.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_TRUE(slow.ready());
}

// In static mode the ranks serve one pool after another.
TEST(MpiPool, OnePoolAfterAnother) {
  for (int i = 0; i < 3; ++i) {
    mpi::Pool pool(Two());
    EXPECT_EQ(pool.apply(square, {i}), i * i);
  }
}

TEST(MpiPool, BadOptions) {
  EXPECT_THROW(mpi::Pool({.processes = 0}), mp::ValueError);
  if (mpi::size() > 1) {
    EXPECT_THROW(mpi::Pool({.processes = mpi::size()}), mp::ValueError);
  }
}

// A worker that dies in the middle of a task: that task fails with
// ProcessError within the watchdog's time, the rest complete on the others.
TEST(MpiPoolDeath, AWorkerDiesMidTask) {
  mpi::Pool pool(Two());
  auto start = std::chrono::steady_clock::now();
  auto it = pool.imap_unordered(die_on_one, std::vector<int>{0, 1, 2, 3, 4, 5});
  std::multiset<int> got;
  int errors = 0;
  for (;;) {
    try {
      auto v = it.next(kDeadline);
      if (!v) break;
      got.insert(*v);
    } catch (const mp::ProcessError& e) {
      ++errors;
      EXPECT_NE(std::string(e.what()).find("MPI worker"), std::string::npos)
          << e.what();
    }
  }
  // The chunks the dead worker held fail with it (its task, and one sent
  // ahead if tasks were fast enough to batch); every other value came back.
  EXPECT_GE(errors, 1);
  EXPECT_LE(errors, 2);
  EXPECT_EQ(got.size() + static_cast<size_t>(errors), 6u);
  EXPECT_EQ(got.count(1), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  // The survivor carries on.
  EXPECT_EQ(pool.apply(square, {5}), 25);
}

// Every worker dies: the pool is broken and says so.
TEST(MpiPoolDeath, EveryWorkerDies) {
  mpi::PoolOptions options;
  if (mpi::size() == 1) options.processes = 2;
  mpi::Pool pool(options);
  auto r = pool.map_async(die, std::vector<int>(8, 0), 1);
  EXPECT_THROW(r.get(kDeadline), mp::ProcessError);
  try {
    pool.apply(square, {1});
    ADD_FAILURE() << "a broken pool took a task";
  } catch (const mp::ProcessError& e) {
    EXPECT_NE(std::string(e.what()).find("broken"), std::string::npos)
        << e.what();
  }
}

}  // namespace

int main(int argc, char** argv) {
  mpi::freeze_support(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  std::cout << "mpi_pool_test: rank 0 of " << mpi::size() << std::endl;
  return RUN_ALL_TESTS();
}
