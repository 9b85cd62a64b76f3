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

TEST(ObjectTest, BuiltinTypeObjects) {
  Object f = Object::builtin_type("float");
  EXPECT_TRUE(f.is_type());
  EXPECT_EQ(f.type(), Object::Type::kType);
  EXPECT_STREQ(f.type_name(), "type");
  EXPECT_STREQ(f.type_object_name(), "float");
  EXPECT_EQ(repr(f), "<class 'float'>");
  EXPECT_EQ(str(f), "<class 'float'>");
  EXPECT_TRUE(f == Object::builtin_type("float"));
  EXPECT_FALSE(f == Object::builtin_type("int"));
  EXPECT_FALSE(Object::builtin_type("int") == Object::builtin_type("bool"));
  EXPECT_FALSE(f == Object("float"));
  EXPECT_FALSE(f == Object());
  EXPECT_EQ(f.hash(), Object::builtin_type("float").hash());
  EXPECT_NE(f.hash(), Object::builtin_type("int").hash());
  EXPECT_TRUE(f.truth());
  EXPECT_THROW(f.size(), TypeError);
  EXPECT_THROW(Object(1).type_object_name(), TypeError);
  for (const char* name : {"int", "float", "str", "bytes", "bytearray", "bool",
                           "list", "tuple", "dict", "set", "frozenset",
                           "complex", "object", "type", "range", "slice"}) {
    EXPECT_EQ(repr(Object::builtin_type(name)),
              std::string("<class '") + name + "'>");
  }
  EXPECT_THROW(Object::builtin_type("NoneType"), ValueError);
  EXPECT_THROW(Object::builtin_type("eval"), ValueError);
  EXPECT_THROW(Object::builtin_type(""), ValueError);
  // Usable as dict keys and set elements.
  Object d = Object::dict(
      {{Object::builtin_type("int"), 1}, {Object::builtin_type("str"), 2}});
  EXPECT_EQ(d[Object::builtin_type("str")], Object(2));
  EXPECT_EQ(repr(d), "{<class 'int'>: 1, <class 'str'>: 2}");
}

TEST(ObjectTest, Range) {
  EXPECT_EQ(repr(Object::range(10)), "range(0, 10)");
  EXPECT_EQ(repr(Object::range(0, 10, 2)), "range(0, 10, 2)");
  EXPECT_EQ(repr(Object::range(10, 0, -3)), "range(10, 0, -3)");
  EXPECT_EQ(repr(Object::range(-5)), "range(0, -5)");
  EXPECT_STREQ(Object::range(3).type_name(), "range");
  EXPECT_THROW(Object::range(0, 1, 0), ValueError);

  EXPECT_EQ(Object::range(10).size(), 10u);
  EXPECT_EQ(Object::range(0, 10, 3).size(), 4u);
  EXPECT_EQ(Object::range(10, 0, -3).size(), 4u);
  EXPECT_EQ(Object::range(5, 5).size(), 0u);
  EXPECT_EQ(Object::range(5, 0).size(), 0u);
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(Range({kMin, kMax, 1}).length(), ~uint64_t{0});
  EXPECT_EQ(Range({kMax, kMin, -1}).length(), ~uint64_t{0});
  EXPECT_EQ(Range({kMin, kMax, kMax}).length(), 3u);
  EXPECT_EQ(Range({kMax, kMin, kMin}).length(), 2u);
  EXPECT_FALSE(Object::range(0).truth());
  EXPECT_TRUE(Object::range(1).truth());

  // == and hash as Python: the same sequence.
  EXPECT_TRUE(Object::range(0) == Object::range(5, 5));
  EXPECT_TRUE(Object::range(0, 3, 2) == Object::range(0, 4, 2));
  EXPECT_TRUE(Object::range(1, 2, 5) == Object::range(1, 2, 7));
  EXPECT_FALSE(Object::range(0, 3) == Object::range(0, 3, 2));
  EXPECT_FALSE(Object::range(3) == Object::list({0, 1, 2}));
  EXPECT_EQ(Object::range(0).hash(), Object::range(5, 5).hash());
  EXPECT_EQ(Object::range(0, 3, 2).hash(), Object::range(0, 4, 2).hash());
  EXPECT_EQ(Object::range(1, 2, 5).hash(), Object::range(1, 2, 7).hash());
  EXPECT_NE(Object::range(0, 3).hash(), Object::range(0, 3, 2).hash());

  // Membership and indexing are computed.
  Object big = Object::range(kMin, kMax, 3);
  EXPECT_TRUE(big.contains(Object(kMin + 3)));
  EXPECT_FALSE(big.contains(Object(kMin + 4)));
  EXPECT_TRUE(Object::range(10, 0, -3).contains(Object(4)));
  EXPECT_FALSE(Object::range(10, 0, -3).contains(Object(0)));
  EXPECT_TRUE(Object::range(3).contains(Object(2.0)));
  EXPECT_TRUE(Object::range(3).contains(Object(true)));
  EXPECT_FALSE(Object::range(3).contains(Object(2.5)));
  EXPECT_FALSE(Object::range(3).contains(Object("1")));
  EXPECT_FALSE(Object::range(3).contains(Object(~absl::uint128(0))));
  Range r = Object::range(10, 0, -3).as_range();
  EXPECT_EQ(r.at(0), 10);
  EXPECT_EQ(r.at(-1), 1);
  EXPECT_EQ(r.at(3), 1);
  EXPECT_THROW(r.at(4), IndexError);
  EXPECT_THROW(r.at(-5), IndexError);
  EXPECT_EQ(big.as_range().at(-1), kMax - 3);
  std::vector<int64_t> seen;
  for (int64_t v : r) seen.push_back(v);
  EXPECT_EQ(seen, (std::vector<int64_t>{10, 7, 4, 1}));
  seen.clear();
  for (int64_t v : Range{kMax - 2, kMax, 1}) seen.push_back(v);
  EXPECT_EQ(seen, (std::vector<int64_t>{kMax - 2, kMax - 1}));
  EXPECT_THROW(Object(1).as_range(), TypeError);

  // list(range) is refused for absurd sizes.
  EXPECT_EQ(repr(Object::range(1, 7, 2).to_list()), "[1, 3, 5]");
  EXPECT_THROW(big.to_list(), MemoryError);
  EXPECT_THROW(Object::range(11).to_list(10), MemoryError);
  EXPECT_EQ(Object::range(10).to_list(10).size(), 10u);
  EXPECT_EQ(repr(Object::tuple({1, 2}).to_list()), "[1, 2]");
  EXPECT_EQ(repr(Object::dict({{"a", 1}}).to_list()), "['a']");
}

