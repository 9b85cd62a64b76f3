// Value, Array and friends: semantics, reprs, and sharing with forked
// children.
#include "sharedctypes/sharedctypes.h"

#include <mutex>
#include <numeric>
#include <regex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "synchronize/internal/test_util.h"

namespace multiprocessing {
namespace {

namespace sc = sharedctypes;

struct Point {
  double x;
  double y;
};

TEST(SharedctypesTest, RawValueReprs) {
  EXPECT_EQ(sc::RawValue<'d'>(3.1415927).repr(), "c_double(3.1415927)");
  EXPECT_EQ(sc::RawValue<'i'>(3).repr(), "c_int(3)");
  EXPECT_EQ(sc::RawValue<'q'>(5).repr(), "c_long(5)");
  EXPECT_EQ(sc::RawValue<'L'>(1).repr(), "c_ulong(1)");
  EXPECT_EQ(sc::RawValue<'c'>('x').repr(), "c_char(b'x')");
  EXPECT_EQ(sc::RawValue<'b'>(-3).repr(), "c_byte(-3)");
  EXPECT_EQ(sc::RawValue<'B'>(3).repr(), "c_ubyte(3)");
  EXPECT_EQ(sc::RawValue<'h'>(1).repr(), "c_short(1)");
  EXPECT_EQ(sc::RawValue<'H'>(1).repr(), "c_ushort(1)");
  EXPECT_EQ(sc::RawValue<'I'>(1).repr(), "c_uint(1)");
  EXPECT_EQ(sc::RawValue<'Q'>(1).repr(), "c_ulong(1)");
  EXPECT_EQ(sc::RawValue<'f'>(0.1f).repr(), "c_float(0.10000000149011612)");
  EXPECT_EQ(sc::RawValue<double>(1.0).repr(), "c_double(1.0)");
  EXPECT_EQ(sc::RawValue<double>(1e16).repr(), "c_double(1e+16)");
  EXPECT_EQ(sc::RawValue<double>(1.5e-7).repr(), "c_double(1.5e-07)");
  EXPECT_EQ(sc::RawValue<double>(0.0001).repr(), "c_double(0.0001)");
  EXPECT_EQ(sc::RawValue<double>(-250.25).repr(), "c_double(-250.25)");
  EXPECT_EQ(sc::RawValue<double>().repr(), "c_double(0.0)");
  std::regex point(
      R"(<multiprocessing::\(anonymous namespace\)::Point object at 0x[0-9a-f]+>)");
  EXPECT_TRUE(std::regex_match(sc::RawValue<Point>({1, 2}).repr(), point))
      << sc::RawValue<Point>({1, 2}).repr();
}

TEST(SharedctypesTest, ValueWrapper) {
  auto num = sc::Value<'d'>(0.0);
  EXPECT_EQ(num.repr(), "<Synchronized wrapper for c_double(0.0)>");
  num.value() = 3.1415927;
  double d = num.value();
  EXPECT_EQ(d, 3.1415927);
  num.value() += 1;
  EXPECT_EQ(num.get(), 4.1415927);
  EXPECT_TRUE(num.get_lock().is_rlock());
  {
    std::lock_guard<sc::SyncLock> guard(num.get_lock());
    num.value() = num.value() * 2;  // the RLock nests
  }
  EXPECT_EQ(num.get_lock().repr(), "<RLock(None, 0)>");

  auto raw = sc::Value<int>(7, {.lock = false});
  EXPECT_EQ(raw.repr(), "c_int(7)");
  EXPECT_THROW(raw.get_lock(), AttributeError);
  ++raw.value();
  EXPECT_EQ(raw.get(), 8);

  Lock lock;
  auto given = sc::Value<long>(1, {.lock = lock});
  EXPECT_FALSE(given.get_lock().is_rlock());
  ASSERT_TRUE(lock.acquire());
  EXPECT_FALSE(given.get_lock().acquire(false));
  lock.release();

  auto p = sc::Value<Point>({1.5, 2.5});
  EXPECT_EQ(
      p.repr().rfind("<SynchronizedPoint wrapper for <multiprocessing::", 0),
      0u)
      << p.repr();
  Point got = p.value();
  EXPECT_EQ(got.y, 2.5);
}

TEST(SharedctypesTest, ArrayIndexSliceIterate) {
  std::vector<int> range(10);
  std::iota(range.begin(), range.end(), 0);
  auto arr = sc::Array<'i'>(range);
  EXPECT_EQ(arr.len(), 10u);
  std::regex repr(
      R"(<SynchronizedArray wrapper for <multiprocessing\.sharedctypes\.c_int_Array_10 object at 0x[0-9a-f]+>>)");
  EXPECT_TRUE(std::regex_match(arr.repr(), repr)) << arr.repr();
  for (size_t i = 0; i < arr.len(); ++i) arr[i] = -arr[i];
  EXPECT_EQ(arr.list(),
            (std::vector<int>{0, -1, -2, -3, -4, -5, -6, -7, -8, -9}));
  EXPECT_EQ(arr[-1], -9);
  EXPECT_THROW(arr[10].get(), IndexError);
  EXPECT_THROW(arr[-11], IndexError);
  EXPECT_EQ(arr.slice(2, 4), (std::vector<int>{-2, -3}));
  EXPECT_EQ(arr.slice(-2, 100), (std::vector<int>{-8, -9}));
  EXPECT_TRUE(arr.slice(5, 2).empty());
  arr.set_slice(0, 3, {7, 8, 9});
  EXPECT_EQ(arr.slice(0, 3), (std::vector<int>{7, 8, 9}));
  EXPECT_THROW(arr.set_slice(0, 3, {1}), ValueError);
  int sum = 0;
  for (int v : arr) sum += v;
  EXPECT_EQ(sum, 7 + 8 + 9 - 3 - 4 - 5 - 6 - 7 - 8 - 9);
  for (auto ref : arr) ref *= 2;
  EXPECT_EQ(arr[0], 14);

  auto zeros = sc::RawArray<'h'>(7);
  EXPECT_EQ(zeros.list(), std::vector<short>(7, 0));
  EXPECT_TRUE(std::regex_match(
      zeros.repr(),
      std::regex(
          R"(<multiprocessing\.sharedctypes\.c_short_Array_7 object at 0x[0-9a-f]+>)")));
  auto init = sc::RawArray<int>({9, 2, 8});
  sc::CArray<int> same = init;  // a handle on the same array, not a copy
  same[0] = 10;
  EXPECT_EQ(init[0], 10);
  auto v = sc::RawValue<long>(0);
  auto h = sc::RawArray<'h'>(5);
  auto tuple =
      std::make_shared<std::tuple<sc::CValue<long>, sc::CArray<short>>>(v, h);
  EXPECT_EQ(std::get<1>(*tuple).data(), h.data());
  std::tuple<sc::CArray<short>> one(h);
  EXPECT_EQ(std::get<0>(one).data(), h.data());
  auto moved = std::move(std::get<0>(one));
  EXPECT_EQ(moved.data(), h.data());
  EXPECT_EQ(init.at(-1), 8);
  auto doubles = sc::Array<double>(std::vector<double>{1.5, 2});
  EXPECT_EQ(doubles[1], 2.0);
  auto unlocked = sc::Array<'i'>(3, {.lock = false});
  EXPECT_TRUE(std::regex_match(
      unlocked.repr(),
      std::regex(
          R"(<multiprocessing\.sharedctypes\.c_int_Array_3 object at 0x[0-9a-f]+>)")));
}

TEST(SharedctypesTest, CharArrays) {
  auto s = sc::Array<'c'>("hello world");
  EXPECT_EQ(s.len(), 11u);
  EXPECT_EQ(s.value(), "hello world");
  EXPECT_TRUE(s.repr().rfind("<SynchronizedString wrapper for "
                             "<multiprocessing.sharedctypes.c_char_Array_11 "
                             "object at 0x",
                             0) == 0)
      << s.repr();
  s.set_value("hi");
  EXPECT_EQ(s.value(), "hi");
  EXPECT_EQ(s.raw(), std::string("hi\0lo world", 11));
  EXPECT_THROW(s.set_value("much too long for it"), ValueError);
  auto raw = sc::RawArray<char>(4);
  EXPECT_EQ(raw.value(), "");
  raw.set_raw("abcd");
  EXPECT_EQ(raw.value(), "abcd");
}

TEST(SharedctypesTest, StructArrayAndCopy) {
  Lock lock;
  auto A = sc::Array<Point>({{1.875, -6.25}, {-5.75, 2.0}, {2.375, 9.5}},
                            {.lock = lock});
  {
    std::lock_guard<sc::SyncLock> guard(A.get_lock());
    for (Point& a : A.get_obj()) {
      a.x *= a.x;
      a.y *= a.y;
    }
  }
  Point p = A[0];
  EXPECT_EQ(p.x, 3.515625);
  EXPECT_EQ(p.y, 39.0625);
  auto c = sc::copy(A.get_obj());
  c[0].x = 0;
  EXPECT_EQ(A.get(0).x, 3.515625);
  auto v = sc::RawValue<int>(5);
  auto v2 = sc::copy(v);
  v2.value() = 6;
  EXPECT_EQ(v.value(), 5);
  auto s = sc::synchronized(v2);
  EXPECT_EQ(s.repr(), "<Synchronized wrapper for c_int(6)>");
}

TEST(SharedctypesTest, ThreadsIncrementUnderLock) {
  auto counter = sc::Value<'i'>(0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) counter.value() += 1;  // one locked step
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.get(), 20000);
}

}  // namespace
}  // namespace multiprocessing
