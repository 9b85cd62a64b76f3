// Runs the fuzz target over every golden and hostile vector and over
// deterministic mutations of them (flipped, inserted, deleted and truncated
// bytes), so that ordinary test runs, under ASan/UBSan too, exercise what the
// fuzzer does.
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);

namespace {

std::string Unhex(std::string_view hex) {
  std::string out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(nibble(hex[i]) << 4 | nibble(hex[i + 1]));
  return out;
}

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  for (const char* name : {"golden.txt", "errors.txt"}) {
    std::ifstream in(std::string("reduction/testdata/") + name);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> f = absl::StrSplit(line, '\t');
      std::string hex =
          f.size() == 3 ? f[1] : f[0];  // golden rows: protocol, hex, repr
      if (hex.size() <= 20000) seeds.push_back(Unhex(hex));
    }
  }
  return seeds;
}

void RunTarget(const std::string& data) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()),
                         data.size());
}

TEST(FuzzRegressionTest, SeedsAndMutations) {
  std::vector<std::string> seeds = Seeds();
  ASSERT_GT(seeds.size(), 300u);
  std::mt19937 rng(12345);
  for (const std::string& seed : seeds) {
    RunTarget(seed);
    for (int i = 0; i < 8; ++i) {
      std::string m = seed;
      if (m.empty()) m = "\x80\x04";
      size_t at = rng() % m.size();
      switch (rng() % 4) {
        case 0:
          m[at] = static_cast<char>(rng());
          break;
        case 1:
          m.insert(at, 1, static_cast<char>(rng()));
          break;
        case 2:
          m.erase(at, 1 + rng() % 4);
          break;
        default:
          m.resize(at);
          break;
      }
      RunTarget(m);
    }
  }
}

}  // namespace
