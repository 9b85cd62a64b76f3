#include "reduction/internal/globals.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"

namespace multiprocessing::reduction::internal {

namespace {
constexpr const char* kBuiltinNames[kNumCallables] = {
    nullptr,   "int",    "float", "str",   "bytes", "bytearray",
    "bool",    "list",   "tuple", "dict",  "set",   "frozenset",
    "complex", "object", "type",  "range", "slice"};
}  // namespace

const char* BuiltinTypeName(Callable c) {
  return kBuiltinNames[static_cast<int>(c)];
}

const char* Python2TypeName(Callable c) {
  switch (c) {
    case Callable::kInt:
      return "long";
    case Callable::kStr:
      return "unicode";
    case Callable::kRange:
      return "xrange";
    default:
      return BuiltinTypeName(c);
  }
}

std::optional<Callable> BuiltinTypeByName(std::string_view name) {
  for (int i = 1; i < kNumCallables; ++i) {
    if (name == kBuiltinNames[i]) return static_cast<Callable>(i);
  }
  return std::nullopt;
}

Callable ResolveGlobal(std::string_view module, std::string_view name) {
  if (module == "_codecs" && name == "encode") return Callable::kCodecsEncode;
  if (module == "builtins" || module == "__builtin__") {
    if (std::optional<Callable> c = BuiltinTypeByName(name)) return *c;
    if (module == "__builtin__") {
      if (name == "long") return Callable::kInt;
      if (name == "unicode" || name == "basestring") return Callable::kStr;
      if (name == "xrange") return Callable::kRange;
    }
  }
  std::string shown = absl::StrCat(std::string(module.substr(0, 100)), ".",
                                   std::string(name.substr(0, 100)));
  throw UnpicklingError(absl::StrCat(
      "global '", shown,
      "' is not allowed: only the built-in data types (None, bool, int, float, "
      "str, bytes, bytearray, list, tuple, dict, set, frozenset, range, "
      "slice) and the type objects of built-in types can be unpickled"));
}

}  // namespace multiprocessing::reduction::internal
