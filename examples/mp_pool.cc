// Examples: "Using Pool" (the Python 2.7 version: adds callbacks, close(),
// terminate() and garbage collection). An argument "processes" (the default)
// or "threads" chooses Pool or ThreadPool, as the original's command line
// does.
//
// Differences forced by C++, each marked below: tasks name their function by
// a string (a C++ function pointer cannot be pickled into a worker of another
// start method), 1.0 / (x - 5.0) raises ZeroDivisionError explicitly (C++
// gives inf), the pool's repr is spelled out, and the worker-liveness checks
// of `pool._pool` use the pool's own guarantees instead (join() returns only
// once every worker exited; the destructor terminates them).
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "dummy/dummy.h"
#include "pool/pool.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace mp = multiprocessing;
using Task = std::tuple<std::string, int, int>;

//
// Functions used by test code
//

void random_sleep() {
  thread_local std::mt19937 gen(std::random_device{}());
  std::uniform_real_distribution<double> dist(0.0, 0.5);
  std::this_thread::sleep_for(std::chrono::duration<double>(dist(gen)));
}

int mul(int a, int b) {
  random_sleep();
  return a * b;
}

int plus(int a, int b) {
  random_sleep();
  return a + b;
}

// calculate(func, args) with func named by a string.
std::string calculate(std::string func, int a, int b) {
  int result = func == "mul" ? mul(a, b) : plus(a, b);
  return absl::StrFormat("%s says that %s(%d, %d) = %d",
                         mp::current_process().name(), func, a, b, result);
}

std::string calculatestar(Task args) {
  return calculate(std::get<0>(args), std::get<1>(args), std::get<2>(args));
}

double f(int x) {
  if (x == 5) throw mp::ZeroDivisionError("float division by zero");
  return 1.0 / (x - 5.0);
}

int64_t pow3(int64_t x) { return x * x * x; }

void noop(std::nullptr_t) {}