TEST(ObjectTest, Slice) {
  Object s = Object::slice(1, 3);
  EXPECT_TRUE(s.is_slice());
  EXPECT_STREQ(s.type_name(), "slice");
  EXPECT_EQ(repr(s), "slice(1, 3, None)");
  EXPECT_EQ(repr(Object::slice(nullptr, -1, -2)), "slice(None, -1, -2)");
  EXPECT_EQ(s.slice_start(), Object(1));
  EXPECT_TRUE(s.slice_step().is_none());
  EXPECT_TRUE(s == Object::slice(1, 3, nullptr));
  EXPECT_FALSE(s == Object::slice(1, 3, 1));
  EXPECT_FALSE(s == Object::tuple({1, 3, nullptr}));
  EXPECT_THROW(s.hash(), TypeError);  // unhashable in CPython 3.11
  EXPECT_THROW(Object::slice("a", 1), TypeError);
  EXPECT_THROW(Object::slice(1.5, 1), TypeError);
  EXPECT_THROW(Object(1).slice_start(), TypeError);
  EXPECT_TRUE(s.truth());
  EXPECT_THROW(s.size(), TypeError);

  // slice.indices(), as CPython computes it.
  auto indices = [](Object sl, size_t n) {
    Slice::Indices i = sl.as_slice().indices(n);
    return std::vector<int64_t>{i.start, i.stop, i.step,
                                static_cast<int64_t>(i.count)};
  };
  EXPECT_EQ(indices(Object::slice(1, 3), 5),
            (std::vector<int64_t>{1, 3, 1, 2}));
  EXPECT_EQ(indices(Object::slice(nullptr, nullptr, -1), 5),
            (std::vector<int64_t>{4, -1, -1, 5}));
  EXPECT_EQ(indices(Object::slice(-2, nullptr), 5),
            (std::vector<int64_t>{3, 5, 1, 2}));
  EXPECT_EQ(indices(Object::slice(-100, 100, 2), 5),
            (std::vector<int64_t>{0, 5, 2, 3}));
  EXPECT_EQ(indices(Object::slice(100, -100, -2), 5),
            (std::vector<int64_t>{4, -1, -2, 3}));
  EXPECT_EQ(indices(Object::slice(3, 1), 5),
            (std::vector<int64_t>{3, 1, 1, 0}));
  EXPECT_EQ(indices(Object::slice(1, 3), 0),
            (std::vector<int64_t>{0, 0, 1, 0}));
  // Members beyond 64 bits clamp, which keeps indices() as Python's.
  Object huge = Object::slice(nullptr, Object(absl::uint128(1) << 70),
                              Object::from_sign_magnitude(true, 1));
  EXPECT_EQ(indices(huge, 5), (std::vector<int64_t>{4, 4, -1, 0}));
  Object huge_step =
      Object::slice(nullptr, nullptr,
                    Object::from_sign_magnitude(true, absl::uint128(1) << 100));
  EXPECT_EQ(indices(huge_step, 5),
            (std::vector<int64_t>{4, -1, -9223372036854775807, 1}));
  EXPECT_THROW(Object::slice(1, 2, 0).as_slice().indices(5), ValueError);
}

}  // namespace
}  // namespace multiprocessing::reduction
