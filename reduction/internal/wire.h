// Low-level pieces of the pickle wire format shared by the typed Reader and the
// Object decoder: fixed-width little-endian arguments, CPython's LONG1/LONG4
// integers, UTF-8 checks. Internal.
#ifndef MULTIPROCESSING_REDUCTION_INTERNAL_WIRE_H_
#define MULTIPROCESSING_REDUCTION_INTERNAL_WIRE_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/numeric/int128.h"

namespace multiprocessing::reduction::internal {

inline uint16_t LoadLE16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t LoadLE32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // x86-64 and every Linux target this builds for are little-endian
}
inline uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline double LoadBE64Double(const uint8_t* p) {
  uint64_t v = __builtin_bswap64(LoadLE64(p));
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}

// Decodes CPython's little-endian two's complement LONG1/LONG4 payload. Throws
// UnpicklingError when the value needs more than 128 bits of magnitude.
void DecodeLong(std::string_view payload, bool* negative,
                absl::uint128* magnitude);
// Appends the minimal two's complement encoding of the integer (empty for 0),
// as CPython's encode_long.
void EncodeLong(bool negative, absl::uint128 magnitude, std::string* out);

// Whether no byte has its high bit set (most text).
bool IsAscii(std::string_view s);

#if defined(__x86_64__)
// Set once at start-up when the CPU has AVX2 (false until then, which only
// means the SSE2 path is taken).
extern bool cpu_has_avx2;
// IsAscii of n >= 32 bytes, 32 bytes a step; only when cpu_has_avx2.
__attribute__((target("avx2"))) bool IsAsciiAvx2(const char* p, size_t n);
// CopyAscii of n >= 32 bytes; only when cpu_has_avx2.
__attribute__((target("avx2"))) bool CopyAsciiAvx2(char* dst, const char* src,
                                                   size_t n);
#endif

// Copies n bytes from `src` to `dst` (not overlapping) and returns whether all
// of them are ASCII: one pass where a copy and a check would read `src` twice.
bool CopyAscii(char* dst, const char* src, size_t n);

// IsAscii inline for the short text most messages hold, where a call and the
// choice of vector width would cost as much as the check itself: overlapping
// words below 16 bytes, then AVX2 (out of line, picked by one flag) or 16 bytes
// a step with SSE2 (which every x86-64 has).
inline bool IsAsciiInline(std::string_view s) {
  const char* p = s.data();
  size_t n = s.size();
  if (n >= 16) {
#if defined(__x86_64__)
    if (n >= 32 && cpu_has_avx2) return IsAsciiAvx2(p, n);
#endif
#if defined(__SSE2__)
    if (n > 512) return IsAscii(s);
    auto load = [p](size_t at) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at));
    };
    __m128i acc = load(n - 16);  // the tail, overlapping the steps below
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
      acc = _mm_or_si128(
          acc, _mm_or_si128(_mm_or_si128(load(i), load(i + 16)),
                            _mm_or_si128(load(i + 32), load(i + 48))));
    }
    for (; i + 16 <= n; i += 16) acc = _mm_or_si128(acc, load(i));
    return _mm_movemask_epi8(acc) == 0;
#else
    return IsAscii(s);
#endif
  }
  uint64_t high;
  if (n >= 8) {
    high = LoadLE64(reinterpret_cast<const uint8_t*>(p)) |
           LoadLE64(reinterpret_cast<const uint8_t*>(p + n - 8));
  } else if (n >= 4) {
    high = LoadLE32(reinterpret_cast<const uint8_t*>(p)) |
           LoadLE32(reinterpret_cast<const uint8_t*>(p + n - 4));
  } else {
    high = 0;
    for (size_t i = 0; i < n; ++i) high |= static_cast<uint8_t>(p[i]);
  }
  return (high & 0x8080808080808080ULL) == 0;
}
// The full check of IsPickleUtf8, for text that is not ASCII.
bool IsPickleUtf8Slow(std::string_view s);
// True when `s` is UTF-8 as CPython's pickle writes it (surrogate code points
// allowed: 'surrogatepass').
inline bool IsPickleUtf8(std::string_view s) {
  return IsAsciiInline(s) || IsPickleUtf8Slow(s);
}
// Throws UnpicklingError unless IsPickleUtf8(s).
void CheckUtf8(std::string_view s);
// latin-1 text <-> bytes, as the protocol 2 encoding of bytes
// (`_codecs.encode(str, 'latin1')`) needs.
std::string Utf8FromLatin1(std::string_view bytes);
std::string Latin1FromUtf8(
    std::string_view utf8);  // UnpicklingError for code points above U+00FF

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

#endif  // MULTIPROCESSING_REDUCTION_INTERNAL_WIRE_H_
