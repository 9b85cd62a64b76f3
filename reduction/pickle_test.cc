#include "reduction/pickle.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <list>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace user {
struct Point {
  double x = 0;
  double y = 0;
  friend bool operator==(const Point&, const Point&) = default;
};
MP_PICKLE_FIELDS(Point, x, y)

struct Record {
  std::string name;
  std::vector<int> values;
  std::optional<Point> where;
  friend bool operator==(const Record&, const Record&) = default;
};
MP_PICKLE_FIELDS(Record, name, values, where)

// A type that carries a file descriptor out of band.
struct FdHolder {
  int fd = -1;
};
struct Unpicklable {};
}  // namespace user

namespace multiprocessing::reduction {

template <>
struct Pickler<user::FdHolder> {
  static void Save(Writer& w, const user::FdHolder& v) {
    w.save(static_cast<int64_t>(w.add_fd(v.fd)));
  }
  static user::FdHolder Load(Reader& r) {
    return {r.dup_fd(r.read_int<size_t>())};
  }
};

namespace {

static_assert(
    Picklable<std::vector<std::map<std::string, std::tuple<int, double>>>>);
static_assert(Picklable<user::Point>);
static_assert(Picklable<Object>);
static_assert(!Picklable<user::Unpicklable>);
static_assert(!Picklable<std::vector<user::Unpicklable>> ||
              true);  // fails only when used

std::string Hex(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

template <class T>
T RoundTrip(const T& v, int protocol = kDefaultProtocol) {
  return loads<T>(dumps(v, nullptr, protocol));
}

template <class T>
void ExpectRoundTrip(const T& v) {
  for (int protocol = 2; protocol <= kHighestProtocol; ++protocol) {
    EXPECT_TRUE(RoundTrip(v, protocol) == v)
        << "protocol " << protocol << ": " << repr(v);
  }
}

TEST(PickleTest, BytesMatchCPython) {
  // pickle.dumps(v) for small values is unframed, as CPython writes it.
  EXPECT_EQ(Hex(dumps(5)), "80044b052e");
  EXPECT_EQ(Hex(dumps(nullptr)), "80044e2e");
  EXPECT_EQ(Hex(dumps(true, nullptr, 2)), "8002882e");
  EXPECT_EQ(Hex(dumps(-1, nullptr, 2)), "80024affffffff2e");
  EXPECT_EQ(Hex(dumps(int64_t{1} << 40, nullptr, 2)),
            "80028a060000000000012e");  // LONG1
  EXPECT_EQ(Hex(dumps(1.5, nullptr, 3)), "8003473ff80000000000002e");
  EXPECT_EQ(Hex(dumps(std::string("ab"), nullptr, 3)),
            "800358020000006162"
            "2e");
}

TEST(PickleTest, TopLevelStrings) {
  // The forms CPython writes: pickle.dumps('ab'), pickle.dumps('0' * 256),
  // pickle.dumps('ab', 2).
  std::string short4(
      "\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00\x8c\x02"
      "ab\x94.",
      17);
  EXPECT_EQ(loads<std::string>(short4), "ab");
  EXPECT_EQ(Hex(dumps(std::string("ab"))),
            "80049505000000000000008c026162"
            "2e");
  std::string long4 =
      std::string(
          "\x80\x04\x95\x07\x01\x00\x00\x00\x00\x00\x00X\x00\x01\x00\x00", 16) +
      std::string(256, '0') + "\x94.";
  EXPECT_EQ(loads<std::string>(long4), std::string(256, '0'));
  std::string v2(
      "\x80\x02X\x02\x00\x00\x00"
      "abq\x00.",
      12);
  EXPECT_EQ(loads<std::string>(v2), "ab");
  EXPECT_EQ(loads<std::string>(dumps(std::string())), "");
  EXPECT_EQ(Hex(dumps(std::string())), "80048c002e");  // too small to frame
  for (int protocol = 2; protocol <= kHighestProtocol; ++protocol) {
    for (size_t n : {0, 1, 2, 255, 256, 70000}) {
      std::string text(n, 'y');
      EXPECT_EQ(loads<std::string>(dumps(text, nullptr, protocol)), text);
      EXPECT_EQ(loads<Object>(dumps(text, nullptr, protocol)), Object(text));
    }
  }
  // Malformed variants still fail cleanly.
  EXPECT_THROW(loads<std::string>(short4.substr(0, 15)), UnpicklingError);
  std::string bad = short4;
  bad[13] = '\xff';
  EXPECT_THROW(loads<std::string>(bad), UnpicklingError);
  EXPECT_THROW(dumps(std::string("\xff")), PicklingError);
}

// pickle.dumps(text) as CPython 3.11 writes it, framed even when short.
std::string CPythonStrPickle(const std::string& text) {
  std::string body;
  size_t n = text.size();
  if (n < 256) {
    body = std::string("\x8c", 1) + static_cast<char>(n);
  } else {
    auto n32 = static_cast<uint32_t>(n);
    body = "X" + std::string(reinterpret_cast<const char*>(&n32), 4);
  }
  body += text + "\x94.";
  uint64_t size = body.size();
  return "\x80\x04\x95" + std::string(reinterpret_cast<const char*>(&size), 8) +
         body;
}

// CopyAscii of `text` into a buffer with guard bytes around it: the copy, the
// answer, and nothing written outside.
bool CopyAsciiChecked(const std::string& text) {
  std::string buf(text.size() + 64, '#');
  bool ascii = internal::CopyAscii(buf.data() + 32, text.data(), text.size());
  EXPECT_EQ(buf.substr(32, text.size()), text);
  EXPECT_EQ(buf.substr(0, 32), std::string(32, '#'));
  EXPECT_EQ(buf.substr(32 + text.size()), std::string(32, '#'));
  return ascii;
}

// What dumps() of a str alone writes: CPython's form without the MEMOIZE.
std::string StrPickle(const std::string& text) {
  if (text.empty()) return std::string("\x80\x04\x8c\x00.", 5);  // unframed
  std::string p = CPythonStrPickle(text);
  p.erase(p.size() - 2, 1);  // the MEMOIZE
  uint64_t frame = p.size() - 11;
  std::memcpy(p.data() + 3, &frame, 8);
  return p;
}

void CheckStrsUpTo(size_t max) {
  for (size_t n = 0; n <= max; ++n) {
    std::string text(n, 'a');
    ASSERT_TRUE(internal::IsAsciiInline(text)) << n;
    ASSERT_TRUE(CopyAsciiChecked(text)) << n;
    ASSERT_EQ(loads<std::string>(CPythonStrPickle(text)), text);
    ASSERT_EQ(dumps(text), StrPickle(text)) << n;
    std::string reused = "old contents";
    dumps_into(&reused, text);
    ASSERT_EQ(reused, StrPickle(text)) << n;
    for (size_t i = 0; i < n; ++i) {
      text[i] = '\x80';
      ASSERT_FALSE(internal::IsAsciiInline(text)) << n << " " << i;
      ASSERT_FALSE(internal::IsAscii(text)) << n << " " << i;
      ASSERT_FALSE(CopyAsciiChecked(text)) << n << " " << i;
      ASSERT_FALSE(internal::IsPickleUtf8(text)) << n << " " << i;
      ASSERT_THROW(dumps(text), PicklingError) << n << " " << i;
      ASSERT_THROW(dumps_into(&reused, text), PicklingError) << n << " " << i;
      if (i + 1 < n) {
        text[i] = '\xc3';  // U+00E9
        text[i + 1] = '\xa9';
        ASSERT_TRUE(internal::IsPickleUtf8(text)) << n << " " << i;
        ASSERT_EQ(loads<std::string>(CPythonStrPickle(text)), text);
        ASSERT_EQ(dumps(text), StrPickle(text)) << n << " " << i;
        dumps_into(&reused, text);
        ASSERT_EQ(reused, StrPickle(text)) << n << " " << i;
        text[i + 1] = 'a';
        ASSERT_THROW(loads<std::string>(CPythonStrPickle(text)),
                     UnpicklingError)
            << n << " " << i;
      }
      text[i] = 'a';
    }
  }
}

TEST(PickleTest, StrChecksAtEverySizeAndPosition) {
  // The UTF-8 check looks at words or vectors of several widths, overlapping
  // at the end: every length up to past the inline limit, with one non-ASCII
  // byte at every position, a valid two-byte sequence, and a truncated one;
  // with and without AVX2 where the CPU has it.
  CheckStrsUpTo(600);
#if defined(__x86_64__)
  const bool has_avx2 = internal::cpu_has_avx2;
  internal::cpu_has_avx2 = false;
  CheckStrsUpTo(600);
  internal::cpu_has_avx2 = has_avx2;
#endif
}

TEST(PickleTest, StrFastPathMatchesCPythonOnNearMisses) {
  // loads<std::string> recognises CPython's form of a str alone in a few
  // compares. With one byte of it changed (the first 20 bytes, MEMOIZE, STOP;
  // +1, -1, +0x80), it must give what CPython 3.11's pickle.loads gives, in
  // order: '.' the original text, 'x' an error, '1' the text one shorter
  // (a shortened length leaves a 'q', BINPUT, after it), '!' the text 256
  // shorter, 'r' the changed text.
  struct Case {
    size_t n;
    const char* outcomes;
  };
  for (const Case& c : {
           Case{5,
                "xxx..xxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxx1xrrxrrxrrxrrxrrxxxxxxxxx"
                "xxxx"},
           Case{300,
                "xxx..xxxxx.xx.xxxxxxxxxxxxxxxxxxxxxxx1xx!xxxxxxxrrxrrxrrxrrxx"
                "xxxxx"},
       }) {
    std::string text(c.n, 'q');
    std::string good = CPythonStrPickle(text);
    size_t start = good.size() - c.n - 2;
    std::vector<size_t> positions;
    for (size_t at = 0; at < 20; ++at) positions.push_back(at);
    positions.push_back(good.size() - 2);  // MEMOIZE
    positions.push_back(good.size() - 1);  // STOP
    ASSERT_EQ(std::strlen(c.outcomes), positions.size() * 3);
    const char* outcome = c.outcomes;
    for (size_t at : positions) {
      for (int delta : {1, -1, 0x80}) {
        std::string bad = good;
        bad[at] = static_cast<char>(bad[at] + delta);
        std::optional<std::string> expected;
        switch (*outcome++) {
          case '.':
            expected = text;
            break;
          case '1':
            expected = text.substr(1);
            break;
          case '!':
            expected = text.substr(256);
            break;
          case 'r':
            expected = bad.substr(start, c.n);
            break;
          default:
            break;
        }
        std::optional<std::string> got;
        try {
          got = loads<std::string>(bad);
        } catch (const Exception&) {
        }
        EXPECT_EQ(got, expected) << c.n << " " << at << " " << delta;
      }
    }
  }
}

TEST(PickleTest, StrsAroundTheStackLimit) {
  // dumps() builds a str of up to 2048 bytes on the stack, longer ones in the
  // string it returns: both sides of that, ASCII, UTF-8 and not UTF-8.
  for (size_t n : {2046, 2047, 2048, 2049, 2050, 5000, 70000}) {
    std::string text(n, 'z');
    EXPECT_EQ(dumps(text), StrPickle(text)) << n;
    text[n / 2] = '\xc3';
    text[n / 2 + 1] = '\xa9';
    EXPECT_EQ(dumps(text), StrPickle(text)) << n;
    EXPECT_EQ(loads<std::string>(dumps(text)), text) << n;
    text[n / 2 + 1] = 'z';
    EXPECT_THROW(dumps(text), PicklingError) << n;
  }
}

TEST(PickleTest, Scalars) {
  ExpectRoundTrip(true);
  ExpectRoundTrip(false);
  ExpectRoundTrip(std::numeric_limits<int8_t>::min());
  ExpectRoundTrip(std::numeric_limits<uint8_t>::max());
  ExpectRoundTrip(std::numeric_limits<int16_t>::min());
  ExpectRoundTrip(std::numeric_limits<int32_t>::min());
  ExpectRoundTrip(std::numeric_limits<int64_t>::min());
  ExpectRoundTrip(std::numeric_limits<int64_t>::max());
  ExpectRoundTrip(std::numeric_limits<uint64_t>::max());
  ExpectRoundTrip(std::numeric_limits<absl::int128>::min());
  ExpectRoundTrip(std::numeric_limits<absl::int128>::max());
  ExpectRoundTrip(std::numeric_limits<absl::uint128>::max());
  ExpectRoundTrip(0.1);
  ExpectRoundTrip(-0.0f);
  ExpectRoundTrip(std::numeric_limits<double>::infinity());
  ExpectRoundTrip(std::string("h\xc3\xa9llo"));
  ExpectRoundTrip(std::string(300, 'x'));
  ExpectRoundTrip(Bytes{std::string("\x00\xff", 2)});
  ExpectRoundTrip(ByteArray{"xyz"});
  ExpectRoundTrip(std::vector<std::byte>{std::byte{0}, std::byte{255}});
  EXPECT_TRUE(std::isnan(RoundTrip(std::nan(""))));
  EXPECT_EQ(loads<std::string>(dumps(std::string_view("view"))), "view");
  EXPECT_EQ(loads<std::string>(dumps("literal")), "literal");
  const char* c_string = "pointer";
  EXPECT_EQ(loads<std::string>(dumps(c_string)), "pointer");
  EXPECT_EQ(loads<double>(dumps(3)),
            3.0);  // an int where a float is expected, as Python's float()
  loads<std::nullptr_t>(dumps(nullptr));
  loads<std::monostate>(dumps(std::monostate{}));
}

TEST(PickleTest, IntListsOfEveryWidthInEveryOrder) {
  // Integer lists are written into room reserved for the short forms (BININT1,
  // BININT2, BININT), the long ones (LONG1) asking for more on the way: every
  // sequence of up to four widths, then long runs, each one exactly.
  const std::vector<int64_t> widths = {7,
                                       300,
                                       70000,
                                       -5,
                                       int64_t{1} << 40,
                                       -(int64_t{1} << 40),
                                       std::numeric_limits<int64_t>::min()};
  std::vector<int64_t> v;
  std::function<void(size_t)> all = [&](size_t depth) {
    ExpectRoundTrip(v);
    if (depth == 4) return;
    for (int64_t w : widths) {
      v.push_back(w);
      all(depth + 1);
      v.pop_back();
    }
  };
  all(0);
  // Each int in its shortest form, also within runs of four: the items as
  // CPython's pickle.dumps(v, protocol=4) writes them (the list around them is
  // MARK ... LIST here, EMPTY_LIST MEMOIZE MARK ... APPENDS there).
  EXPECT_THAT(Hex(dumps(std::vector<int64_t>{7, 300, 7, 300, 1, 2, 3, 4, 70000,
                                             5, 6, 7, 8})),
              testing::HasSubstr("284b074d2c014b074d2c014b014b024b034b044a70"
                                 "1101004b054b064b074b086c2e"));
  for (int64_t w : widths) {
    std::vector<int64_t> run(5000, w);
    run.push_back(1);
    ExpectRoundTrip(run);
    run.insert(run.begin(), 3000, 1);
    ExpectRoundTrip(run);
  }
}

TEST(PickleTest, Containers) {
  ExpectRoundTrip(std::vector<int>{1, -2, 300, 70000, -70000});
  ExpectRoundTrip(std::vector<int64_t>{std::numeric_limits<int64_t>::min(), 0,
                                       std::numeric_limits<int64_t>::max()});
  ExpectRoundTrip(
      std::vector<uint64_t>{0, std::numeric_limits<uint64_t>::max()});
  ExpectRoundTrip(std::vector<uint8_t>{0, 255});
  ExpectRoundTrip(std::vector<bool>{true, false});
  ExpectRoundTrip(std::vector<std::string>{"a", "", "c"});
  ExpectRoundTrip(std::deque<double>{1.5, 2.5});
  ExpectRoundTrip(std::list<std::string>{"x", "y"});
  ExpectRoundTrip(std::array<int, 3>{1, 2, 3});
  ExpectRoundTrip(std::set<std::string>{"b", "a"});
  ExpectRoundTrip(std::unordered_set<int>{1, 2, 3});
  ExpectRoundTrip(
      std::map<std::string, std::vector<int>>{{"a", {1}}, {"b", {}}});
  ExpectRoundTrip(std::unordered_map<int, std::string>{{1, "one"}, {2, "two"}});
  ExpectRoundTrip(std::make_pair(std::string("k"), 2.5));
  ExpectRoundTrip(
      std::make_tuple(1, std::string("two"), 3.0, std::vector<int>{4}));
  ExpectRoundTrip(std::tuple<>{});
  ExpectRoundTrip(std::vector<std::vector<int>>{{}, {1, 2}, {}, {3}});
  ExpectRoundTrip(std::vector<std::optional<int>>{1, std::nullopt, 3});
  ExpectRoundTrip(std::vector<std::variant<int, std::string>>{1, "a"});
  std::vector<int> big(5000);
  for (int i = 0; i < 5000; ++i) big[static_cast<size_t>(i)] = i * 37 - 90000;
  ExpectRoundTrip(big);
}

TEST(PickleTest, ReprOfTypedValues) {
  EXPECT_EQ(repr(std::vector<int>{1, 4, 9}), "[1, 4, 9]");
  EXPECT_EQ(repr(std::make_pair(3.515625, 39.0625)), "(3.515625, 39.0625)");
  std::vector<std::optional<std::variant<int, std::string>>> v{
      42, std::nullopt, std::string("hello")};
  EXPECT_EQ(repr(v), "[42, None, 'hello']");
  EXPECT_EQ(repr(std::map<std::string, int>{{"a", 1}}), "{'a': 1}");
  EXPECT_EQ(repr(std::set<int>{2, 1}), "{1, 2}");
  EXPECT_EQ(repr(std::chrono::milliseconds(1500)), "1.5");
  EXPECT_EQ(repr(Bytes{"b"}), "b'b'");
  EXPECT_EQ(repr(std::make_tuple(1)), "(1,)");
  EXPECT_EQ(repr("str"), "'str'");
  EXPECT_EQ(repr(user::Point{1.5, 2}), "(1.5, 2.0)");
  EXPECT_EQ(repr(user::Record{"r", {1, 2}, user::Point{0, 1}}),
            "('r', [1, 2], (0.0, 1.0))");
  EXPECT_EQ(repr(user::Record{"r", {}, std::nullopt}), "('r', [], None)");
}

TEST(PickleTest, UserStructs) {
  ExpectRoundTrip(user::Point{1, 2});
  ExpectRoundTrip(user::Record{"name", {1, 2, 3}, user::Point{3, 4}});
  ExpectRoundTrip(std::vector<user::Record>{{"a", {}, std::nullopt},
                                            {"b", {5}, user::Point{}}});
  // Python sees a tuple: a tuple from Python decodes into the struct.
  EXPECT_EQ(loads<user::Point>(dumps(Object::tuple({1, 2.5}))),
            (user::Point{1, 2.5}));
  EXPECT_THROW(loads<user::Point>(dumps(Object::tuple({1, 2, 3}))), TypeError);
}

TEST(PickleTest, Durations) {
  EXPECT_EQ(RoundTrip(std::chrono::milliseconds(1500)),
            std::chrono::milliseconds(1500));
  EXPECT_EQ(RoundTrip(std::chrono::nanoseconds(123456789)),
            std::chrono::nanoseconds(123456789));
  EXPECT_EQ(loads<std::chrono::seconds>(dumps(2.4)), std::chrono::seconds(2));
  EXPECT_EQ(loads<std::chrono::duration<double>>(dumps(0.25)).count(), 0.25);
  EXPECT_THROW(loads<std::chrono::nanoseconds>(dumps(1e300)), OverflowError);
  EXPECT_THROW(loads<std::chrono::seconds>(dumps(std::nan(""))), OverflowError);
  EXPECT_THROW(loads<std::chrono::duration<int8_t>>(dumps(200)), OverflowError);
}

TEST(PickleTest, Objects) {
  Object v = Object::dict({{"a", Object::list({1, 2.5, "x"})},
                           {Object::tuple({1, 2}), Object::set({3})}});
  for (int protocol = 2; protocol <= kHighestProtocol; ++protocol) {
    EXPECT_EQ(loads<Object>(dumps(v, nullptr, protocol)), v);
    EXPECT_EQ(repr(loads<Object>(dumps(v, nullptr, protocol))), repr(v));
  }
  // Objects inside typed containers.
  std::map<std::string, Object> m{{"x", Object::list({1, "a"})},
                                  {"y", Object()}};
  auto back = RoundTrip(m);
  EXPECT_EQ(repr(back["x"]), "[1, 'a']");
  EXPECT_TRUE(back["y"].is_none());
  EXPECT_EQ(loads<std::vector<int>>(dumps(Object::list({1, 2}))),
            (std::vector<int>{1, 2}));
}

TEST(PickleTest, SharedSubObjectsDecodeIntoTypedValues) {
  Object inner = Object::list({1, 2});
  Object s("shared string");
  Object outer = Object::list({inner, inner, Object::list({inner})});
  std::string data = dumps(outer);
  EXPECT_NE(data.find('h'), std::string::npos);  // a memo reference
  EXPECT_EQ(repr(loads<Object>(data)), "[[1, 2], [1, 2], [[1, 2]]]");
  auto typed = loads<std::vector<Object>>(data);
  EXPECT_EQ(repr(typed[1]), "[1, 2]");
  auto strings =
      loads<std::vector<std::string>>(dumps(Object::list({s, s, s})));
  EXPECT_EQ(strings, (std::vector<std::string>{"shared string", "shared string",
                                               "shared string"}));
}

TEST(PickleTest, ExpansionOfSharedSubObjectsIsBounded) {
  // 40 levels of [x, x]: tiny as a pickle, 2**40 values as a tree.
  Object x = Object::list({1});
  for (int i = 0; i < 40; ++i) x = Object::list({x, x});
  std::string data = dumps(x);
  EXPECT_LT(data.size(), 1000u);
  EXPECT_EQ(loads<Object>(data).size(), 2u);  // shared, so cheap
  try {
    loads<std::vector<Object>>(data);
    ADD_FAILURE() << "expanded";
  } catch (const UnpicklingError& e) {
    EXPECT_NE(std::string(e.what()).find("too many values"), std::string::npos)
        << e.what();
  }
}

TEST(PickleTest, ShapeMismatches) {
  EXPECT_THROW(loads<int>(dumps("x")), TypeError);
  EXPECT_THROW(loads<std::string>(dumps(1)), TypeError);
  EXPECT_THROW(loads<bool>(dumps(1)), TypeError);
  EXPECT_THROW(loads<int>(dumps(true)), TypeError);
  EXPECT_THROW(loads<uint8_t>(dumps(300)), OverflowError);
  EXPECT_THROW(loads<uint32_t>(dumps(-1)), OverflowError);
  EXPECT_THROW(loads<std::vector<uint8_t>>(dumps(std::vector<int>{1, 256})),
               OverflowError);
  EXPECT_THROW(loads<int64_t>(dumps(absl::uint128(1) << 64)), OverflowError);
  EXPECT_THROW((loads<std::pair<int, int>>(dumps(std::make_tuple(1, 2, 3)))),
               TypeError);
  EXPECT_THROW((loads<std::array<int, 2>>(dumps(std::vector<int>{1, 2, 3}))),
               TypeError);
  EXPECT_THROW(loads<std::vector<int>>(dumps(std::vector<std::string>{"a"})),
               TypeError);
  EXPECT_THROW((loads<std::map<int, int>>(dumps(std::vector<int>{}))),
               TypeError);
  EXPECT_THROW((loads<std::variant<int, std::string>>(dumps(1.5))), TypeError);
  try {
    loads<std::vector<int>>(dumps(std::vector<std::string>{"a"}));
  } catch (const TypeError& e) {
    EXPECT_NE(std::string(e.what()).find("expected int, got str"),
              std::string::npos)
        << e.what();
  }
}

TEST(PickleTest, VariantTriesAlternativesInOrder) {
  using V = std::variant<int64_t, std::string, std::vector<int>, double>;
  EXPECT_EQ(std::get<int64_t>(loads<V>(dumps(7))), 7);
  EXPECT_EQ(std::get<std::string>(loads<V>(dumps("s"))), "s");
  EXPECT_EQ(std::get<std::vector<int>>(loads<V>(dumps(std::vector<int>{1}))),
            std::vector<int>{1});
  EXPECT_EQ(std::get<double>(loads<V>(dumps(0.5))), 0.5);
}

TEST(PickleTest, EncodingErrors) {
  EXPECT_THROW(dumps(std::string("\xff")), PicklingError);
  EXPECT_THROW(dumps(1, nullptr, 1), ValueError);
  EXPECT_THROW(dumps(1, nullptr, 6), ValueError);
  Object deep = Object::list();
  for (int i = 0; i < 1200; ++i) deep = Object::list({deep});
  EXPECT_THROW(dumps(deep), PicklingError);
}

TEST(PickleTest, FileDescriptorsTravelOutOfBand) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_THROW(dumps(user::FdHolder{fds[1]}), PicklingError);
  int received = -1;
  {
    OutOfBand oob;
    std::string data = dumps(std::vector<user::FdHolder>{{fds[1]}}, &oob);
    ASSERT_EQ(oob.fds.size(), 1u);
    EXPECT_NE(oob.fds[0], fds[1]);  // a dup
    // The receiving side owns `oob`; the loaded value gets its own dup.
    OutOfBand moved = std::move(oob);
    auto loaded = loads<std::vector<user::FdHolder>>(data, &moved);
    received = loaded[0].fd;
    EXPECT_THROW(loads<std::vector<user::FdHolder>>(data),
                 UnpicklingError);  // no OutOfBand
  }
  // The OutOfBand closed its copy; ours still works.
  ASSERT_EQ(write(received, "x", 1), 1);
  char c;
  ASSERT_EQ(read(fds[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  close(received);
  close(fds[0]);
  close(fds[1]);
  OutOfBand empty;
  EXPECT_THROW(empty.dup_fd(0), UnpicklingError);
  EXPECT_THROW(empty.release(3), UnpicklingError);
}

TEST(PickleTest, DecodesCPythonForms) {
  // pickle.dumps([1]), pickle.dumps(([], (1, 2))), pickle.dumps({1, 2}, 2),
  // pickle.dumps(b'ab', 2), pickle.dumps([bytearray(b'a'), bytearray(b'b')], 4)
  std::string one(
      "\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94K\x01"
      "a.",
      17);
  EXPECT_EQ(loads<std::vector<int>>(one), std::vector<int>{1});
  std::string t(
      "\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]"
      "\x94K\x01K\x02\x86\x94\x86\x94.",
      22);
  auto v = loads<std::tuple<std::vector<int>, std::pair<int, int>>>(t);
  EXPECT_TRUE(std::get<0>(v).empty());
  EXPECT_EQ(std::get<1>(v), std::make_pair(1, 2));
  std::string set2(
      "\x80\x02"
      "c__builtin__\nset\nq\x00]q\x01(K\x01K\x02"
      "e\x85q\x02Rq\x03.",
      37);
  EXPECT_EQ(loads<std::set<int>>(set2), (std::set<int>{1, 2}));
  std::string bytes2(
      "\x80\x02"
      "c_codecs\nencode\nq\x00X\x02\x00\x00\x00"
      "abq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.",
      49);
  EXPECT_EQ(loads<Bytes>(bytes2).data, "ab");
  std::string arrays(
      "\x80\x04\x95"
      "0\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x08"
      "builtins\x94\x8c\tbytearray\x94\x93\x94"
      "C\x01"
      "a\x94\x85\x94R\x94h\x03"
      "C\x01"
      "b\x94\x85\x94R\x94"
      "e.",
      59);
  auto ba = loads<std::vector<ByteArray>>(arrays);
  ASSERT_EQ(ba.size(), 2u);
  EXPECT_EQ(ba[1].data, "b");
}

TEST(PickleTest, BuiltinTypesRangeAndSliceAsCPythonWritesThem) {
  using namespace std::string_literals;  // NOLINT
  // pickle.dumps(float, p), pickle.dumps(range(10), p),
  // pickle.dumps(slice(1, 3), p) from CPython 3.11.
  std::string float4 =
      "\x80\x04\x95\x16\x00\x00\x00\x00\x00\x00\x00\x8c\x08"
      "builtins\x94\x8c\x05"
      "float\x94\x93\x94."s;
  std::string float2 =
      "\x80\x02"
      "c__builtin__\nfloat\nq\x00."s;
  std::string int2 =
      "\x80\x02"
      "c__builtin__\nlong\nq\x00."s;
  std::string range2 =
      "\x80\x02"
      "c__builtin__\nxrange\nq\x00K\x00K\nK\x01\x87q\x01Rq\x02."s;
  std::string range4 =
      "\x80\x04\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\x08"
      "builtins\x94\x8c\x05range\x94\x93\x94K\x00K\nK\x01\x87\x94R\x94."s;
  std::string slice3 =
      "\x80\x03"
      "cbuiltins\nslice\nq\x00K\x01K\x03N\x87q\x01Rq\x02."s;
  EXPECT_EQ(repr(loads<Object>(float4)), "<class 'float'>");
  EXPECT_EQ(repr(loads<Object>(float2)), "<class 'float'>");
  EXPECT_EQ(repr(loads<Object>(int2)), "<class 'int'>");
  EXPECT_EQ(repr(loads<Object>(range2)), "range(0, 10)");
  EXPECT_EQ(repr(loads<Object>(range4)), "range(0, 10)");
  EXPECT_EQ(repr(loads<Object>(slice3)), "slice(1, 3, None)");
  EXPECT_EQ(loads<Range>(range4), (Range{0, 10, 1}));
  EXPECT_EQ(loads<Range>(range2), (Range{0, 10, 1}));
  EXPECT_EQ(loads<Slice>(slice3), (Slice{1, 3, std::nullopt}));
  EXPECT_THROW(loads<Range>(slice3), TypeError);
  EXPECT_THROW(loads<Slice>(float4), TypeError);

  // Encoded as CPython does: STACK_GLOBAL from protocol 4, GLOBAL with Python
  // 2's names before.
  Object f = Object::builtin_type("float");
  EXPECT_EQ(Hex(dumps(f)),
            "8004951300000000000000"
            "8c086275696c74696e738c05666c6f6174932e");
  EXPECT_EQ(dumps(f, nullptr, 2),
            "\x80\x02"
            "c__builtin__\nfloat\n."s);
  EXPECT_EQ(dumps(Object::builtin_type("int"), nullptr, 2),
            "\x80\x02"
            "c__builtin__\nlong\n."s);
  EXPECT_EQ(dumps(Object::builtin_type("str"), nullptr, 3),
            "\x80\x03"
            "cbuiltins\nstr\n."s);
  EXPECT_EQ(dumps(Range{0, 10, 1}, nullptr, 2),
            "\x80\x02"
            "c__builtin__\nxrange\n(K\x00K\nK\x01tR."s);
  EXPECT_THROW(dumps(Range{0, 10, 0}), PicklingError);

  // Round trips, typed and dynamic, in every protocol, without the fallback.
  uint64_t fallbacks = internal::TypedFallbackCount();
  ExpectRoundTrip(Range{-3, 100, 7});
  ExpectRoundTrip(Slice{std::nullopt, -1, -2});
  ExpectRoundTrip(std::vector<Range>{{0, 1, 1}, {5, 0, -1}});
  Object mixed = Object::list(
      {2.25, nullptr, "junk", f, Object::range(0, 10, 2), Object::slice(1, 3),
       Object::builtin_type("bytes"), Object::builtin_type("set"),
       Object::builtin_type("range")});
  for (int protocol = 2; protocol <= kHighestProtocol; ++protocol) {
    std::string data = dumps(mixed, nullptr, protocol);
    EXPECT_TRUE(loads<Object>(data) == mixed) << protocol;
    EXPECT_TRUE(loads<std::vector<Object>>(data) == mixed.items()) << protocol;
  }
  EXPECT_EQ(internal::TypedFallbackCount(), fallbacks);
  EXPECT_EQ(
      repr(mixed),
      "[2.25, None, 'junk', <class 'float'>, range(0, 10, 2), slice(1, 3, "
      "None), <class 'bytes'>, <class 'set'>, <class 'range'>]");
  EXPECT_EQ(repr(Range{0, 10, 2}), "range(0, 10, 2)");
  EXPECT_EQ(repr(Slice{1, 3, std::nullopt}), "slice(1, 3, None)");

  // A type object followed by what looks like a constructor's arguments.
  Object tricky =
      Object::list({Object::builtin_type("set"), Object::list({1}),
                    Object::builtin_type("bytes"), Object::tuple()});
  for (int protocol = 2; protocol <= kHighestProtocol; ++protocol) {
    std::string data = dumps(tricky, nullptr, protocol);
    EXPECT_TRUE(loads<Object>(data) == tricky) << protocol;
    EXPECT_TRUE(loads<std::vector<Object>>(data) == tricky.items()) << protocol;
  }

  // Anything else stays refused.
  EXPECT_THROW(loads<Object>("\x80\x02"
                             "c__builtin__\neval\n."s),
               UnpicklingError);
  EXPECT_THROW(loads<Object>("\x80\x02"
                             "c__builtin__\nfloat\nX\x03\x00\x00\x00"
                             "1.5\x85R."s),
               UnpicklingError);
}

TEST(PickleTest, SeveralTypeObjectsAsCPythonWritesThem) {
  // From its second global on, CPython refers back to the memoized 'builtins'
  // (BINGET) instead of writing it again; the typed Reader follows that
  // directly, without the Object decoder.
  using namespace std::string_literals;  // NOLINT
  // pickle.dumps([float, int, str], protocol=4)
  const std::string types =
      "\x80\x04\x95.\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x08"
      "builtins\x94\x8c\x05"
      "float\x94\x93\x94h\x01\x8c\x03int\x94\x93\x94h\x01\x8c\x03str\x94\x93"
      "\x94"
      "e."s;
  // pickle.dumps([range(3), range(1, 5, 2)], protocol=4)
  const std::string ranges =
      "\x80\x04\x95"
      "0\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x08"
      "builtins\x94\x8c\x05range\x94\x93\x94K\x00K\x03K\x01\x87\x94R\x94h\x03K"
      "\x01K\x05K\x02\x87\x94R\x94"
      "e."s;
  // pickle.dumps([slice(1, 3), slice(None, -1, 2)], protocol=4)
  const std::string slices =
      "\x80\x04\x95"
      "1\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x08"
      "builtins\x94\x8c\x05slice\x94\x93\x94K\x01K\x03N\x87\x94R\x94h\x03NJ\xff"
      "\xff\xff\xffK\x02\x87\x94R\x94"
      "e."s;
  // pickle.dumps([float, float], protocol=4)
  const std::string same =
      "\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x08"
      "builtins\x94\x8c\x05"
      "float\x94\x93\x94h\x03"
      "e."s;
  // pickle.dumps({'a': float, 'b': int}, protocol=4)
  const std::string dict =
      "\x80\x04\x95,\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01"
      "a\x94\x8c\x08"
      "builtins\x94\x8c\x05"
      "float\x94\x93\x94\x8c\x01"
      "b\x94h\x02\x8c\x03int\x94\x93\x94u."s;
  // pickle.dumps([[float], [int, bytes]], protocol=4)
  const std::string nested =
      "\x80\x04\x95"
      "7\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94\x8c\x08"
      "builtins\x94\x8c\x05"
      "float\x94\x93\x94"
      "a]\x94(h\x02\x8c\x03int\x94\x93\x94h\x02\x8c\x05"
      "bytes\x94\x93\x94"
      "ee."s;
  uint64_t fallbacks = internal::TypedFallbackCount();
  for (char protocol : {'\x04', '\x05'}) {
    auto with = [protocol](std::string data) {
      data[1] = protocol;
      return data;
    };
    EXPECT_EQ(repr(Object::list(loads<std::vector<Object>>(with(types)))),
              "[<class 'float'>, <class 'int'>, <class 'str'>]");
    EXPECT_EQ(loads<std::vector<Range>>(with(ranges)),
              (std::vector<Range>{{0, 3, 1}, {1, 5, 2}}));
    EXPECT_EQ(
        loads<std::vector<Slice>>(with(slices)),
        (std::vector<Slice>{{1, 3, std::nullopt}, {std::nullopt, -1, 2}}));
    EXPECT_EQ(repr(Object::list(loads<std::vector<Object>>(with(same)))),
              "[<class 'float'>, <class 'float'>]");
    auto d = loads<std::map<std::string, Object>>(with(dict));
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(repr(d["a"]), "<class 'float'>");
    EXPECT_EQ(repr(d["b"]), "<class 'int'>");
    auto lists = loads<std::vector<std::vector<Object>>>(with(nested));
    ASSERT_EQ(lists.size(), 2u);
    EXPECT_EQ(repr(Object::list(lists[1])), "[<class 'int'>, <class 'bytes'>]");
    for (const std::string* data : {&types, &ranges, &slices, &same, &nested}) {
      EXPECT_TRUE(Object::list(loads<std::vector<Object>>(with(*data))) ==
                  loads<Object>(with(*data)));
    }
  }
  EXPECT_EQ(internal::TypedFallbackCount(), fallbacks);

  // A reference to another str before STACK_GLOBAL names a module that is not
  // allowed: refused, typed or not.
  const std::string other =
      "\x80\x04]\x94(\x8c\x01x\x94h\x01\x8c\x03int\x94\x93\x94"
      "e."s;
  EXPECT_THROW(loads<std::vector<Object>>(other), UnpicklingError);
  EXPECT_THROW(loads<Object>(other), UnpicklingError);
}

}  // namespace
}  // namespace multiprocessing::reduction
