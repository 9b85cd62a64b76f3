#include "reduction/object.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace multiprocessing::reduction {
namespace {

TEST(ObjectTest, ScalarRepr) {
  EXPECT_EQ(repr(Object()), "None");
  EXPECT_EQ(repr(Object(true)), "True");
  EXPECT_EQ(repr(Object(false)), "False");
  EXPECT_EQ(repr(Object(0)), "0");
  EXPECT_EQ(repr(Object(-42)), "-42");
  EXPECT_EQ(repr(Object(std::numeric_limits<int64_t>::min())),
            "-9223372036854775808");
  EXPECT_EQ(repr(Object(std::numeric_limits<uint64_t>::max())),
            "18446744073709551615");
  EXPECT_EQ(repr(Object(~absl::uint128(0))),
            "340282366920938463463374607431768211455");
  EXPECT_EQ(repr(Object(std::numeric_limits<absl::int128>::min())),
            "-170141183460469231731687303715884105728");
}

TEST(ObjectTest, FloatReprIsPythonsShortestRepr) {
  EXPECT_EQ(repr(Object(1.0 / 9)), "0.1111111111111111");
  EXPECT_EQ(repr(Object(1.0)), "1.0");
  EXPECT_EQ(repr(Object(-0.0)), "-0.0");
  EXPECT_EQ(repr(Object(1e16)), "1e+16");
  EXPECT_EQ(repr(Object(1e15)), "1000000000000000.0");
  EXPECT_EQ(repr(Object(1e-05)), "1e-05");
  EXPECT_EQ(repr(Object(0.0001)), "0.0001");
  EXPECT_EQ(repr(Object(0.1)), "0.1");
  EXPECT_EQ(repr(Object(123.456)), "123.456");
  EXPECT_EQ(repr(Object(1.5e300)), "1.5e+300");
  EXPECT_EQ(repr(Object(5e-324)), "5e-324");
  EXPECT_EQ(repr(Object(1.7976931348623157e308)), "1.7976931348623157e+308");
  EXPECT_EQ(repr(Object(std::numeric_limits<double>::infinity())), "inf");
  EXPECT_EQ(repr(Object(-std::numeric_limits<double>::infinity())), "-inf");
  EXPECT_EQ(repr(Object(std::nan(""))), "nan");
  EXPECT_EQ(repr(Object(3.515625)), "3.515625");
}

TEST(ObjectTest, StrRepr) {
  EXPECT_EQ(repr(Object("hello")), "'hello'");
  EXPECT_EQ(repr(Object("it's")), "\"it's\"");
  EXPECT_EQ(repr(Object("say \"hi\"")), "'say \"hi\"'");
  EXPECT_EQ(repr(Object("both ' and \"")), "'both \\' and \"'");
  EXPECT_EQ(repr(Object("a\\b\tc\nd\re")), "'a\\\\b\\tc\\nd\\re'");
  EXPECT_EQ(repr(Object(std::string("\x00\x1f\x7f", 3))), "'\\x00\\x1f\\x7f'");
  EXPECT_EQ(repr(Object("\xc2\x80\xc2\xa0\xc3\xa9")),
            "'\\x80\\xa0\xc3\xa9'");  // U+0080 U+00A0 é
  EXPECT_EQ(repr(Object("\xe2\x80\xa8\xe6\x97\xa5")),
            "'\\u2028\xe6\x97\xa5'");  // U+2028 日
  EXPECT_EQ(repr(Object("\xf3\xa0\x80\x81\xf0\x9f\x98\x80")),
            "'\\U000e0001\xf0\x9f\x98\x80'");
  EXPECT_EQ(repr(Object("\xed\xa0\x80")),
            "'\\ud800'");  // a lone surrogate, as pickle carries it
  EXPECT_EQ(str(Object("it's")), "it's");
  EXPECT_EQ(str(Object(2.5)), "2.5");
  std::ostringstream out;
  out << Object("x") << ' ' << Object::list({1, "y"});
  EXPECT_EQ(out.str(), "x [1, 'y']");
}

TEST(ObjectTest, BytesRepr) {
  EXPECT_EQ(repr(Object::bytes("abc")), "b'abc'");
  EXPECT_EQ(repr(Object::bytes(std::string("\x00\xff\x7f\t", 4))),
            "b'\\x00\\xff\\x7f\\t'");
  EXPECT_EQ(repr(Object::bytes("it's")), "b\"it's\"");
  EXPECT_EQ(repr(Object::bytes("'\"")), "b'\\'\"'");
  EXPECT_EQ(repr(Object::bytearray("ab")), "bytearray(b'ab')");
  EXPECT_EQ(repr(Object::bytearray("'")),
            "bytearray(b\"\\'\")");  // CPython's bytearray quirk
  EXPECT_EQ(repr(Object::bytearray("")), "bytearray(b'')");
}

TEST(ObjectTest, ContainerRepr) {
  EXPECT_EQ(repr(Object::list()), "[]");
  EXPECT_EQ(repr(Object::list({1, 4, 9})), "[1, 4, 9]");
  EXPECT_EQ(repr(Object::list({42, nullptr, "hello"})), "[42, None, 'hello']");
  EXPECT_EQ(repr(Object::tuple()), "()");
  EXPECT_EQ(repr(Object::tuple({1})), "(1,)");
  EXPECT_EQ(repr(Object::tuple({3.515625, 39.0625})), "(3.515625, 39.0625)");
  EXPECT_EQ(repr(Object::dict()), "{}");
  EXPECT_EQ(repr(Object::dict({{"b", 1}, {"a", Object::list({2})}})),
            "{'b': 1, 'a': [2]}");
  EXPECT_EQ(repr(Object::set()), "set()");
  EXPECT_EQ(repr(Object::set({3, 1, 2})), "{3, 1, 2}");
  EXPECT_EQ(repr(Object::frozenset()), "frozenset()");
  EXPECT_EQ(repr(Object::frozenset({1, 2})), "frozenset({1, 2})");
}

TEST(ObjectTest, NumbersCompareAndHashLikePython) {
  EXPECT_TRUE(Object(1) == Object(1.0));
  EXPECT_TRUE(Object(1) == Object(true));
  EXPECT_TRUE(Object(0.0) == Object(false));
  EXPECT_EQ(Object(1).hash(), Object(1.0).hash());
  EXPECT_EQ(Object(1).hash(), Object(true).hash());
  EXPECT_FALSE(Object(1) == Object(1.5));
  EXPECT_FALSE(Object(1) == Object("1"));
  EXPECT_TRUE(Object(absl::uint128(1) << 64) == Object(18446744073709551616.0));
  EXPECT_FALSE(Object(std::nan("")) == Object(std::nan("")));
  // CPython's values.
  EXPECT_EQ(Object(-1).hash(), -2);
  EXPECT_EQ(Object((int64_t{1} << 61) - 1).hash(), 0);
  EXPECT_EQ(Object(0.5).hash(), 1152921504606846976);
  EXPECT_EQ(Object(1e100).hash(), 1822893315824342674);
  EXPECT_EQ(Object(-2.5).hash(), -1152921504606846978);
  EXPECT_EQ(Object(absl::uint128(1) << 100).hash(), 549755813888);
  EXPECT_EQ(Object(std::numeric_limits<absl::int128>::min()).hash(), -32);
  EXPECT_EQ(Object(std::numeric_limits<double>::infinity()).hash(), 314159);
  EXPECT_EQ(Object(1.5e-300).hash(), 1876877353711978326);
  EXPECT_EQ(Object::tuple({1, 2}).hash(), -3550055125485641917);
  EXPECT_EQ(Object::tuple().hash(), 5740354900026072187);
  EXPECT_EQ(Object::tuple({1}).hash(), -6644214454873602895);
  EXPECT_EQ(Object::tuple({1, 2}).hash(),
            Object::tuple({1.0, true + 1}).hash());
  EXPECT_EQ(Object::frozenset({1, 2}).hash(), Object::frozenset({2, 1}).hash());
}

TEST(ObjectTest, ContainerEquality) {
  EXPECT_TRUE(Object::list({1, 2}) == Object::list({1.0, 2}));
  EXPECT_FALSE(Object::list({1, 2}) == Object::tuple({1, 2}));
  EXPECT_TRUE(Object::set({1, 2}) == Object::frozenset({2, 1}));
  EXPECT_TRUE(Object::bytes("a") == Object::bytearray("a"));
  EXPECT_FALSE(Object::bytes("a") == Object("a"));
  EXPECT_TRUE(Object::dict({{1, "a"}, {2, "b"}}) ==
              Object::dict({{2, "b"}, {1.0, "a"}}));
  EXPECT_FALSE(Object::dict({{1, "a"}}) == Object::dict({{1, "b"}}));
  EXPECT_TRUE(Object() == Object(nullptr));
  EXPECT_FALSE(Object() == Object(0));
}

TEST(ObjectTest, Unhashable) {
  EXPECT_THROW(Object::list().hash(), TypeError);
  EXPECT_THROW(Object::dict().hash(), TypeError);
  EXPECT_THROW(Object::set().hash(), TypeError);
  EXPECT_THROW(Object::bytearray("").hash(), TypeError);
  EXPECT_THROW(Object::tuple({Object::list()}).hash(), TypeError);
  EXPECT_THROW(Object::dict({{Object::list(), 1}}), TypeError);
  EXPECT_THROW(Object::set({Object::set()}), TypeError);
}

TEST(ObjectTest, DictKeepsInsertionOrderAndPythonKeySemantics) {
  Object d = Object::dict({{"z", 1}, {"a", 2}});
  d.set_item("m", 3);
  d.set_item("z", 4);  // replaces in place
  EXPECT_EQ(repr(d), "{'z': 4, 'a': 2, 'm': 3}");
  d.set_item(1, "int");
  d.set_item(1.0, "float");  // same key as 1: keeps the first key object
  EXPECT_EQ(repr(d), "{'z': 4, 'a': 2, 'm': 3, 1: 'float'}");
  EXPECT_EQ(d[true], Object("float"));
  EXPECT_EQ(d.size(), 4u);
  EXPECT_TRUE(d.contains("a"));
  EXPECT_EQ(d.get("nope"), nullptr);
  EXPECT_THROW(d["nope"], KeyError);
  EXPECT_TRUE(d.erase("a"));
  EXPECT_FALSE(d.erase("a"));
  EXPECT_EQ(repr(d), "{'z': 4, 'm': 3, 1: 'float'}");
  EXPECT_EQ(d["m"], Object(3));
}

TEST(ObjectTest, ListAndSetOperations) {
  Object l = Object::list({1, 2, 3});
  EXPECT_EQ(l[-1], Object(3));
  EXPECT_EQ(l[0], Object(1));
  EXPECT_THROW(l[3], IndexError);
  EXPECT_THROW(l["x"], TypeError);
  l.append("x");
  l.set_item(0, 10);
  EXPECT_EQ(repr(l), "[10, 2, 3, 'x']");
  EXPECT_TRUE(l.contains("x"));
  l.mutable_items().pop_back();
  EXPECT_EQ(l.size(), 3u);
  Object s = Object::set({1});
  s.add(2);
  s.add(1.0);
  EXPECT_EQ(repr(s), "{1, 2}");
  EXPECT_TRUE(s.contains(2.0));
  EXPECT_TRUE(s.erase(1));
  EXPECT_EQ(repr(s), "{2}");
  EXPECT_THROW(Object::tuple().append(1), TypeError);
  EXPECT_THROW(Object::frozenset().add(1), TypeError);
  EXPECT_EQ(Object("h\xc3\xa9").size(), 2u);
  EXPECT_TRUE(Object("hello").contains("ell"));
  EXPECT_TRUE(Object::bytes("abc").contains(98));
}

TEST(ObjectTest, CopiesAreIndependent) {
  Object a = Object::list({1, Object::dict({{"k", 1}})});
  Object b = a;
  b.append(2);
  EXPECT_EQ(repr(a), "[1, {'k': 1}]");
  EXPECT_EQ(repr(b), "[1, {'k': 1}, 2]");
  Object d = a[1];
  d.set_item("k", 2);
  EXPECT_EQ(repr(a), "[1, {'k': 1}]");
  EXPECT_EQ(repr(d), "{'k': 2}");
}

TEST(ObjectTest, Accessors) {
  EXPECT_EQ(Object(7).as_int(), 7);
  EXPECT_EQ(Object(true).as_int(), 1);
  EXPECT_THROW(Object("7").as_int(), TypeError);
  EXPECT_THROW(Object(absl::uint128(1) << 64).as_int(), OverflowError);
  EXPECT_EQ(Object(absl::uint128(1) << 64).as_uint128(), absl::uint128(1)
                                                             << 64);
  EXPECT_THROW(Object(-1).as_uint128(), OverflowError);
  EXPECT_THROW(Object(~absl::uint128(0)).as_int128(), OverflowError);
  EXPECT_EQ(Object(3).as_float(), 3.0);
  EXPECT_EQ(Object(2.5).as_float(), 2.5);
  EXPECT_THROW(Object(2.5).as_int(), TypeError);
  EXPECT_EQ(Object::bytearray("x").as_bytes(), "x");
  EXPECT_THROW(Object("x").as_bytes(), TypeError);
  EXPECT_EQ(Object::from_sign_magnitude(true, 0), Object(0));
  EXPECT_FALSE(Object::from_sign_magnitude(true, 0).int_negative());
  EXPECT_TRUE(Object::list({0}).truth());
  EXPECT_FALSE(Object::list().truth());
  EXPECT_FALSE(Object(0.0).truth());
  EXPECT_FALSE(Object().truth());
  EXPECT_STREQ(Object::frozenset().type_name(), "frozenset");
  EXPECT_STREQ(Object().type_name(), "NoneType");
}

TEST(ObjectTest, SharedContentsMayBeReadFromManyThreads) {
  // Copies share their contents; hashing (which caches) and reading them
  // concurrently is safe.
  Object shared = Object::tuple(
      {"a string", Object::frozenset({1, 2}), Object::tuple({3.5, "x"})});
  Object dict = Object::dict({{shared, 1}});
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Object mine = shared;
      Object other = dict;
      for (int i = 0; i < 200; ++i) {
        if (mine.hash() != shared.hash() || other[mine] != Object(1))
          ++mismatches;
        if (repr(mine).empty()) ++mismatches;
        other.set_item(t, i);  // copy-on-write: the shared dict is not touched
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(dict.size(), 1u);
}

}  // namespace
}  // namespace multiprocessing::reduction
