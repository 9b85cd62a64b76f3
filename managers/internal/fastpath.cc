#include "managers/internal/fastpath.h"

#include <cstdint>
#include <cstring>

namespace multiprocessing::managers::internal {
namespace {

using reduction::Object;

// A cursor over pickle bytes that understands the few opcodes of the common
// messages; every Take* returns false (leaving the cursor anywhere) when the
// bytes are something else.
class Cursor {
 public:
  explicit Cursor(std::string_view bytes)
      : p_(reinterpret_cast<const uint8_t*>(bytes.data())),
        end_(p_ + bytes.size()) {}

  bool at_end() const { return p_ == end_; }

  // PROTO and FRAME, if present.
  bool TakeHeader() {
    if (p_ < end_ && *p_ == 0x80) {
      if (end_ - p_ < 2 || p_[1] < 2 || p_[1] > 5) return false;
      p_ += 2;
    }
    if (p_ < end_ && *p_ == 0x95) {
      if (end_ - p_ < 9) return false;
      p_ += 9;
    }
    return true;
  }

  bool Take(uint8_t op) {
    if (p_ >= end_ || *p_ != op) return false;
    ++p_;
    SkipMemo();
    return true;
  }
  bool Peek(uint8_t op) const { return p_ < end_ && *p_ == op; }

  // A str of ASCII characters (anything else goes the general way, which
  // checks UTF-8).
  bool TakeAsciiStr(std::string_view* s) {
    if (p_ >= end_) return false;
    size_t n;
    if (*p_ == 0x8c) {  // SHORT_BINUNICODE
      if (end_ - p_ < 2) return false;
      n = p_[1];
      p_ += 2;
    } else if (*p_ == 'X') {  // BINUNICODE
      if (end_ - p_ < 5) return false;
      n = Le(p_ + 1, 4);
      p_ += 5;
    } else {
      return false;
    }
    if (static_cast<size_t>(end_ - p_) < n) return false;
    for (size_t i = 0; i < n; ++i) {
      if (p_[i] & 0x80) return false;
    }
    *s = std::string_view(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    SkipMemo();
    return true;
  }

  // None, bool, int, float, ASCII str or bytes.
  bool TakeScalar(Object* out) {
    if (p_ >= end_) return false;
    const uint8_t op = *p_;
    const size_t left = static_cast<size_t>(end_ - p_) - 1;
    const uint8_t* arg = p_ + 1;
    switch (op) {
      case 'N':
        *out = Object();
        p_ = arg;
        break;
      case 0x88:
      case 0x89:
        *out = Object(op == 0x88);
        p_ = arg;
        break;
      case 'K':
        if (left < 1) return false;
        *out = Object(static_cast<int64_t>(arg[0]));
        p_ = arg + 1;
        break;
      case 'M':
        if (left < 2) return false;
        *out = Object(static_cast<int64_t>(Le(arg, 2)));
        p_ = arg + 2;
        break;
      case 'J':
        if (left < 4) return false;
        *out = Object(static_cast<int64_t>(static_cast<int32_t>(Le(arg, 4))));
        p_ = arg + 4;
        break;
      case 0x8a: {  // LONG1: little-endian two's complement
        if (left < 1 || arg[0] > 8 || left - 1 < arg[0]) return false;
        const unsigned n = arg[0];
        uint64_t v = Le(arg + 1, n);
        if (n > 0 && n < 8 && (arg[n] & 0x80)) v |= ~uint64_t{0} << (8 * n);
        *out = Object(static_cast<int64_t>(v));
        p_ = arg + 1 + n;
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        if (left < 8) return false;
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | arg[i];
        double d;
        std::memcpy(&d, &bits, sizeof d);
        *out = Object(d);
        p_ = arg + 8;
        break;
      }
      case 'C':    // SHORT_BINBYTES
      case 'B': {  // BINBYTES
        const size_t width = op == 'C' ? 1 : 4;
        if (left < width) return false;
        const size_t n = Le(arg, width);
        if (left - width < n) return false;
        *out = Object::bytes(
            std::string_view(reinterpret_cast<const char*>(arg + width), n));
        p_ = arg + width + n;
        break;
      }
      default: {
        std::string_view s;
        if (!TakeAsciiStr(&s)) return false;
        *out = Object(s);
        return true;
      }
    }
    SkipMemo();
    return true;
  }

  // A tuple of scalars: MARK items TUPLE, EMPTY_TUPLE, or 1 to 3 items
  // followed by TUPLE1..TUPLE3.
  bool TakeScalarTuple(std::vector<Object>* items) {
    items->clear();
    if (Take(')')) return true;
    const bool marked = Take('(');
    for (;;) {
      if (marked && Take('t')) return true;
      if (!marked && items->size() >= 1 && items->size() <= 3 &&
          Take(static_cast<uint8_t>(0x84 + items->size()))) {
        return true;
      }
      if (items->size() >= 64) return false;
      items->emplace_back();
      if (!TakeScalar(&items->back())) return false;
    }
  }

  // An empty dict: EMPTY_DICT or MARK DICT.
  bool TakeEmptyDict() {
    if (Take('}')) return true;
    return Take('(') && Take('d');
  }

 private:
  static uint64_t Le(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
  }

  // Memo entries are never read back by the messages this cursor accepts
  // (a BINGET makes it give up), so writing them is skipped.
  void SkipMemo() {
    for (;;) {
      if (p_ < end_ && *p_ == 0x94) {
        ++p_;
      } else if (end_ - p_ >= 2 && *p_ == 'q') {
        p_ += 2;
      } else if (end_ - p_ >= 5 && *p_ == 'r') {
        p_ += 5;
      } else {
        return;
      }
    }
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace

bool ParseScalarRequest(std::string_view bytes, ScalarRequest* out) {
  Cursor c(bytes);
  if (!c.TakeHeader() || !c.Take('(')) return false;
  out->id_is_none = c.Take('N');
  if (!out->id_is_none && !c.TakeAsciiStr(&out->id)) return false;
  if (!c.TakeAsciiStr(&out->method)) return false;
  if (!c.TakeScalarTuple(&out->args)) return false;
  if (!c.TakeEmptyDict()) return false;
  return c.Take('t') && c.Take('.') && c.at_end();
}

bool ParseScalarReturn(std::string_view bytes, Object* value) {
  Cursor c(bytes);
  if (!c.TakeHeader()) return false;
  const bool marked = c.Take('(');
  std::string_view kind;
  if (!c.TakeAsciiStr(&kind) || kind != "#RETURN") return false;
  if (!c.TakeScalar(value)) return false;
  if (!c.Take(marked ? 't' : 0x86)) return false;
  return c.Take('.') && c.at_end();
}

}  // namespace multiprocessing::managers::internal
