// Examples (2.7): synchronization types like locks, conditions and queues.
// An argument "processes" (the default), "manager" or "threads" chooses the
// namespace the tests draw their types from, as the original's command line
// does: multiprocessing itself, a Manager() (with Process, current_process
// and active_children from multiprocessing), or multiprocessing::dummy.
//
// Differences forced by C++: the original rebinds a module-level
// `multiprocessing` name; here each test is a template over a struct naming
// the chosen types (Processes, Managed, Threads), so one body serves all
// three. A manager's Value returns a dynamic Object where the others return
// the C type, hence Get() below. Python 2's `print x,` becomes "x " without
// a newline.
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "dummy/dummy.h"
#include "managers/managers.h"
#include "process/context.h"
#include "process/process.h"
#include "queues/queues.h"
#include "reduction/object.h"
#include "sharedctypes/sharedctypes.h"
#include "synchronize/synchronize.h"

namespace mp = multiprocessing;
using mp::reduction::Object;
using namespace std::chrono_literals;

// ---- The three namespaces

struct Processes {
  using Process = mp::Process;
  static Process current_process() { return mp::current_process(); }
  static std::vector<Process> active_children() {
    return mp::active_children();
  }
  static mp::Lock Lock() { return {}; }
  static mp::RLock RLock() { return {}; }
  static mp::Semaphore Semaphore(int value) { return mp::Semaphore(value); }
  static mp::Condition Condition() { return {}; }
  static mp::Event Event() { return {}; }
  static mp::Queue Queue() { return mp::Queue(); }
  template <char C, class T>
  static auto Value(T value) {
    return mp::sharedctypes::Value<C>(value);
  }
  template <char C, class T>
  static auto Array(const std::vector<T>& values) {
    return mp::sharedctypes::Array<C>(values);
  }
};

// The manager lives from main()'s choice until the tests end.
std::optional<mp::managers::SyncManager> g_manager;

struct Managed {
  using Process = mp::Process;
  static Process current_process() { return mp::current_process(); }
  static std::vector<Process> active_children() {
    return mp::active_children();
  }
  static auto Lock() { return g_manager->Lock(); }
  static auto RLock() { return g_manager->RLock(); }
  static auto Semaphore(int value) { return g_manager->Semaphore(value); }
  static auto Condition() { return g_manager->Condition(); }
  static auto Event() { return g_manager->Event(); }
  static auto Queue() { return g_manager->Queue(); }
  template <char C, class T>
  static auto Value(T value) {
    return g_manager->Value(std::string(1, C), Object(value));
  }
  template <char C, class T>
  static auto Array(const std::vector<T>& values) {
    return g_manager->Array(std::string(1, C), values);
  }
};

struct Threads {
  using Process = mp::dummy::Process;
  static Process current_process() { return mp::dummy::current_process(); }
  static std::vector<Process> active_children() {
    return mp::dummy::active_children();
  }
  static mp::dummy::Lock Lock() { return {}; }
  static mp::dummy::RLock RLock() { return {}; }
  static mp::dummy::Semaphore Semaphore(int value) {
    return mp::dummy::Semaphore(value);
  }
  static mp::dummy::Condition Condition() { return {}; }
  static mp::dummy::Event Event() { return {}; }
  static mp::dummy::Queue Queue() { return mp::dummy::Queue(); }
  template <char C, class T>
  static auto Value(T value) {
    return mp::dummy::Value<C>(value);
  }
  template <char C, class T>
  static auto Array(const std::vector<T>& values) {
    return mp::dummy::Array<C>(values);
  }
};

// ---- Helpers

