// Differential test against CPython: python3 (testdata/differential.py) makes a
// few hundred random values with a fixed seed and pickles them in every
// protocol; C++ decodes each (as Object, and typed cases as C++ types),
// compares repr() with CPython's, re-encodes in the same protocol, and CPython
// loads the re-encodings and compares them with the originals.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "reduction/object.h"
#include "reduction/pickle.h"

namespace multiprocessing::reduction {
namespace {

constexpr int kSeed = 20261122;
constexpr int kValues = 300;

std::string Unhex(std::string_view hex) {
  std::string out;
  out.reserve(hex.size() / 2);
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(nibble(hex[i]) << 4 | nibble(hex[i + 1]));
  return out;
}

std::string Hex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// Runs a shell command with a deadline; returns its exit status.
int RunCommand(const std::string& command) {
  int status = std::system(("timeout 300 " + command).c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Decodes `data` as T and re-encodes it in `protocol`.
template <class T>
std::string TypedRoundTrip(const std::string& data, int protocol) {
  return dumps(loads<T>(data), nullptr, protocol);
}

std::string RoundTripAs(const std::string& kind, const std::string& data,
                        int protocol) {
  if (kind == "ints")
    return TypedRoundTrip<std::vector<int64_t>>(data, protocol);
  if (kind == "strs")
    return TypedRoundTrip<std::vector<std::string>>(data, protocol);
  if (kind == "map")
    return TypedRoundTrip<std::map<std::string, std::vector<double>>>(data,
                                                                      protocol);
  if (kind == "tuple") {
    return TypedRoundTrip<
        std::tuple<int64_t, std::string, double, bool, std::optional<int64_t>>>(
        data, protocol);
  }
  if (kind == "set") return TypedRoundTrip<std::set<int64_t>>(data, protocol);
  if (kind == "nested")
    return TypedRoundTrip<std::vector<std::vector<int64_t>>>(data, protocol);
  if (kind == "bytes")
    return TypedRoundTrip<std::vector<Bytes>>(data, protocol);
  if (kind == "pairs")
    return TypedRoundTrip<std::vector<std::pair<std::string, int64_t>>>(
        data, protocol);
  ADD_FAILURE() << "unknown typed case " << kind;
  return "";
}

TEST(DifferentialTest, AgreesWithCPython) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = tmp ? tmp : "/tmp";
  std::string generated = dir + "/generated.txt";
  std::string reencoded = dir + "/reencoded.txt";
  std::string report = dir + "/report.txt";
  std::string script = "reduction/testdata/differential.py";
  std::string args = absl::StrCat(" ", kSeed, " ", kValues, " ");
  ASSERT_EQ(RunCommand("python3 " + script + " generate" + args + generated),
            0);

  std::ifstream in(generated);
  std::ofstream out(reencoded);
  std::string line;
  size_t index = 0;
  size_t objects = 0;
  size_t typed = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits('\t', 3));
    ASSERT_EQ(f.size(), 4u) << line;
    const std::string& kind = f[0];
    int protocol = std::stoi(f[1]);
    std::string data = Unhex(f[2]);
    SCOPED_TRACE(absl::StrCat("line ", index, " ", kind, " protocol ", protocol,
                              ": ", f[3].substr(0, 300)));
    std::string again;
    try {
      if (kind == "obj") {
        Object value = loads<Object>(data);
        EXPECT_EQ(repr(value), f[3]);
        // The typed decoder of Objects agrees with the Object decoder.
        EXPECT_EQ(repr(std::get<0>(loads<std::variant<Object>>(data))), f[3]);
        again = dumps(value, nullptr, protocol);
        ++objects;
      } else {
        uint64_t fallbacks = internal::TypedFallbackCount();
        again = RoundTripAs(kind.substr(6), data, protocol);
        ++typed;
        // What CPython writes for these types decodes on the fast path, except
        // protocol 2's bytes
        // (_codecs.encode through a memo reference).
        if (!(kind == "typed:bytes" && protocol == 2)) {
          EXPECT_EQ(internal::TypedFallbackCount(), fallbacks)
              << "the typed decoder needed the fallback";
        }
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "decoding failed: " << e.what();
    }
    out << index << '\t' << protocol << '\t' << Hex(again) << '\n';
    ++index;
  }
  out.close();
  EXPECT_GE(objects, static_cast<size_t>(kValues) * 4);
  EXPECT_GT(typed, 0u);
  int status = RunCommand("python3 " + script + " check" + args + reencoded +
                          " > " + report + " 2>&1");
  EXPECT_EQ(status, 0) << ReadFile(report);
  std::remove(generated.c_str());
  std::remove(reencoded.c_str());
  std::remove(report.c_str());
}

}  // namespace
}  // namespace multiprocessing::reduction
