// The globals a pickle may name (GLOBAL / STACK_GLOBAL) and what this package
// calls them: the built-in types and `_codecs.encode`. Anything else is
// refused. Internal.
#ifndef MULTIPROCESSING_REDUCTION_INTERNAL_GLOBALS_H_
#define MULTIPROCESSING_REDUCTION_INTERNAL_GLOBALS_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace multiprocessing::reduction::internal {

// The globals a pickle may name (GLOBAL / STACK_GLOBAL): `_codecs.encode`,
// which CPython writes for bytes in protocol 2, and the type objects of the
// built-in types below (of which bytes, bytearray, set, frozenset, range and
// slice may also be called by REDUCE, with the arguments CPython writes).
enum class Callable : uint8_t {
  kCodecsEncode,
  kInt,
  kFloat,
  kStr,
  kBytes,
  kByteArray,
  kBool,
  kList,
  kTuple,
  kDict,
  kSet,
  kFrozenSet,
  kComplex,
  kObject,
  kType,
  kRange,
  kSlice,
};
inline constexpr int kNumCallables = static_cast<int>(Callable::kSlice) + 1;
// Python 3's name of a built-in type ("float"); nullptr for kCodecsEncode.
const char* BuiltinTypeName(Callable c);
// The name CPython writes after `__builtin__` in protocol 2 ("long" for int).
const char* Python2TypeName(Callable c);
// The built-in type called `name` in Python 3; nullopt when not allowed.
std::optional<Callable> BuiltinTypeByName(std::string_view name);
// Maps module and name (with Python 2's `__builtin__` module and its `long`,
// `unicode`, `basestring` and `xrange` names accepted, as CPython does) to a
// Callable; throws UnpicklingError for anything else.
Callable ResolveGlobal(std::string_view module, std::string_view name);

}  // namespace multiprocessing::reduction::internal

#endif  // MULTIPROCESSING_REDUCTION_INTERNAL_GLOBALS_H_