void sleep_seconds(double seconds) {
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

double random_random() {
  thread_local std::mt19937 gen(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
}

// Python's str(x).
template <class T>
std::string str(const T& x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

// v.value as a T, whether the value is a C type or a manager's Object.
template <class T, class V>
T Get(const V& v) {
  auto x = v.get();
  if constexpr (std::is_same_v<decltype(x), Object>) {
    if constexpr (std::is_floating_point_v<T>) {
      return static_cast<T>(x.as_float());
    } else {
      return static_cast<T>(x.as_int());
    }
  } else {
    return static_cast<T>(x);
  }
}

// a[:] as a vector of T.
template <class T, class A>
std::vector<T> List(const A& a) {
  std::vector<T> out;
  if constexpr (requires { a.list(); }) {
    for (auto x : a.list()) out.push_back(static_cast<T>(x));
  } else {
    for (int64_t i = 0; i < a.len(); ++i) {
      Object x = a[i];
      out.push_back(std::is_floating_point_v<T> ? static_cast<T>(x.as_float())
                                                : static_cast<T>(x.as_int()));
    }
  }
  return out;
}

void check(bool ok, const char* what) {
  if (!ok) throw mp::AssertionError(what);
}

//### TEST_VALUE

template <class NS, class V, class L>
void value_func(V running, L mutex) {
  sleep_seconds(random_random() * 4);

  mutex.acquire();
  std::printf("\n\t\t\t%s has finished\n", str(NS::current_process()).c_str());
  running.set(Get<int>(running) - 1);
  mutex.release();
  std::fflush(stdout);
}

template <class NS>
void test_value() {
  const int TASKS = 10;
  auto running = NS::template Value<'i'>(TASKS);
  auto mutex = NS::Lock();

  for (int i = 0; i < TASKS; ++i) {
    typename NS::Process p(value_func<NS, decltype(running), decltype(mutex)>,
                           running, mutex);
    p.start();
  }

  while (Get<int>(running) > 0) {
    sleep_seconds(0.08);
    mutex.acquire();
    std::printf("%d ", Get<int>(running));
    std::fflush(stdout);
    mutex.release();
  }

  std::printf("\n");
  std::printf("No more running processes\n");
}

//### TEST_QUEUE

template <class Q>
void queue_func(Q queue) {
  for (int i = 0; i < 30; ++i) {
    sleep_seconds(0.5 * random_random());
    queue.put(i * i);
  }
  queue.put(std::string("STOP"));
}

template <class NS>
void test_queue() {
  auto q = NS::Queue();

  typename NS::Process p(queue_func<decltype(q)>, q);
  p.start();

  Object o;
  while (o != Object("STOP")) {
    try {
      o = q.template get<Object>(true, 0.3s);
      std::printf("%s ", str(o).c_str());
      std::fflush(stdout);
    } catch (const mp::queues::Empty&) {
      std::printf("TIMEOUT\n");
    }
  }

  std::printf("\n");
}

//### TEST_CONDITION

template <class C>
void condition_func(C cond) {
  cond.acquire();
  std::printf("\t%s\n", str(cond).c_str());
  sleep_seconds(2);
  std::printf("\tchild is notifying\n");
  std::printf("\t%s\n", str(cond).c_str());
  cond.notify();
  cond.release();
  std::fflush(stdout);
}

template <class NS>
void test_condition() {
  auto cond = NS::Condition();

  typename NS::Process p(condition_func<decltype(cond)>, cond);
  std::printf("%s\n", str(cond).c_str());

  cond.acquire();
  std::printf("%s\n", str(cond).c_str());
  cond.acquire();
  std::printf("%s\n", str(cond).c_str());

  p.start();

  std::printf("main is waiting\n");
  std::fflush(stdout);
  cond.wait();
  std::printf("main has woken up\n");

  std::printf("%s\n", str(cond).c_str());
  cond.release();
  std::printf("%s\n", str(cond).c_str());
  cond.release();

  p.join();
  std::printf("%s\n", str(cond).c_str());
}

//### TEST_SEMAPHORE

template <class NS, class S, class M, class V>
void semaphore_func(S sema, M mutex, V running) {
  sema.acquire();

  mutex.acquire();
  running.set(Get<int>(running) + 1);
  std::printf("%d tasks are running\n", Get<int>(running));
  std::fflush(stdout);
  mutex.release();

  sleep_seconds(random_random() * 2);

  mutex.acquire();
  running.set(Get<int>(running) - 1);
  std::printf("%s has finished\n", str(NS::current_process()).c_str());
  std::fflush(stdout);
  mutex.release();

  sema.release();
}

template <class NS>
void test_semaphore() {
  auto sema = NS::Semaphore(3);
  auto mutex = NS::RLock();
  auto running = NS::template Value<'i'>(0);

  std::vector<typename NS::Process> processes;
  for (int i = 0; i < 10; ++i) {
    processes.emplace_back(
        semaphore_func<NS, decltype(sema), decltype(mutex), decltype(running)>,
        sema, mutex, running);
  }

  for (auto& p : processes) p.start();

  for (auto& p : processes) p.join();
}

//### TEST_JOIN_TIMEOUT

void join_timeout_func() {
  std::printf("\tchild sleeping\n");
  std::fflush(stdout);
  sleep_seconds(5.5);
  std::printf("\n\tchild terminating\n");
  std::fflush(stdout);
}

template <class NS>
void test_join_timeout() {
  typename NS::Process p(join_timeout_func);
  p.start();

  std::printf("waiting for process to finish\n");
  std::fflush(stdout);

  while (true) {
    p.join(1s);
    if (!p.is_alive()) break;
    std::printf(". ");
    std::fflush(stdout);
  }
}

//### TEST_EVENT

template <class NS, class E>
void event_func(E event) {
  std::printf("\t%s is waiting\n", str(NS::current_process()).c_str());
  std::fflush(stdout);
  event.wait();
  std::printf("\t%s has woken up\n", str(NS::current_process()).c_str());
  std::fflush(stdout);
}

template <class NS>
void test_event() {
  auto event = NS::Event();

  std::vector<typename NS::Process> processes;
  for (int i = 0; i < 5; ++i) {
    processes.emplace_back(event_func<NS, decltype(event)>, event);
  }

  for (auto& p : processes) p.start();

  std::printf("main is sleeping\n");
  std::fflush(stdout);
  sleep_seconds(2);

  std::printf("main is setting event\n");
  std::fflush(stdout);
  event.set();

  for (auto& p : processes) p.join();
}

//### TEST_SHAREDVALUES

template <class NS>
void test_sharedvalues() {
  // values = [('i', 10), ('h', -2), ('d', 1.25)]
  const int v0 = 10;
  const short v1 = -2;
  const double v2 = 1.25;
  // arrays = [('i', range(100)), ('d', [0.25 * i ...]), ('H', range(1000))]
  std::vector<int> a0;
  std::vector<double> a1;
  std::vector<unsigned short> a2;
  for (int i = 0; i < 100; ++i) a0.push_back(i);
  for (int i = 0; i < 100; ++i) a1.push_back(0.25 * i);
  for (int i = 0; i < 1000; ++i) a2.push_back(static_cast<unsigned short>(i));

  auto shared_values =
      std::make_tuple(NS::template Value<'i'>(v0), NS::template Value<'h'>(v1),
                      NS::template Value<'d'>(v2));
  auto shared_arrays =
      std::make_tuple(NS::template Array<'i'>(a0), NS::template Array<'d'>(a1),
                      NS::template Array<'H'>(a2));

  typename NS::Process p([=] {
    check(Get<int>(std::get<0>(shared_values)) == v0, "values[0]");
    check(Get<short>(std::get<1>(shared_values)) == v1, "values[1]");
    check(Get<double>(std::get<2>(shared_values)) == v2, "values[2]");

    check(List<int>(std::get<0>(shared_arrays)) == a0, "arrays[0]");
    check(List<double>(std::get<1>(shared_arrays)) == a1, "arrays[1]");
    check(List<unsigned short>(std::get<2>(shared_arrays)) == a2, "arrays[2]");

    std::printf("Tests passed\n");
    std::fflush(stdout);
  });
  p.start();
  p.join();

  check(p.exitcode() == 0, "p.exitcode == 0");
}

//###

template <class NS>
void test() {
  using Test = void (*)();
  const std::pair<const char*, Test> tests[] = {
      {"test_value", test_value<NS>},
      {"test_queue", test_queue<NS>},
      {"test_condition", test_condition<NS>},
      {"test_semaphore", test_semaphore<NS>},
      {"test_join_timeout", test_join_timeout<NS>},
      {"test_event", test_event<NS>},
      {"test_sharedvalues", test_sharedvalues<NS>},
  };
  for (const auto& [name, func] : tests) {
    std::printf("\n\t######## %s\n\n", name);
    std::fflush(stdout);
    func();
  }

  auto ignore = NS::active_children();  // cleanup any old processes
  (void)ignore;
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);

  check(argc == 1 || argc == 2, "len(sys.argv) in (1, 2)");
  const std::string mode = argc == 1 ? "processes" : argv[1];

  auto center = [](const std::string& text) {
    size_t left = (79 - text.size()) / 2;
    return std::string(left, '-') + text +
           std::string(79 - text.size() - left, '-');
  };
  if (mode == "processes") {
    std::printf("%s\n", center(" Using processes ").c_str());
    test<Processes>();
  } else if (mode == "manager") {
    std::printf("%s\n", center(" Using processes and a manager ").c_str());
    std::fflush(stdout);
    g_manager.emplace(mp::Manager());
    test<Managed>();
    g_manager.reset();
  } else if (mode == "threads") {
    std::printf("%s\n", center(" Using threads ").c_str());
    test<Threads>();
  } else {
    std::printf("Usage:\n\t%s [processes | manager | threads]\n", argv[0]);
    return 2;
  }
  std::fflush(stdout);
}
