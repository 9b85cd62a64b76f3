// Examples (2.7): some simple benchmarks comparing multiprocessing with
// threading. Each figure doubles its iterations until one run takes at least
// `delta` seconds (1, as in the original; an optional argument sets another,
// so that a test runs it in moments).
//
// The threading module's types are multiprocessing::dummy's here (Queue.Queue
// is dummy::Queue, threading.Thread is dummy::Process, threading.Lock is
// dummy::Lock, ...); the labels stay the original's. C++ has no garbage
// collector to disable. Reads like `a = seq[5]` go to a volatile sink so the
// compiler keeps them.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "connection/connection.h"
#include "dummy/dummy.h"
#include "managers/managers.h"
#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"
#include "reduction/object.h"
#include "sharedctypes/sharedctypes.h"
#include "synchronize/synchronize.h"

namespace mp = multiprocessing;

double _timer() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double delta = 1;

// Python's str() of a float (12 significant digits, as Python 2 prints).
std::string str(double x) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.12g", x);
  return buffer;
}

//### TEST_QUEUESPEED

template <class Q, class C>
void queuespeed_func(Q q, C c, long iterations) {
  const std::string a(256, '0');
  c.acquire();
  c.notify();
  c.release();

  for (long i = 0; i < iterations; ++i) q.put(a);

  q.put(std::string("STOP"));
}

template <class Process, class Q, class C>
void test_queuespeed(Q q, C c) {
  double elapsed = 0;
  long iterations = 1;

  while (elapsed < delta) {
    iterations *= 2;

    Process p(queuespeed_func<Q, C>, q, c, iterations);
    c.acquire();
    p.start();
    c.wait();
    c.release();

    std::string result;
    double t = _timer();

    while (result != "STOP") result = q.template get<std::string>();

    elapsed = _timer() - t;

    p.join();
  }

  std::printf("%ld objects passed through the queue in %s seconds\n",
              iterations, str(elapsed).c_str());
  std::printf("average number/sec: %s\n", str(iterations / elapsed).c_str());
}

//### TEST_PIPESPEED

void pipe_func(mp::Connection c, mp::Condition cond, long iterations) {
  const std::string a(256, '0');
  cond.acquire();
  cond.notify();
  cond.release();

  for (long i = 0; i < iterations; ++i) c.send(a);

  c.send(std::string("STOP"));
}

void test_pipespeed() {
  auto [c, d] = mp::Pipe();
  mp::Condition cond;
  double elapsed = 0;
  long iterations = 1;

  while (elapsed < delta) {
    iterations *= 2;

    mp::Process p(pipe_func, d, cond, iterations);
    cond.acquire();
    p.start();
    cond.wait();
    cond.release();

    std::string result;
    double t = _timer();

    while (result != "STOP") result = c.recv<std::string>();

    elapsed = _timer() - t;
    p.join();
  }

  std::printf("%ld objects passed through connection in %s seconds\n",
              iterations, str(elapsed).c_str());
  std::printf("average number/sec: %s\n", str(iterations / elapsed).c_str());
}

//### TEST_SEQSPEED

// An element as an int: a manager's list returns a dynamic Object.
template <class X>
int read_int(const X& x) {
  if constexpr (std::is_convertible_v<const X&, int>) {
    return x;
  } else {
    return static_cast<int>(mp::reduction::Object(x).as_int());
  }
}

template <class Seq>
void test_seqspeed(const Seq& seq) {
  double elapsed = 0;
  long iterations = 1;

  while (elapsed < delta) {
    iterations *= 2;

    double t = _timer();

    for (long i = 0; i < iterations; ++i) {
      volatile int a = read_int(seq[5]);
      (void)a;
    }

    elapsed = _timer() - t;
  }

  std::printf("%ld iterations in %s seconds\n", iterations,
              str(elapsed).c_str());
  std::printf("average number/sec: %s\n", str(iterations / elapsed).c_str());
}

//### TEST_LOCK

