// The text checks of str in pickles, fast for the short ASCII text most
// messages hold: ASCII (SSE2 / AVX2), UTF-8 as CPython's pickle writes it
// ('surrogatepass'), and the latin-1 text of protocol 2's bytes. Internal.
#ifndef MULTIPROCESSING_REDUCTION_INTERNAL_UTF8_H_
#define MULTIPROCESSING_REDUCTION_INTERNAL_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "reduction/internal/wire.h"

namespace multiprocessing::reduction::internal {

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

}  // namespace multiprocessing::reduction::internal

#endif  // MULTIPROCESSING_REDUCTION_INTERNAL_UTF8_H_