void sleep_seconds(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

MP_REGISTER_FUNCTION(mul);
MP_REGISTER_FUNCTION(plus);
MP_REGISTER_FUNCTION(calculate);
MP_REGISTER_FUNCTION(calculatestar);
MP_REGISTER_FUNCTION(f);
MP_REGISTER_FUNCTION(pow3);
MP_REGISTER_FUNCTION(noop);
MP_REGISTER_FUNCTION(sleep_seconds);

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

//
// Test code
//

template <class PoolType>
void test() {
  std::printf("cpu_count() = %d\n\n", mp::cpu_count());

  //
  // Create pool
  //

  const int PROCESSES = 4;
  std::printf("Creating pool with %d processes\n\n", PROCESSES);
  auto pool = std::make_unique<PoolType>(PROCESSES);
  // (Python prints the object's default repr here.)
  std::printf("pool = <%s object, %d workers>\n\n",
              std::is_same_v<PoolType, mp::Pool>
                  ? "multiprocessing.pool.Pool"
                  : "multiprocessing.pool.ThreadPool",
              pool->processes());

  //
  // Tests
  //

  std::vector<Task> TASKS;
  for (int i = 0; i < 10; ++i) TASKS.emplace_back("mul", i, 7);
  for (int i = 0; i < 10; ++i) TASKS.emplace_back("plus", i, 8);

  std::vector<mp::pool::AsyncResult<std::string>> results;
  for (const Task& t : TASKS)
    results.push_back(pool->apply_async(calculate, t));
  auto imap_it = pool->imap(calculatestar, TASKS);
  auto imap_unordered_it = pool->imap_unordered(calculatestar, TASKS);

  std::printf("Ordered results using pool.apply_async():\n");
  for (auto& r : results) std::printf("\t%s\n", r.get().c_str());
  std::printf("\n");

  std::printf("Ordered results using pool.imap():\n");
  for (const std::string& x : imap_it) std::printf("\t%s\n", x.c_str());
  std::printf("\n");

  std::printf("Unordered results using pool.imap_unordered():\n");
  for (const std::string& x : imap_unordered_it)
    std::printf("\t%s\n", x.c_str());
  std::printf("\n");

  std::printf(
      "Ordered results using pool.map() --- will block till complete:\n");
  for (const std::string& x : pool->map(calculatestar, TASKS))
    std::printf("\t%s\n", x.c_str());
  std::printf("\n");

  //
  // Simple benchmarks
  //

  const int N = 100000;
  std::printf("def pow3(x): return x**3\n");
  std::vector<int64_t> xrange(N);
  for (int i = 0; i < N; ++i) xrange[i] = i;

  double t = Now();
  std::vector<int64_t> A;
  for (int64_t x : xrange) A.push_back(pow3(x));
  std::printf("\tmap(pow3, xrange(%d)):\n\t\t%g seconds\n", N, Now() - t);

  t = Now();
  std::vector<int64_t> B = pool->map(pow3, xrange);
  std::printf("\tpool.map(pow3, xrange(%d)):\n\t\t%g seconds\n", N, Now() - t);

  t = Now();
  std::vector<int64_t> C;
  for (int64_t x : pool->imap(pow3, xrange, N / 8)) C.push_back(x);
  std::printf(
      "\tlist(pool.imap(pow3, xrange(%d), chunksize=%d)):\n\t\t%g seconds\n", N,
      N / 8, Now() - t);

  if (!(A == B && B == C)) throw mp::AssertionError("pow3 results differ");
  std::printf("\n");

  std::vector<std::nullptr_t> L(1000000);
  std::printf("def noop(x): pass\n");
  std::printf("L = [None] * 1000000\n");

  t = Now();
  std::vector<std::nullptr_t> A2;
  for (auto x : L) {
    noop(x);
    A2.push_back(nullptr);
  }
  std::printf("\tmap(noop, L):\n\t\t%g seconds\n", Now() - t);

  t = Now();
  std::vector<std::nullptr_t> B2 = pool->map(noop, L);
  std::printf("\tpool.map(noop, L):\n\t\t%g seconds\n", Now() - t);

  t = Now();
  std::vector<std::nullptr_t> C2;
  for (auto x : pool->imap(noop, L, L.size() / 8)) C2.push_back(x);
  std::printf("\tlist(pool.imap(noop, L, chunksize=%zu)):\n\t\t%g seconds\n",
              L.size() / 8, Now() - t);

  if (!(A2.size() == B2.size() && B2.size() == C2.size()))
    throw mp::AssertionError("noop results differ");
  std::printf("\n");

  //
  // Test error handling
  //

  std::printf("Testing error handling:\n");

  try {
    std::printf("%g\n", pool->apply(f, {5}));
    throw mp::AssertionError("expected ZeroDivisionError");
  } catch (const mp::ZeroDivisionError&) {
    std::printf("\tGot ZeroDivisionError as expected from pool.apply()\n");
  }

  std::vector<int> range10 = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  try {
    pool->map(f, range10);
    throw mp::AssertionError("expected ZeroDivisionError");
  } catch (const mp::ZeroDivisionError&) {
    std::printf("\tGot ZeroDivisionError as expected from pool.map()\n");
  }

  try {
    std::vector<double> all;
    for (double x : pool->imap(f, range10)) all.push_back(x);
    throw mp::AssertionError("expected ZeroDivisionError");
  } catch (const mp::ZeroDivisionError&) {
    std::printf("\tGot ZeroDivisionError as expected from list(pool.imap())\n");
  }

  auto it = pool->imap(f, range10);
  int i = 0;
  for (; i < 10; ++i) {
    try {
      std::optional<double> x = it.next();
      if (!x) break;
      if (i == 5) throw mp::AssertionError("expected ZeroDivisionError");
    } catch (const mp::ZeroDivisionError&) {
      if (i != 5) throw;
    }
  }
  if (i != 10 && i != 9) throw mp::AssertionError("i == 9");
  std::printf("\tGot ZeroDivisionError as expected from IMapIterator.next()\n");
  std::printf("\n");

  //
  // Testing timeouts
  //

  std::printf("Testing ApplyResult.get() with timeout:");
  auto res = pool->apply_async(calculate, TASKS[0]);
  for (;;) {
    std::fflush(stdout);
    try {
      std::printf("\n\t%s", res.get(std::chrono::milliseconds(20)).c_str());
      break;
    } catch (const mp::TimeoutError&) {
      std::printf(".");
    }
  }
  std::printf("\n\n");

  std::printf("Testing IMapIterator.next() with timeout:");
  auto it2 = pool->imap(calculatestar, TASKS);
  for (;;) {
    std::fflush(stdout);
    try {
      std::optional<std::string> x = it2.next(std::chrono::milliseconds(20));
      if (!x) break;
      std::printf("\n\t%s", x->c_str());
    } catch (const mp::TimeoutError&) {
      std::printf(".");
    }
  }
  std::printf("\n\n");

  //
  // Testing callback
  //

  std::printf("Testing callback:\n");

  std::vector<int64_t> Acb;
  const std::vector<int64_t> Bcb = {56,  0,   1,   8,   27, 64,
                                    125, 216, 343, 512, 729};

  auto r = pool->apply_async(
      mul, {7, 8}, {.callback = [&](const int& v) { Acb.push_back(v); }});
  r.wait();

  std::vector<int64_t> range10l(range10.begin(), range10.end());
  auto r2 = pool->map_async(pow3, range10l, std::nullopt,
                            {.callback = [&](const std::vector<int64_t>& v) {
                              Acb.insert(Acb.end(), v.begin(), v.end());
                            }});
  r2.wait();

  if (Acb == Bcb) {
    std::printf("\tcallbacks succeeded\n\n");
  } else {
    std::printf("\t*** callbacks failed\n\t\t%s != %s\n\n",
                mp::reduction::repr(Acb).c_str(),
                mp::reduction::repr(Bcb).c_str());
  }

  //
  // Check close() methods
  //

  std::printf("Testing close():\n");

  auto result = pool->apply_async(sleep_seconds, {0.5});
  pool->close();
  pool->join();  // returns once every worker has exited

  if (result.get() != nullptr) throw mp::AssertionError("result is not None");

  std::printf("\tclose() succeeded\n\n");

  //
  // Check terminate() method
  //

  std::printf("Testing terminate():\n");

  pool = std::make_unique<PoolType>(2);
  double DELTA = 0.1;
  pool->apply(pow3, {2});
  std::vector<mp::pool::AsyncResult<std::nullptr_t>> sleeps;
  for (int k = 0; k < 100; ++k)
    sleeps.push_back(pool->apply_async(sleep_seconds, {DELTA}));
  pool->terminate();
  pool->join();

  std::printf("\tterminate() succeeded\n\n");

  //
  // Check garbage collection
  //

  std::printf("Testing garbage collection:\n");

  pool = std::make_unique<PoolType>(2);
  pool->apply(pow3, {2});
  sleeps.clear();
  for (int k = 0; k < 100; ++k)
    sleeps.push_back(pool->apply_async(sleep_seconds, {DELTA}));

  sleeps.clear();
  pool = nullptr;  // the destructor terminates the workers and waits for them

  std::printf("\tgarbage collection succeeded\n\n");
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  if (argc > 2) {
    std::printf("Usage:\n\t%s [processes | threads]\n", argv[0]);
    return 2;
  }
  std::string mode = argc == 2 ? argv[1] : "processes";
  auto banner = [](const std::string& text) {
    size_t left = (79 - text.size()) / 2;
    size_t right = 79 - text.size() - left;
    return std::string(left, '-') + text + std::string(right, '-');
  };
  if (mode == "processes") {
    std::printf("%s\n", banner(" Using processes ").c_str());
    test<mp::Pool>();
  } else if (mode == "threads") {
    std::printf("%s\n", banner(" Using threads ").c_str());
    test<mp::dummy::Pool>();  // import multiprocessing.dummy
  } else {
    std::printf("Usage:\n\t%s [processes | threads]\n", argv[0]);
    return 2;
  }
}