template <class L>
void test_lockspeed(L l) {
  double elapsed = 0;
  long iterations = 1;

  while (elapsed < delta) {
    iterations *= 2;

    double t = _timer();

    for (long i = 0; i < iterations; ++i) {
      l.acquire();
      l.release();
    }

    elapsed = _timer() - t;
  }

  std::printf("%ld iterations in %s seconds\n", iterations,
              str(elapsed).c_str());
  std::printf("average number/sec: %s\n", str(iterations / elapsed).c_str());
}

//### TEST_CONDITION

template <class C>
void conditionspeed_func(C c, long N) {
  c.acquire();
  c.notify();

  for (long i = 0; i < N; ++i) {
    c.wait();
    c.notify();
  }

  c.release();
}

template <class Process, class C>
void test_conditionspeed(C c) {
  double elapsed = 0;
  long iterations = 1;

  while (elapsed < delta) {
    iterations *= 2;

    c.acquire();
    Process p(conditionspeed_func<C>, c, iterations);
    p.start();

    c.wait();

    double t = _timer();

    for (long i = 0; i < iterations; ++i) {
      c.notify();
      c.wait();
    }

    elapsed = _timer() - t;

    c.release();
    p.join();
  }

  std::printf("%ld waits in %s seconds\n", iterations * 2,
              str(elapsed).c_str());
  std::printf("average number/sec: %s\n",
              str(iterations * 2 / elapsed).c_str());
}

//###

void test() {
  auto manager = mp::Manager();
  namespace threading = mp::dummy;

  std::printf("\n\t######## testing Queue.Queue\n\n");
  test_queuespeed<threading::Process>(threading::Queue(),
                                      threading::Condition());
  std::printf("\n\t######## testing multiprocessing.Queue\n\n");
  test_queuespeed<mp::Process>(mp::Queue(), mp::Condition());
  std::printf("\n\t######## testing Queue managed by server process\n\n");
  test_queuespeed<mp::Process>(manager.Queue(), manager.Condition());
  std::printf("\n\t######## testing multiprocessing.Pipe\n\n");
  test_pipespeed();

  std::printf("\n");

  std::vector<int> range10;
  for (int i = 0; i < 10; ++i) range10.push_back(i);
  std::printf("\n\t######## testing list\n\n");
  test_seqspeed(range10);
  std::printf("\n\t######## testing list managed by server process\n\n");
  test_seqspeed(manager.list(range10));
  std::printf("\n\t######## testing Array(\"i\", ..., lock=False)\n\n");
  test_seqspeed(mp::sharedctypes::Array<'i'>(range10, {.lock = false}));
  std::printf("\n\t######## testing Array(\"i\", ..., lock=True)\n\n");
  test_seqspeed(mp::sharedctypes::Array<'i'>(range10, {.lock = true}));

  std::printf("\n");

  std::printf("\n\t######## testing threading.Lock\n\n");
  test_lockspeed(threading::Lock());
  std::printf("\n\t######## testing threading.RLock\n\n");
  test_lockspeed(threading::RLock());
  std::printf("\n\t######## testing multiprocessing.Lock\n\n");
  test_lockspeed(mp::Lock());
  std::printf("\n\t######## testing multiprocessing.RLock\n\n");
  test_lockspeed(mp::RLock());
  std::printf("\n\t######## testing lock managed by server process\n\n");
  test_lockspeed(manager.Lock());
  std::printf("\n\t######## testing rlock managed by server process\n\n");
  test_lockspeed(manager.RLock());

  std::printf("\n");

  std::printf("\n\t######## testing threading.Condition\n\n");
  test_conditionspeed<threading::Process>(threading::Condition());
  std::printf("\n\t######## testing multiprocessing.Condition\n\n");
  test_conditionspeed<mp::Process>(mp::Condition());
  std::printf("\n\t######## testing condition managed by a server process\n\n");
  test_conditionspeed<mp::Process>(manager.Condition());
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc == 2) {
    char* end = nullptr;
    delta = std::strtod(argv[1], &end);
    if (end == argv[1] || *end != '\0' || !(delta > 0)) {
      std::fprintf(stderr, "Usage:\n\t%s [delta seconds, default 1]\n",
                   argv[0]);
      return 2;
    }
  } else if (argc > 2) {
    std::fprintf(stderr, "Usage:\n\t%s [delta seconds, default 1]\n", argv[0]);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  test();
}
