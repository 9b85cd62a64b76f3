#include "reduction/internal/utf8.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "errors/errors.h"

namespace multiprocessing::reduction::internal {

#if defined(__x86_64__)
namespace {
bool CpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") != 0;
}
}  // namespace

bool cpu_has_avx2 = CpuHasAvx2();

// 128 bytes per step, then 32, then the last 32 (overlapping). No lambda
// here: it would not inherit the target attribute.
__attribute__((target("avx2"))) bool IsAsciiAvx2(const char* p, size_t n) {
  const auto* v = reinterpret_cast<const __m256i*>(p);
  __m256i acc =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + n - 32));
  size_t i = 0;
  for (; i + 128 <= n; i += 128, v += 4) {
    __m256i a =
        _mm256_or_si256(_mm256_loadu_si256(v), _mm256_loadu_si256(v + 1));
    __m256i b =
        _mm256_or_si256(_mm256_loadu_si256(v + 2), _mm256_loadu_si256(v + 3));
    acc = _mm256_or_si256(acc, _mm256_or_si256(a, b));
  }
  for (; i + 32 <= n; i += 32, ++v)
    acc = _mm256_or_si256(acc, _mm256_loadu_si256(v));
  return _mm256_movemask_epi8(acc) == 0;
}

// As IsAsciiAvx2, storing each load; the last 32 bytes (overlapping) are
// stored last, after the steps that may have written part of them.
__attribute__((target("avx2"))) bool CopyAsciiAvx2(char* dst, const char* src,
                                                   size_t n) {
  const auto* s = reinterpret_cast<const __m256i*>(src);
  auto* d = reinterpret_cast<__m256i*>(dst);
  __m256i tail =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + n - 32));
  __m256i acc = tail;
  size_t i = 0;
  for (; i + 128 <= n; i += 128, s += 4, d += 4) {
    __m256i a = _mm256_loadu_si256(s), b = _mm256_loadu_si256(s + 1);
    __m256i c = _mm256_loadu_si256(s + 2), e = _mm256_loadu_si256(s + 3);
    _mm256_storeu_si256(d, a);
    _mm256_storeu_si256(d + 1, b);
    _mm256_storeu_si256(d + 2, c);
    _mm256_storeu_si256(d + 3, e);
    acc = _mm256_or_si256(
        acc, _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, e)));
  }
  for (; i + 32 <= n; i += 32, ++s, ++d) {
    __m256i a = _mm256_loadu_si256(s);
    _mm256_storeu_si256(d, a);
    acc = _mm256_or_si256(acc, a);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + n - 32), tail);
  return _mm256_movemask_epi8(acc) == 0;
}
#endif

bool CopyAscii(char* dst, const char* src, size_t n) {
#if defined(__x86_64__)
  if (n >= 32 && cpu_has_avx2) return CopyAsciiAvx2(dst, src, n);
#endif
#if defined(__SSE2__)
  if (n >= 16) {
    auto load = [src](size_t at) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at));
    };
    __m128i tail = load(n - 16), acc = tail;
    for (size_t i = 0; i + 16 <= n; i += 16) {
      __m128i v = load(i);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), v);
      acc = _mm_or_si128(acc, v);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 16), tail);
    return _mm_movemask_epi8(acc) == 0;
  }
#endif
  if (n >= 8) {
    // Words, then the last word (overlapping).
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      std::memcpy(&w, src + i, 8);
      std::memcpy(dst + i, &w, 8);
      acc |= w;
    }
    std::memcpy(&w, src + n - 8, 8);
    std::memcpy(dst + n - 8, &w, 8);
    return ((acc | w) & 0x8080808080808080ULL) == 0;
  }
  uint8_t acc = 0;
  for (size_t i = 0; i < n; ++i) {
    dst[i] = src[i];
    acc |= static_cast<uint8_t>(src[i]);
  }
  return (acc & 0x80) == 0;
}

// 64 bytes per step with SSE2 (every x86-64 has it), then bytewise.
bool IsAscii(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t n = s.size();
#if defined(__x86_64__)
  if (n >= 64 && cpu_has_avx2) return IsAsciiAvx2(s.data(), n);
#endif
  size_t i = 0;
#if defined(__SSE2__)
  auto load = [&](size_t at) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at));
  };
  __m128i acc = _mm_setzero_si128();
  for (; i + 64 <= n; i += 64) {
    acc = _mm_or_si128(acc,
                       _mm_or_si128(_mm_or_si128(load(i), load(i + 16)),
                                    _mm_or_si128(load(i + 32), load(i + 48))));
  }
  for (; i + 16 <= n; i += 16) acc = _mm_or_si128(acc, load(i));
  if (_mm_movemask_epi8(acc) != 0) return false;
#endif
  uint8_t high = 0;
  for (; i < n; ++i) high |= p[i];
  return high < 0x80;
}

bool IsPickleUtf8Slow(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const uint8_t* e = p + s.size();
  while (p < e) {
    // Fast path: ASCII, 32 then 8 bytes at a time.
    while (e - p >= 32) {
      uint64_t w[4];
      std::memcpy(w, p, 32);
      if ((w[0] | w[1] | w[2] | w[3]) & 0x8080808080808080ULL) break;
      p += 32;
    }
    while (e - p >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      if (w & 0x8080808080808080ULL) break;
      p += 8;
    }
    if (p == e) break;
    uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (static_cast<size_t>(e - p) < n) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((p[k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[k] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    p += n;
  }
  return true;
}

void CheckUtf8(std::string_view s) {
  if (!IsPickleUtf8(s))
    throw UnpicklingError("a str in the pickle is not valid UTF-8");
}

std::string Utf8FromLatin1(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    auto c = static_cast<uint8_t>(ch);
    if (c < 0x80) {
      out += ch;
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

std::string Latin1FromUtf8(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size());
  for (size_t i = 0; i < utf8.size(); ++i) {
    auto c = static_cast<uint8_t>(utf8[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if ((c == 0xC2 || c == 0xC3) && i + 1 < utf8.size()) {
      out += static_cast<char>(((c & 0x03) << 6) |
                               (static_cast<uint8_t>(utf8[++i]) & 0x3F));
    } else {
      throw UnpicklingError(
          "latin-1 encoded bytes contain a character above U+00FF");
    }
  }
  return out;
}

}  // namespace multiprocessing::reduction::internal
