// The fuzz target of the pickle decoders: whatever the bytes, decoding either
// succeeds or throws one of the library's exceptions, and what decodes
// re-encodes to an equal value.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include "reduction/object.h"
#include "reduction/pickle.h"

namespace multiprocessing::reduction {
namespace {

// The number of values in `o` counting shared sub-objects once per use,
// stopping at `limit` (repr of a small pickle whose sub-objects share each
// other can be exponentially long, in CPython too).
size_t TreeSize(const Object& o, size_t limit) {
  size_t n = 1;
  auto add = [&](const Object& x) {
    if (n < limit) n += TreeSize(x, limit - n);
  };
  switch (o.type()) {
    case Object::Type::kList:
    case Object::Type::kTuple:
    case Object::Type::kSet:
    case Object::Type::kFrozenSet:
      for (const Object& x : o.items()) add(x);
      break;
    case Object::Type::kDict:
      for (const Object& x : o.keys()) add(x);
      for (const Object& x : o.values()) add(x);
      break;
    default:
      break;
  }
  return n;
}

template <class T>
void TryTyped(std::string_view data) {
  try {
    T value = loads<T>(data);
    (void)dumps(value);
  } catch (const Exception&) {
  }
}

}  // namespace
}  // namespace multiprocessing::reduction

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace multiprocessing::reduction;  // NOLINT
  std::string_view data(reinterpret_cast<const char*>(bytes), size);
  try {
    Object value = loads<Object>(data);
    bool small = TreeSize(value, 100000) < 100000;
    std::string text = small ? repr(value) : "";
    // The typed Reader reads the input itself (or falls back): the same value.
    if (small && repr(std::get<0>(loads<std::variant<Object>>(data))) != text)
      std::abort();
    for (int protocol = 2; protocol <= kHighestProtocol; ++protocol) {
      std::string again = dumps(value, nullptr, protocol);
      Object back = loads<Object>(again);
      if (small && repr(back) != text)
        std::abort();  // repr, not ==: NaN != NaN
      if (small &&
          repr(std::get<0>(loads<std::variant<Object>>(again))) != text)
        std::abort();
    }
  } catch (const multiprocessing::Exception&) {
  }
  TryTyped<std::variant<Object>>(data);
  TryTyped<std::vector<int64_t>>(data);
  TryTyped<std::vector<std::string>>(data);
  TryTyped<std::map<std::string, std::vector<double>>>(data);
  TryTyped<std::tuple<int, std::string, std::optional<double>>>(data);
  TryTyped<std::variant<int64_t, std::string, std::vector<Object>>>(data);
  TryTyped<std::vector<std::pair<Bytes, std::set<int>>>>(data);
  return 0;
}
