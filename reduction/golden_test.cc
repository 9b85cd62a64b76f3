// Decodes pickles made by CPython 3.11 (testdata/golden.txt, written by
// testdata/gen_golden.py) and checks repr(), re-encoding in every protocol, and
// the typed decoder; feeds the hostile inputs of testdata/errors.txt to every
// decoder and checks the error.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "reduction/object.h"
#include "reduction/pickle.h"

namespace multiprocessing::reduction {
namespace {

std::string Unhex(std::string_view hex) {
  std::string out;
  out.reserve(hex.size() / 2);
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(nibble(hex[i]) << 4 | nibble(hex[i + 1]));
  return out;
}

std::string Fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ULL;
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// repr as the golden file shows it (long ones as a digest).
std::string Shown(const std::string& r) {
  return r.size() > 2000 ? "fnv1a64:" + Fnv1a64(r) : r;
}

std::vector<std::vector<std::string>> ReadTable(const std::string& name) {
  std::ifstream in("reduction/testdata/" + name);
  EXPECT_TRUE(in.good()) << "cannot open reduction/testdata/" << name;
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> row =
        absl::StrSplit(line, absl::MaxSplits('\t', 2));
    rows.push_back(row);
  }
  return rows;
}

TEST(GoldenTest, DecodesWhatCPythonWrites) {
  auto rows = ReadTable("golden.txt");
  ASSERT_GT(rows.size(), 400u);
  size_t fallback_rows = 0;
  for (const auto& row : rows) {
    ASSERT_EQ(row.size(), 3u);
    std::string data = Unhex(row[1]);
    SCOPED_TRACE("protocol " + row[0] + ": " + row[2].substr(0, 200));
    Object value;
    ASSERT_NO_THROW(value = loads<Object>(data));
    EXPECT_EQ(Shown(repr(value)), row[2]);
    // The typed decoder (Objects nested in a C++ type) agrees.
    uint64_t fallbacks = internal::TypedFallbackCount();
    std::optional<std::variant<Object>> typed;
    ASSERT_NO_THROW(typed = loads<std::variant<Object>>(data));
    ASSERT_TRUE(typed.has_value());
    EXPECT_EQ(Shown(repr(std::get<0>(*typed))), row[2]);
    if (internal::TypedFallbackCount() != fallbacks) ++fallback_rows;
    fallbacks = internal::TypedFallbackCount();
    // Re-encoding in every protocol gives back an equal value, in the same
    // order.
    for (int protocol = 2; protocol <= kHighestProtocol; ++protocol) {
      std::string again = dumps(value, nullptr, protocol);
      Object back = loads<Object>(again);
      EXPECT_TRUE(back == value) << "protocol " << protocol;
      EXPECT_EQ(Shown(repr(back)), row[2]);
      EXPECT_EQ(Shown(repr(std::get<0>(loads<std::variant<Object>>(again)))),
                row[2]);
      // What this library writes never needs the fallback.
      EXPECT_EQ(internal::TypedFallbackCount(), fallbacks)
          << "protocol " << protocol;
      fallbacks = internal::TypedFallbackCount();
    }
  }
  // Most of what CPython writes decodes into Objects inside C++ types without
  // the fallback (the rest: protocol 2 bytes, memoized globals, postfix tuples
  // of containers).
  std::printf("%zu of %zu golden pickles needed the fallback\n", fallback_rows,
              rows.size());
  EXPECT_LT(fallback_rows, rows.size() / 4);
}

TEST(GoldenTest, RefusesHostileInput) {
  auto rows = ReadTable("errors.txt");
  ASSERT_GT(rows.size(), 30u);
  for (const auto& row : rows) {
    ASSERT_EQ(row.size(), 2u);
    std::string data = Unhex(row[0]);
    SCOPED_TRACE(row[0].substr(0, 120));
    try {
      Object o = loads<Object>(data);
      ADD_FAILURE() << "decoded to " << repr(o);
    } catch (const UnpicklingError& e) {
      EXPECT_NE(std::string(e.what()).find(row[1]), std::string::npos)
          << e.what();
    }
    // Typed decoders fail cleanly too.
    EXPECT_THROW(loads<std::vector<Object>>(data), Exception);
    EXPECT_THROW(loads<std::variant<Object>>(data), Exception);
    EXPECT_THROW(loads<std::string>(data), Exception);
    EXPECT_THROW((loads<std::map<std::string, std::vector<int>>>(data)),
                 Exception);
  }
}

}  // namespace
}  // namespace multiprocessing::reduction
