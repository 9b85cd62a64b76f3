// Shared values and arrays between processes, under each start method.
#include <chrono>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"
#include "sharedctypes/sharedctypes.h"
#include "synchronize/internal/heap.h"
#include "synchronize/synchronize.h"

namespace multiprocessing::sharedctypes_test {

using namespace std::chrono_literals;
namespace sc = sharedctypes;

struct Point {
  double x;
  double y;
};

void Increment(sc::Synchronized<int> counter, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard<sc::SyncLock> guard(counter.get_lock());
    counter.value() = counter.value() + 1;  // read, then write: needs the lock
  }
}
MP_REGISTER_FUNCTION(Increment);

void Negate(sc::Synchronized<double> num, sc::SynchronizedArray<int> arr) {
  num.value() = 3.1415927;
  for (size_t i = 0; i < arr.len(); ++i) arr[i] = -arr[i];
}
MP_REGISTER_FUNCTION(Negate);

void Modify(sc::Synchronized<int> n, sc::Synchronized<double> x,
            sc::SynchronizedArray<char> s, sc::SynchronizedArray<Point> A) {
  n.value() = n.get() * n.get();
  x.value() = x.get() * x.get();
  std::string upper = s.value();
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  s.set_value(upper);
  std::lock_guard<sc::SyncLock> guard(A.get_lock());
  for (Point& a : A.get_obj()) {
    a.x *= a.x;
    a.y *= a.y;
  }
}
MP_REGISTER_FUNCTION(Modify);

void FillRaw(sc::CValue<long> v, sc::CArray<short> a) {
  v.value() = 42;
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<short>(i * 2);
}
MP_REGISTER_FUNCTION(FillRaw);

class SharedctypesProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  template <class F, class... A>
  Process Start(F f, A&&... args) {
    Process p = get_context(GetParam()).Process(f, std::forward<A>(args)...);
    p.start();
    return p;
  }
  static int Join(Process& p) {
    p.join(60s);
    if (!p.exitcode()) {
      p.kill();
      p.join(10s);
      return -1000;
    }
    return *p.exitcode();
  }
};

TEST_P(SharedctypesProcessTest, NProcessesTimesMIncrements) {
  auto counter = sc::Value<'i'>(0);
  constexpr int kProcesses = 4;
  constexpr int kIncrements = 2000;
  std::vector<Process> children;
  for (int i = 0; i < kProcesses; ++i) {
    children.push_back(Start(&Increment, counter, kIncrements));
  }
  for (auto& p : children) ASSERT_EQ(Join(p), 0);
  EXPECT_EQ(counter.get(), kProcesses * kIncrements);
}

TEST_P(SharedctypesProcessTest, TheDocumentationsValueAndArray) {
  auto num = sc::Value<'d'>(0.0);
  std::vector<int> range(10);
  std::iota(range.begin(), range.end(), 0);
  auto arr = sc::Array<'i'>(range);
  Process p = Start(&Negate, num, arr);
  ASSERT_EQ(Join(p), 0);
  EXPECT_EQ(num.value(), 3.1415927);
  EXPECT_EQ(arr.list(),
            (std::vector<int>{0, -1, -2, -3, -4, -5, -6, -7, -8, -9}));
}

TEST_P(SharedctypesProcessTest, TheDocumentationsPointExample) {
  Lock lock;
  auto n = sc::Value<'i'>(7);
  auto x = sc::Value<double>(1.0 / 3.0, {.lock = false});
  auto s = sc::Array<'c'>("hello world", {.lock = lock});
  auto A = sc::Array<Point>({{1.875, -6.25}, {-5.75, 2.0}, {2.375, 9.5}},
                            {.lock = lock});
  Process p = Start(&Modify, n, x, s, A);
  ASSERT_EQ(Join(p), 0);
  EXPECT_EQ(n.value(), 49);
  EXPECT_EQ(x.value(), 1.0 / 9.0 + 0 * x.get() + (x.get() - 1.0 / 9.0));
  EXPECT_EQ(s.value(), "HELLO WORLD");
  Point a0 = A[0];
  Point a2 = A[2];
  EXPECT_EQ(a0.x, 3.515625);
  EXPECT_EQ(a0.y, 39.0625);
  EXPECT_EQ(a2.y, 90.25);
}

TEST_P(SharedctypesProcessTest, RawObjects) {
  auto v = sc::RawValue<long>(0);
  auto a = sc::RawArray<'h'>(5);
  Process p = Start(&FillRaw, v, a);
  ASSERT_EQ(Join(p), 0);
  EXPECT_EQ(v.value(), 42);
  EXPECT_EQ(a.list(), (std::vector<short>{0, 2, 4, 6, 8}));
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SharedctypesProcessTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

TEST(SharedctypesPickleTest, RoundTripSharesTheBytes) {
  auto arr = sc::Array<'i'>({1, 2, 3});
  reduction::OutOfBand oob;
  std::string data = reduction::dumps(arr, &oob);
  auto back = reduction::loads<sc::SynchronizedArray<int>>(data, &oob);
  back[0] = 10;
  EXPECT_EQ(arr[0], 10);
  EXPECT_TRUE(back.get_lock().is_rlock());
  // Without a descriptor channel the object cannot travel.
  EXPECT_THROW(reduction::dumps(arr), PicklingError);
}

TEST(SharedctypesPickleTest, HostileInputIsAnError) {
  reduction::OutOfBand oob;
  auto value = sc::RawValue<double>(1.0);
  std::string data = reduction::dumps(value, &oob);
  // The wrong descriptor: not an arena.
  reduction::OutOfBand wrong;
  wrong.add_dup(0);
  EXPECT_THROW(reduction::loads<sc::CValue<double>>(data, &wrong), Exception);
  // A larger type than the block holds.
  struct Big {
    char bytes[4096];
  };
  EXPECT_THROW(reduction::loads<sc::CValue<Big>>(data, &oob), ValueError);
}

}  // namespace multiprocessing::sharedctypes_test

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
