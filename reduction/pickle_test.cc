#include "reduction/pickle.h"

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace multiprocessing::reduction {
namespace {

std::string Hex(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

TEST(PickleTest, IntMatchesCPython) {
  // pickle.dumps(5) == b'\x80\x04K\x05.'
  EXPECT_EQ(Hex(dumps(5)), "80044b052e");
  EXPECT_EQ(loads<int>(dumps(5)), 5);
  EXPECT_EQ(loads<int64_t>(dumps(int64_t{-1} << 40)), int64_t{-1} << 40);
}

TEST(PickleTest, StrRoundTrip) {
  std::string s(256, '0');
  EXPECT_EQ(loads<std::string>(dumps(s)), s);
}

TEST(PickleTest, VectorFromCPython) {
  // pickle.dumps([1]) and pickle.dumps(([], (1, 2)))
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
  EXPECT_EQ(repr(loads<Object>(t)), "([], (1, 2))");
}

TEST(PickleTest, Repr) {
  EXPECT_EQ(repr(std::vector<int>{1, 4, 9}), "[1, 4, 9]");
  EXPECT_EQ(repr(std::make_pair(3.515625, 39.0625)), "(3.515625, 39.0625)");
  std::vector<std::optional<std::variant<int, std::string>>> v{
      42, std::nullopt, std::string("hello")};
  EXPECT_EQ(repr(v), "[42, None, 'hello']");
}

}  // namespace
}  // namespace multiprocessing::reduction
