// The shortcuts dumps() and loads() take for the most common message, one
// str, without a Writer or Reader; and the size hint that lets a Writer
// allocate once. Internal: reduction/pickle.h uses them.
#ifndef MULTIPROCESSING_REDUCTION_INTERNAL_FAST_PATHS_H_
#define MULTIPROCESSING_REDUCTION_INTERNAL_FAST_PATHS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "reduction/internal/opcodes.h"
#include "reduction/internal/utf8.h"
#include "reduction/internal/wire.h"
#include "reduction/pickler.h"

namespace multiprocessing::reduction::internal {

// Whether `text` can be encoded as a str alone by FastDumpsStrHead (else the
// Writer encodes it).
inline bool CanFastDumpsStr(std::string_view text, int protocol) {
  return protocol >= 4 && protocol <= kHighestProtocol &&
         text.size() <= 0xFFFFFFFFu && IsPickleUtf8(text);
}

// The size of the pickle of a str alone of `n` bytes: FastDumpsStrHead's
// header, the text, STOP.
constexpr size_t FastDumpsStrSize(size_t n) {
  uint64_t payload = (n < 256 ? 2 : 5) + n + 1;  // + STOP
  return 2 + (payload >= 4 ? 9 : 0) + payload;
}

// Writes what precedes the text of a str alone as CPython encodes it (PROTO,
// FRAME, the str's opcode and length) at `p`; returns where the text goes.
// After the text comes STOP.
inline char* FastDumpsStrHead(char* p, size_t n, int protocol) {
  uint64_t payload = (n < 256 ? 2 : 5) + n + 1;  // + STOP
  *p++ = static_cast<char>(op::kProto);
  *p++ = static_cast<char>(protocol);
  if (payload >= 4) {
    *p++ = static_cast<char>(op::kFrame);
    std::memcpy(p, &payload, 8);
    p += 8;
  }
  if (n < 256) {
    *p++ = static_cast<char>(op::kShortBinUnicode);
    *p++ = static_cast<char>(n);
  } else {
    *p++ = static_cast<char>(op::kBinUnicode);
    auto n32 = static_cast<uint32_t>(n);
    std::memcpy(p, &n32, 4);
    p += 4;
  }
  return p;
}

// Encodes a str alone as CPython does into the FastDumpsStrSize(text.size())
// bytes at `out`, checking the text as it copies it (one pass); returns the
// end, or null (having written garbage) when the Writer must encode it:
// protocol under 4, text over 4 GiB or not UTF-8.
inline char* FastDumpsStrTo(char* out, std::string_view text, int protocol) {
  size_t n = text.size();
  if (protocol < 4 || protocol > kHighestProtocol || n > 0xFFFFFFFFu)
    return nullptr;
  char* p = FastDumpsStrHead(out, n, protocol);
  if (!CopyAscii(p, text.data(), n) && !IsPickleUtf8Slow(text)) return nullptr;
  p[n] = static_cast<char>(op::kStop);
  return p + n + 1;
}

// dumps() of a std::string: out of line, so that a caller's code holds one
// call.
std::string DumpsStr(const std::string& text, OutOfBand* oob, int protocol);

// The text of a pickle that is one str in the forms CPython writes (PROTO, an
// optional FRAME spanning the rest, the str, an optional memo opcode, STOP),
// not yet checked to be UTF-8; false for anything else, which the decoders
// then read.
bool StrPayload(std::string_view data, std::string_view* text);
// The form of a str alone that protocols 4 and 5 write (PROTO, FRAME of the
// rest, BINUNICODE or SHORT_BINUNICODE, MEMOIZE, STOP), recognised in a few
// compares: its text, not yet checked to be UTF-8; false for anything else.
inline bool ExactStrPayload(std::string_view data, std::string_view* text) {
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  size_t size = data.size();
  if (size < 15) return false;
  // PROTO and FRAME in one compare, the protocol byte between them apart.
  uint32_t head = LoadLE32(p) & 0xFF00FF;
  if (head != (op::kProto | op::kFrame << 16) || p[1] > kHighestProtocol ||
      LoadLE64(p + 3) != size - 11 ||
      LoadLE16(p + size - 2) != (op::kMemoize | op::kStop << 8))
    return false;
  size_t n, start;
  if (p[11] == op::kShortBinUnicode) {
    n = p[12];
    start = 13;
  } else if (p[11] == op::kBinUnicode) {
    n = LoadLE32(p + 12);
    start = 16;
  } else {
    return false;
  }
  if (start + n + 2 != size) return false;
  *text = std::string_view(data.data() + start, n);
  return true;
}
// StrPayload, trying ExactStrPayload inline first.
inline bool FastStrPayload(std::string_view data, std::string_view* text) {
  if (ExactStrPayload(data, text)) return true;
  // Through a local, so that the caller's `*text` need not live in memory on
  // the fast path.
  std::string_view other;
  if (!StrPayload(data, &other)) return false;
  *text = other;
  return true;
}
// loads() of a std::string from anything but ExactStrPayload's form.
std::string LoadsStrSlow(std::string_view data, OutOfBand* oob);

// The expected pickle size of values whose size is easy to tell (0: unknown).
template <class T>
size_t SizeHint(const T& value) {
  if constexpr (std::is_same_v<T, std::string> ||
                std::is_same_v<T, std::string_view>) {
    return std::string_view(value).size() + 24;
  } else if constexpr (requires {
                         value.data();
                         value.size();
                         typename T::value_type;
                       }) {
    using Item = typename T::value_type;
    if constexpr (std::is_integral_v<Item>) return value.size() * 5 + 24;
    if constexpr (std::is_floating_point_v<Item>) return value.size() * 9 + 24;
  }
  return 0;
}

}  // namespace multiprocessing::reduction::internal

#endif  // MULTIPROCESSING_REDUCTION_INTERNAL_FAST_PATHS_H_
