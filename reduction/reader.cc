// The Reader: its scalar reads, the memo bookkeeping its replays rely on, the
// typed fallback for a str; and Pickler<Object>::Load (ReaderAccess), which
// reads any supported value through the Reader, and those of Range and Slice.
#include "reduction/reader.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "errors/errors.h"
#include "reduction/internal/fast_paths.h"
#include "reduction/internal/globals.h"
#include "reduction/internal/object_nodes.h"
#include "reduction/internal/opcodes.h"
#include "reduction/internal/utf8.h"
#include "reduction/internal/wire.h"
#include "reduction/pickle.h"

namespace multiprocessing::reduction {

namespace op = internal::op;
using internal::Callable;

namespace internal {

bool StrPayload(std::string_view data, std::string_view* text) {
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const uint8_t* e = p + data.size();
  if (e - p < 4 || p[0] != op::kProto || p[1] > kHighestProtocol) return false;
  p += 2;
  if (*p == op::kFrame) {
    if (e - p < 10 || LoadLE64(p + 1) != static_cast<uint64_t>(e - p - 9))
      return false;
    p += 9;
  }
  size_t n;
  if (*p == op::kShortBinUnicode && e - p >= 2) {
    n = p[1];
    p += 2;
  } else if (*p == op::kBinUnicode && e - p >= 5) {
    n = LoadLE32(p + 1);
    p += 5;
  } else {
    return false;
  }
  if (static_cast<size_t>(e - p) <= n) return false;
  std::string_view found(reinterpret_cast<const char*>(p), n);
  p += n;
  if (*p == op::kMemoize) {
    ++p;
  } else if (*p == op::kBinPut && e - p >= 2) {
    p += 2;
  }
  if (p == e || *p != op::kStop || p + 1 != e) return false;
  *text = found;
  return true;
}

std::string LoadsStrSlow(std::string_view data, OutOfBand* oob) {
  std::string_view text;
  if (StrPayload(data, &text) && IsPickleUtf8(text)) return std::string(text);
  return LoadTyped<std::string>(data, oob);
}

}  // namespace internal

namespace {

// The size of the scalar value (or memo reference) at `p` with the memo opcodes
// after it, or 0 when it is not a scalar (or runs past the end).
size_t ScalarSize(const uint8_t* p, size_t left) {
  if (left == 0) return 0;
  size_t n;
  switch (*p) {
    case op::kNone:
    case op::kNewTrue:
    case op::kNewFalse:
      n = 1;
      break;
    case op::kBinInt1:
    case op::kBinGet:
      n = 2;
      break;
    case op::kBinInt2:
      n = 3;
      break;
    case op::kBinInt:
    case op::kLongBinGet:
      n = 5;
      break;
    case op::kBinFloat:
      n = 9;
      break;
    case op::kLong1:
    case op::kShortBinUnicode:
    case op::kShortBinBytes:
      if (left < 2) return 0;
      n = 2 + size_t{p[1]};
      break;
    case op::kBinUnicode:
    case op::kBinBytes:
      if (left < 5) return 0;
      n = 5 + size_t{internal::LoadLE32(p + 1)};
      break;
    default:
      return 0;
  }
  while (n < left) {
    if (p[n] == op::kMemoize) {
      n += 1;
    } else if (p[n] == op::kBinPut) {
      n += 2;
    } else if (p[n] == op::kLongBinPut) {
      n += 5;
    } else {
      return n;
    }
  }
  return 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Pickler<Object>

namespace internal {

struct ReaderAccess {
  static bool IsLatin1Name(const std::string& encoding) {
    return encoding == "latin1" || encoding == "latin-1" ||
           encoding == "iso-8859-1" || encoding == "iso8859-1";
  }

  // bytes / bytearray as CPython writes them before protocol 3 (and bytearray
  // before 5): _codecs.encode(text, 'latin1'), bytes(), bytearray(),
  // bytearray(bytes), bytearray(text, 'latin-1').
  static std::string ReadReducedBytes(Reader& r, bool* is_bytearray) {
    Callable callable = r.read_global();
    std::string out;
    std::vector<std::string> strs;
    std::optional<Bytes> data;
    auto none = [](size_t) {};
    size_t n;
    switch (callable) {
      case Callable::kCodecsEncode:
      case Callable::kByteArray:
      case Callable::kBytes: {
        auto item = [&] {
          if (callable != Callable::kCodecsEncode && strs.empty() && !data &&
              r.peek() != op::kShortBinUnicode && r.peek() != op::kBinUnicode &&
              r.peek() != op::kBinUnicode8 && r.peek() != op::kBinGet &&
              r.peek() != op::kLongBinGet) {
            data = r.load<Bytes>();
          } else {
            strs.push_back(r.load<std::string>());
          }
        };
        size_t args_start = r.offset();
        n = r.read_sequence(Reader::kTuple, item, none);
        r.note_memo(args_start);
        break;
      }
      default:
        r.fail_type("bytes");
    }
    if (callable == Callable::kCodecsEncode ||
        (callable == Callable::kByteArray && !strs.empty())) {
      if (n != 2 || strs.size() != 2 || !IsLatin1Name(strs[1])) {
        throw UnpicklingError(
            "malformed pickle: bytes encoded as text must use the latin-1 "
            "codec");
      }
      out = Latin1FromUtf8(strs[0]);
    } else if (n == 1 && data) {
      out = std::move(data->data);
    } else if (n != 0) {
      throw UnpicklingError(
          "malformed pickle: unexpected arguments for bytes or bytearray");
    }
    r.expect(op::kReduce, "REDUCE");
    if (is_bytearray) *is_bytearray = callable == Callable::kByteArray;
    return out;
  }

  // A global in the form CPython writes from protocol 4: the strs 'builtins'
  // and the name, each perhaps memoized, then STACK_GLOBAL.
  struct StackGlobal {
    std::string_view module, name;
    size_t module_size = 0, name_size = 0;  // of their opcodes, memo excluded
    size_t size = 0;                        // up to STACK_GLOBAL included
  };

  // The completed memo entry a BINGET / LONG_BINGET at p refers to, and the
  // opcode's length in *size; false for anything else.
  static bool MemoRefAt(const Reader& r, const uint8_t* p, const uint8_t* e,
                        Reader::MemoRange* range, size_t* size) {
    size_t index;
    if (e - p >= 2 && p[0] == op::kBinGet) {
      index = p[1];
      *size = 2;
    } else if (e - p >= 5 && p[0] == op::kLongBinGet) {
      index = LoadLE32(p + 1);
      *size = 5;
    } else {
      return false;
    }
    if (index >= r.memo_.size() || r.memo_[index].end == Reader::kPending)
      return false;
    *range = r.memo_[index];
    return true;
  }

  // The str at p as a global's module or name: SHORT_BINUNICODE, or a memo
  // reference to exactly one (CPython's second global refers back to
  // 'builtins'); *size is the opcode's length.
  static bool GlobalPartAt(const Reader& r, const uint8_t* p, const uint8_t* e,
                           std::string_view* text, size_t* size) {
    const uint8_t* s = p;
    const uint8_t* se = e;
    Reader::MemoRange range;
    bool is_ref = MemoRefAt(r, p, e, &range, size);
    if (is_ref) {
      s = r.base_ + range.start;
      se = r.base_ + range.end;
      if (se - s < 2 || se - s - 2 != s[1]) return false;
    }
    if (se - s < 2 || s[0] != op::kShortBinUnicode || se - s - 2 < s[1])
      return false;
    *text = {reinterpret_cast<const char*>(s + 2), s[1]};
    if (!is_ref) *size = 2 + size_t{s[1]};
    return true;
  }

  // Whether the read position starts a StackGlobal. A reader that pulls
  // values cannot tell the two strs from a pair of values until it sees the
  // STACK_GLOBAL, so it looks ahead for this one form; the Object decoder
  // reads the others.
  static bool MatchStackGlobal(const Reader& r, StackGlobal* out) {
    const uint8_t* p = r.pos_;
    const uint8_t* e = r.end_;
    auto skip_memo = [&] {
      for (;;) {
        if (p != e && *p == op::kMemoize) {
          p += 1;
        } else if (e - p >= 2 && *p == op::kBinPut) {
          p += 2;
        } else if (e - p >= 5 && *p == op::kLongBinPut) {
          p += 5;
        } else {
          return;
        }
      }
    };
    StackGlobal g;
    if (!GlobalPartAt(r, p, e, &g.module, &g.module_size) ||
        g.module != "builtins")
      return false;
    p += g.module_size;
    skip_memo();
    if (!GlobalPartAt(r, p, e, &g.name, &g.name_size)) return false;
    p += g.name_size;
    skip_memo();
    if (p == e || *p != op::kStackGlobal) return false;
    g.size = static_cast<size_t>(p + 1 - r.pos_);
    if (out) *out = g;
    return true;
  }

  // A memo reference at the read position to a whole global read before (a
  // global's later uses, as CPython writes them: BINGET of `range`): its
  // Callable, and the reference's length in *size. False for anything else.
  static bool GlobalRefAt(Reader& r, Callable* callable, size_t* size) {
    Reader::MemoRange range;
    if (!MemoRefAt(r, r.pos_, r.end_, &range, size)) return false;
    Reader::ReplayScope scope(r, range);
    StackGlobal g;
    if (r.pos_ != r.end_ && *r.pos_ == op::kGlobal) {
      *callable = r.read_global();
    } else if (MatchStackGlobal(r, &g)) {
      *callable = ResolveGlobal(g.module, g.name);
      r.pos_ += g.size;
    } else {
      return false;
    }
    return r.pos_ == r.end_;
  }

  // Consumes a GLOBAL, or the STACK_GLOBAL form above, recording memo
  // entries; UnpicklingError for globals that are not allowed.
  static Callable ReadAnyGlobal(Reader& r) {
    if (r.peek() == op::kGlobal) return r.read_global();
    size_t start = r.offset();
    Callable callable;
    size_t ref_size;
    if (GlobalRefAt(r, &callable, &ref_size)) {
      r.pos_ += ref_size;
      r.note_memo(start);
      return callable;
    }
    StackGlobal g;
    if (!MatchStackGlobal(r, &g)) r.fail_type("a global");
    callable = ResolveGlobal(g.module, g.name);
    for (size_t size : {g.module_size, g.name_size}) {
      size_t at = r.offset();
      r.pos_ += size;
      r.note_memo(at);
    }
    ++r.pos_;  // STACK_GLOBAL
    r.note_memo(start);
    return callable;
  }

  // The Callable a global at the read position names, without consuming it.
  static Callable PeekGlobal(Reader& r) {
    Reader::Checkpoint c = r.checkpoint();
    Callable callable = ReadAnyGlobal(r);
    r.restore(c);
    return callable;
  }

  // A global and what it stands for: the call of a constructor (set(...),
  // bytes(...), range(...), ...) when arguments and REDUCE follow, else the
  // type object itself.
  static Object LoadGlobal(Reader& r) {
    Callable callable = PeekGlobal(r);
    bool is_global_op = r.peek() == op::kGlobal;
    std::optional<Object> out;
    switch (callable) {
      case Callable::kSet:
      case Callable::kFrozenSet:
        if (is_global_op) {
          r.attempt([&] {
            std::vector<Object> items;
            auto item = [&] { items.push_back(r.load<Object>()); };
            auto truncate = [&](size_t n) { items.resize(n); };
            r.read_sequence(Reader::kSet, item, truncate);
            out = callable == Callable::kSet
                      ? Object::set(std::move(items))
                      : Object::frozenset(std::move(items));
          });
        }
        break;
      case Callable::kCodecsEncode:
      case Callable::kBytes:
      case Callable::kByteArray:
        if (is_global_op) {
          auto call = [&] {
            bool is_bytearray = false;
            std::string data = ReadReducedBytes(r, &is_bytearray);
            out = is_bytearray ? Object::bytearray(data) : Object::bytes(data);
          };
          if (callable == Callable::kCodecsEncode) {
            call();
          } else {
            r.attempt(call);
          }
        }
        if (callable == Callable::kCodecsEncode && !out)
          r.fail_type("a global in the form CPython writes");
        break;
      case Callable::kRange:
      case Callable::kSlice:
        r.attempt([&] {
          ReadAnyGlobal(r);
          // The arguments: one tuple, which CPython writes after its items
          // (TUPLE3), and this library inside MARK ... TUPLE.
          Object args = r.load<Object>();
          if (!args.is_tuple()) r.fail_type("a tuple of arguments");
          r.expect(op::kReduce, "REDUCE");
          out = CallBuiltin(callable, args.items());
        });
        break;
      default:
        break;
    }
    if (out) return std::move(*out);
    ReadAnyGlobal(r);
    return Object::builtin_type(BuiltinTypeName(callable));
  }

  // One Object, with the tuples CPython writes after their items (TUPLE1..3)
  // when the items are scalars: a reader that pulls values cannot know that `K1
  // K2 TUPLE2` is one value until it sees the TUPLE2, so it looks ahead over
  // scalars. Other postfix tuples fall back to the Object decoder.
  static Object LoadObject(Reader& r) {
    size_t start = r.offset();
    Object value = LoadPrimary(r);
    for (;;) {
      r.note_memo(start);
      if (r.pos_ == r.end_) return value;
      uint8_t c = r.peek();
      if (c == op::kTuple1) {
        ++r.pos_;
        value = Object::tuple({std::move(value)});
        CheckDepth(value);
        continue;
      }
      const uint8_t* p = r.pos_;
      auto left = static_cast<size_t>(r.end_ - p);
      size_t extra = 0;
      bool found = false;
      while (extra < 2) {
        size_t n = ScalarSize(p, left);
        if (n == 0) break;
        p += n;
        left -= n;
        ++extra;
        if (*p == op::kTuple1 + extra) {
          found = true;
          break;
        }
      }
      if (!found) return value;
      std::vector<Object> items{std::move(value)};
      for (size_t i = 0; i < extra; ++i) items.push_back(r.load<Object>());
      r.expect(static_cast<uint8_t>(op::kTuple1 + extra), "TUPLE2 or TUPLE3");
      value = Object::tuple(std::move(items));
      CheckDepth(value);
    }
  }

  static void CheckDepth(const Object& value) {
    if (ObjectAccess::depth(value) > kMaxDepth) {
      throw UnpicklingError(
          absl::StrCat("the pickle nests deeper than ", kMaxDepth, " levels"));
    }
  }

  static Object LoadPrimary(Reader& r) {
    uint8_t c = r.peek();
    switch (c) {
      case op::kNone:
        r.read_none();
        return Object();
      case op::kNewTrue:
      case op::kNewFalse:
        return Object(r.read_bool());
      case op::kBinInt:
      case op::kBinInt1:
      case op::kBinInt2:
      case op::kLong1:
      case op::kLong4: {
        bool negative;
        absl::uint128 magnitude;
        r.read_int(&negative, &magnitude);
        return Object::from_sign_magnitude(negative, magnitude);
      }
      case op::kBinFloat:
        return Object(r.read_float());
      case op::kShortBinUnicode:
        if (MatchStackGlobal(r, nullptr)) return LoadGlobal(r);
        return Object(r.read_str());
      case op::kBinGet:
      case op::kLongBinGet:  // a global, or its module, read before (load()
                             // checked)
        return LoadGlobal(r);
      case op::kBinUnicode:
      case op::kBinUnicode8:
        return Object(r.read_str());
      case op::kShortBinBytes:
      case op::kBinBytes:
      case op::kBinBytes8:
        return Object::bytes(r.read_bytes());
      case op::kByteArray8:
        return Object::bytearray(r.read_bytes());
      case op::kEmptyTuple:
        ++r.pos_;
        return Object::tuple();
      case op::kEmptyList:
      case op::kEmptySet: {
        std::vector<Object> items;
        auto item = [&] { items.push_back(r.load<Object>()); };
        auto truncate = [&](size_t n) { items.resize(n); };
        r.read_sequence(c == op::kEmptyList ? Reader::kList : Reader::kSet,
                        item, truncate);
        return c == op::kEmptyList ? Object::list(std::move(items))
                                   : Object::set(std::move(items));
      }
      case op::kEmptyDict: {
        std::vector<std::pair<Object, Object>> items;
        auto item = [&] {
          Object k = r.load<Object>();
          items.emplace_back(std::move(k), r.load<Object>());
        };
        auto truncate = [&](size_t n) { items.resize(n); };
        r.read_dict(item, truncate);
        return Object::dict(std::move(items));
      }
      case op::kGlobal:
        return LoadGlobal(r);
      case op::kMark: {
        ++r.pos_;
        std::vector<Object> items;
        for (;;) {
          uint8_t closer = r.peek();
          if (closer == op::kTuple || closer == op::kList ||
              closer == op::kFrozenSet || closer == op::kDict) {
            ++r.pos_;
            if (closer == op::kTuple) return Object::tuple(std::move(items));
            if (closer == op::kList) return Object::list(std::move(items));
            if (closer == op::kFrozenSet)
              return Object::frozenset(std::move(items));
            if (items.size() % 2)
              throw UnpicklingError(
                  "malformed pickle: DICT with an odd number of items");
            std::vector<std::pair<Object, Object>> pairs;
            pairs.reserve(items.size() / 2);
            for (size_t i = 0; i < items.size(); i += 2)
              pairs.emplace_back(items[i], items[i + 1]);
            return Object::dict(std::move(pairs));
          }
          if (!Reader::is_value_start(closer)) r.fail_type("a value");
          items.push_back(r.load<Object>());
        }
      }
      default:
        r.fail_type("a value");
    }
  }
};

}  // namespace internal

// ---------------------------------------------------------------------------------------------------
// Reader

Reader::Reader(std::string_view data, OutOfBand* oob)
    : base_(reinterpret_cast<const uint8_t*>(data.data())),
      pos_(base_),
      end_(base_ + data.size()),
      oob_(oob),
      budget_(data.size() * 16 + (size_t{1} << 16)) {
  if (pos_ != end_ && *pos_ == op::kProto) {
    const uint8_t* p = need(2);
    if (p[1] > kHighestProtocol) {
      throw UnpicklingError(
          absl::StrCat("unsupported pickle protocol: ", p[1]));
    }
  }
}

int Reader::dup_fd(size_t index) const {
  if (oob_ == nullptr) {
    throw UnpicklingError(
        "the pickle carries a file descriptor but loads() was given no "
        "OutOfBand; receive it through a "
        "Connection, which passes them");
  }
  return oob_->dup_fd(index);
}

void Reader::truncated() {
  throw UnpicklingError(
      "pickle data was truncated: the input ends in the middle of a value");
}

void Reader::too_complex() {
  throw UnpicklingError(
      "the pickle expands to too many values when decoded into a C++ type "
      "(shared sub-objects are copied for "
      "every use); decode it as reduction::Object instead");
}

uint8_t Reader::peek_slow() {
  for (;;) {
    if (pos_ == end_) {
      if (replaying_) return 0;
      truncated();
    }
    if (*pos_ != op::kFrame) return *pos_;
    const uint8_t* p = need(9);
    if (internal::LoadLE64(p + 1) > static_cast<uint64_t>(end_ - pos_)) {
      throw UnpicklingError(
          "pickle data was truncated: a frame is longer than the rest of the "
          "input");
    }
  }
}

void Reader::expect(uint8_t want, const char* what) {
  if (peek() != want) {
    throw UnpicklingError(absl::StrCat("malformed pickle: expected ", what,
                                       " at offset ", offset()));
  }
  ++pos_;
}

void Reader::expect_stop() { expect(op::kStop, "STOP after the value"); }

bool Reader::is_value_start(uint8_t c) {
  switch (c) {
    case op::kMark:
    case op::kNone:
    case op::kNewTrue:
    case op::kNewFalse:
    case op::kBinInt:
    case op::kBinInt1:
    case op::kBinInt2:
    case op::kLong1:
    case op::kLong4:
    case op::kBinFloat:
    case op::kShortBinUnicode:
    case op::kBinUnicode:
    case op::kBinUnicode8:
    case op::kShortBinBytes:
    case op::kBinBytes:
    case op::kBinBytes8:
    case op::kByteArray8:
    case op::kEmptyList:
    case op::kEmptyTuple:
    case op::kEmptyDict:
    case op::kEmptySet:
    case op::kGlobal:
    case op::kBinGet:
    case op::kLongBinGet:
      return true;
    default:
      return false;
  }
}

bool Reader::may_be_single_item(uint8_t single) const {
  const uint8_t* p = pos_;
  auto left = static_cast<size_t>(end_ - p);
  // A dict entry is a key and a value before SETITEM; a list item one value
  // before APPEND.
  int values = single == op::kSetItem ? 2 : 1;
  for (int i = 0; i < values; ++i) {
    size_t n = ScalarSize(p, left);
    if (n == 0)
      return true;  // containers and references: only a trial decode can tell
    p += n;
    left -= n;
  }
  // Another value or TUPLE1..3 may make the item a tuple; anything else closes
  // the parent.
  return *p == single || *p == op::kFrame || is_value_start(*p) ||
         (*p >= op::kTuple1 && *p <= op::kTuple3);
}

void Reader::note_memo_slow(size_t start) {
  while (pos_ != end_ && is_memo_op(*pos_)) {
    size_t at = offset();
    uint8_t c = *pos_++;
    size_t index = c == op::kMemoize  ? memo_.size()
                   : c == op::kBinPut ? *need(1)
                                      : internal::LoadLE32(need(4));
    // Nothing can refer to an entry made just before STOP.
    if (replaying_ || (pos_ != end_ && *pos_ == op::kStop)) continue;
    if (index != memo_.size()) {
      throw UnpicklingError(
          "memo indices out of order");  // CPython never does this; the Object
                                         // decoder can
    }
    memo_.push_back({start, at});
  }
}

size_t Reader::memo_pending(size_t start) {
  if (pos_ == end_ || !is_memo_op(*pos_)) return kPending;
  uint8_t c = *pos_++;
  size_t index = c == op::kMemoize  ? memo_.size()
                 : c == op::kBinPut ? *need(1)
                                    : internal::LoadLE32(need(4));
  if (replaying_) return kPending;
  if (index != memo_.size()) throw UnpicklingError("memo indices out of order");
  memo_.push_back({start, kPending});
  return index;
}

namespace {

const char* Describe(uint8_t c) {
  switch (c) {
    case op::kNone:
      return "None";
    case op::kNewTrue:
    case op::kNewFalse:
      return "bool";
    case op::kBinInt:
    case op::kBinInt1:
    case op::kBinInt2:
    case op::kLong1:
    case op::kLong4:
      return "int";
    case op::kBinFloat:
      return "float";
    case op::kShortBinUnicode:
    case op::kBinUnicode:
    case op::kBinUnicode8:
      return "str";
    case op::kShortBinBytes:
    case op::kBinBytes:
    case op::kBinBytes8:
      return "bytes";
    case op::kByteArray8:
      return "bytearray";
    case op::kEmptyList:
      return "list";
    case op::kEmptyTuple:
      return "tuple";
    case op::kEmptyDict:
      return "dict";
    case op::kEmptySet:
      return "set";
    case op::kMark:
      return "a tuple, list, dict or frozenset";
    case op::kGlobal:
      return "a global (a set, bytes, range, slice or type object)";
    case op::kStop:
      return "the end of the value";
    default:
      return nullptr;
  }
}

}  // namespace

void Reader::fail_type(std::string_view expected) {
  std::string got;
  if (pos_ == end_) {
    got = "the end of the data";
  } else if (const char* d = Describe(*pos_)) {
    got = d;
  } else {
    got = absl::StrFormat("opcode 0x%02x", *pos_);
  }
  throw TypeError(absl::StrCat(
      "cannot decode the pickle as the requested C++ type: expected ",
      absl::string_view(expected.data(), expected.size()), ", got ", got));
}

void Reader::read_none() {
  if (peek() != op::kNone) fail_type("None");
  ++pos_;
}

bool Reader::next_is_none() { return peek() == op::kNone; }

bool Reader::read_bool() {
  uint8_t c = peek();
  if (c != op::kNewTrue && c != op::kNewFalse) fail_type("bool");
  ++pos_;
  return c == op::kNewTrue;
}

void Reader::read_int(bool* negative, absl::uint128* magnitude) {
  uint8_t c = peek();
  switch (c) {
    case op::kBinInt1: {
      *negative = false;
      *magnitude = need(2)[1];
      return;
    }
    case op::kBinInt2: {
      *negative = false;
      *magnitude = internal::LoadLE16(need(3) + 1);
      return;
    }
    case op::kBinInt: {
      auto v = static_cast<int32_t>(internal::LoadLE32(need(5) + 1));
      *negative = v < 0;
      *magnitude = v < 0 ? 0 - static_cast<uint64_t>(static_cast<int64_t>(v))
                         : static_cast<uint64_t>(v);
      return;
    }
    case op::kLong1: {
      size_t n = need(2)[1];
      const uint8_t* p = need(n);
      internal::DecodeLong(
          std::string_view(reinterpret_cast<const char*>(p), n), negative,
          magnitude);
      return;
    }
    case op::kLong4: {
      auto n = static_cast<int32_t>(internal::LoadLE32(need(5) + 1));
      if (n < 0) throw UnpicklingError("LONG4 with a negative length");
      const uint8_t* p = need(static_cast<size_t>(n));
      internal::DecodeLong(std::string_view(reinterpret_cast<const char*>(p),
                                            static_cast<size_t>(n)),
                           negative, magnitude);
      return;
    }
    default:
      fail_type("int");
  }
}

absl::int128 Reader::read_int128() {
  bool negative;
  absl::uint128 magnitude;
  read_int(&negative, &magnitude);
  return Object::from_sign_magnitude(negative, magnitude).as_int128();
}

absl::uint128 Reader::read_uint128() {
  bool negative;
  absl::uint128 magnitude;
  read_int(&negative, &magnitude);
  return Object::from_sign_magnitude(negative, magnitude).as_uint128();
}

double Reader::read_float() {
  uint8_t c = peek();
  if (c == op::kBinFloat) return internal::LoadBE64Double(need(9) + 1);
  if (c == op::kBinInt1 || c == op::kBinInt2 || c == op::kBinInt ||
      c == op::kLong1 || c == op::kLong4) {
    bool negative;
    absl::uint128 magnitude;
    read_int(&negative, &magnitude);
    return Object::from_sign_magnitude(negative, magnitude).as_float();
  }
  fail_type("float");
}

std::string Reader::read_str() {
  uint8_t c = peek();
  size_t n;
  if (c == op::kShortBinUnicode) {
    n = need(2)[1];
  } else if (c == op::kBinUnicode) {
    n = internal::LoadLE32(need(5) + 1);
  } else if (c == op::kBinUnicode8) {
    uint64_t n64 = internal::LoadLE64(need(9) + 1);
    if (n64 > static_cast<uint64_t>(end_ - pos_)) truncated();
    n = static_cast<size_t>(n64);
  } else {
    fail_type("str");
  }
  const char* p = reinterpret_cast<const char*>(need(n));
  std::string_view text(p, n);
  internal::CheckUtf8(text);
  return std::string(text);
}

std::string Reader::read_bytes() {
  uint8_t c = peek();
  size_t n;
  if (c == op::kShortBinBytes) {
    n = need(2)[1];
  } else if (c == op::kBinBytes) {
    n = internal::LoadLE32(need(5) + 1);
  } else if (c == op::kBinBytes8 || c == op::kByteArray8) {
    uint64_t n64 = internal::LoadLE64(need(9) + 1);
    if (n64 > static_cast<uint64_t>(end_ - pos_)) truncated();
    n = static_cast<size_t>(n64);
  } else if (c == op::kGlobal) {
    return internal::ReaderAccess::ReadReducedBytes(*this, nullptr);
  } else {
    fail_type("bytes");
  }
  return std::string(reinterpret_cast<const char*>(need(n)), n);
}

Callable Reader::read_global() {
  size_t start = offset();
  ++pos_;  // GLOBAL
  std::string_view parts[2];
  for (auto& part : parts) {
    size_t limit = std::min<size_t>(static_cast<size_t>(end_ - pos_), 256);
    const void* nl = std::memchr(pos_, '\n', limit);
    if (nl == nullptr) {
      if (limit < 256) truncated();
      throw UnpicklingError(
          "malformed pickle: a GLOBAL name is longer than 255 characters");
    }
    auto len = static_cast<size_t>(static_cast<const uint8_t*>(nl) - pos_);
    part = std::string_view(reinterpret_cast<const char*>(pos_), len);
    pos_ += len + 1;
  }
  Callable callable = internal::ResolveGlobal(parts[0], parts[1]);
  note_memo(start);
  return callable;
}

bool Reader::global_follows() {
  using internal::ReaderAccess;
  Callable callable;
  size_t size;
  return ReaderAccess::MatchStackGlobal(*this, nullptr) ||
         ReaderAccess::GlobalRefAt(*this, &callable, &size);
}

Object Pickler<Object>::Load(Reader& r) {
  return internal::ReaderAccess::LoadObject(r);
}

Range Pickler<Range>::Load(Reader& r) {
  Object o = r.load<Object>();
  if (!o.is_range())
    throw TypeError(absl::StrCat("expected range, got ", o.type_name()));
  return o.as_range();
}

Slice Pickler<Slice>::Load(Reader& r) {
  Object o = r.load<Object>();
  if (!o.is_slice())
    throw TypeError(absl::StrCat("expected slice, got ", o.type_name()));
  return o.as_slice();
}

}  // namespace multiprocessing::reduction
