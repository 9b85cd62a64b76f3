// The Writer, dumps()'s out-of-line path for a str, and Pickler<Object>::Save
// (which keeps a memo of shared sub-objects in the Writer's state).
#include "reduction/writer.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
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
struct WriterState {
  absl::flat_hash_map<const void*, uint32_t>
      memo;  // shared Object contents already written
  uint32_t depth = 0;
};
}  // namespace internal

Writer::Writer(int protocol, OutOfBand* oob, size_t size_hint)
    : Writer(protocol, oob, std::string()) {
  // At least the string's inline capacity: small pickles need no allocation
  // before finish().
  if (size_hint > buf_.size()) buf_.resize(size_hint);
}

Writer::Writer(int protocol, OutOfBand* oob, std::string&& buffer)
    : buf_(std::move(buffer)), protocol_(protocol), oob_(oob) {
  if (protocol < 2 || protocol > kHighestProtocol) {
    throw ValueError(absl::StrCat("pickle protocol ", protocol,
                                  " is not supported; use 2 to 5"));
  }
  // All of the buffer's memory is room to write in.
  buf_.resize(std::max<size_t>(buf_.capacity(), 15));
  buf_[0] = static_cast<char>(op::kProto);
  buf_[1] = static_cast<char>(protocol);
  len_ = 2;
  if (protocol >= 4) {
    buf_[2] = static_cast<char>(op::kFrame);  // length filled in by finish()
    len_ = 11;
  }
}

Writer::~Writer() = default;

internal::WriterState& Writer::state() {
  if (!state_) state_ = std::make_unique<internal::WriterState>();
  return *state_;
}

void Writer::grow(size_t n) {
  buf_.resize(std::max(len_ + n + 16, buf_.size() * 2));
}

size_t Writer::add_fd(int fd) {
  if (oob_ == nullptr) {
    throw PicklingError(
        "this value carries a file descriptor, which pickle bytes alone "
        "cannot; pass an OutOfBand to dumps() "
        "(Connection.send does)");
  }
  return oob_->add_dup(fd);
}

void Writer::write_int(absl::int128 v) {
  bool negative = v < 0;
  auto magnitude = static_cast<absl::uint128>(v);
  if (negative) magnitude = -magnitude;
  write_long(negative, magnitude);
}

void Writer::write_int_slow(bool negative, uint64_t magnitude) {
  write_long(negative, magnitude);
}

void Writer::write_long(bool negative, absl::uint128 magnitude) {
  if (absl::Uint128High64(magnitude) == 0) {
    uint64_t m = absl::Uint128Low64(magnitude);
    if (!negative && m <= 0x7FFFFFFF) return write_int(static_cast<int64_t>(m));
    if (negative && m <= 0x80000000) return write_int(-static_cast<int64_t>(m));
  }
  std::string bytes;
  internal::EncodeLong(negative, magnitude, &bytes);
  char* p = room(2 + bytes.size());
  p[0] = static_cast<char>(op::kLong1);
  p[1] = static_cast<char>(bytes.size());
  std::memcpy(p + 2, bytes.data(), bytes.size());
  len_ += 2 + bytes.size();
}

void Writer::write_float(double v) {
  char* p = room(9);
  p[0] = static_cast<char>(op::kBinFloat);
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  bits = __builtin_bswap64(bits);
  std::memcpy(p + 1, &bits, 8);
  len_ += 9;
}

void Writer::write_sized(uint8_t op1, uint8_t op4, uint8_t op8,
                         std::string_view data) {
  size_t n = data.size();
  char* p = room(9 + n);
  size_t header;
  if (op1 != 0 && n < 256) {
    p[0] = static_cast<char>(op1);
    p[1] = static_cast<char>(n);
    header = 2;
  } else if (n <= 0xFFFFFFFFu) {
    p[0] = static_cast<char>(op4);
    auto n32 = static_cast<uint32_t>(n);
    std::memcpy(p + 1, &n32, 4);
    header = 5;
  } else if (op8 != 0) {
    p[0] = static_cast<char>(op8);
    uint64_t n64 = n;
    std::memcpy(p + 1, &n64, 8);
    header = 9;
  } else {
    throw PicklingError(absl::StrCat(
        "a value of ", n, " bytes needs pickle protocol 4 or higher"));
  }
  if (n) std::memcpy(p + header, data.data(), n);
  len_ += header + n;
}

namespace internal {

std::string DumpsStr(const std::string& text, OutOfBand* oob, int protocol) {
  // Text up to this size is encoded on the stack, checked while it is copied
  // there, and copied once into a string made at its size; a string that is
  // filled in place is zeroed first, a pass more.
  constexpr size_t kOnStack = 2048;
  size_t n = text.size();
  if (n <= kOnStack) {
    char buf[FastDumpsStrSize(kOnStack)];
    if (char* end = FastDumpsStrTo(buf, text, protocol))
      return std::string(buf, static_cast<size_t>(end - buf));
  } else if (CanFastDumpsStr(text, protocol)) {
    char head[16];
    char* end = FastDumpsStrHead(head, n, protocol);
    std::string out;
    out.reserve(FastDumpsStrSize(n));
    out.append(head, static_cast<size_t>(end - head));
    out.append(text);
    out.push_back(static_cast<char>(op::kStop));
    return out;
  }
  Writer w(protocol, oob, SizeHint(text));
  w.save(text);
  return w.finish();
}

}  // namespace internal

void Writer::write_str(std::string_view utf8) {
  if (!internal::IsPickleUtf8(utf8)) {
    throw PicklingError(
        "a str must be valid UTF-8; send binary data as reduction::Bytes");
  }
  bool v4 = protocol_ >= 4;
  write_sized(v4 ? op::kShortBinUnicode : 0, op::kBinUnicode,
              v4 ? op::kBinUnicode8 : 0, utf8);
}

void Writer::write_global(std::string_view module, std::string_view name) {
  if (protocol_ < 3 && module == "builtins") module = "__builtin__";
  char* p = room(3 + module.size() + name.size());
  *p++ = static_cast<char>(op::kGlobal);
  std::memcpy(p, module.data(), module.size());
  p += module.size();
  *p++ = '\n';
  std::memcpy(p, name.data(), name.size());
  p[name.size()] = '\n';
  len_ += 3 + module.size() + name.size();
}

void Writer::write_builtin_global(Callable c) {
  if (protocol_ < 4) {
    write_global("builtins", protocol_ < 3 ? internal::Python2TypeName(c)
                                           : internal::BuiltinTypeName(c));
    return;
  }
  // As CPython: SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE name,
  // STACK_GLOBAL (without the memo entries, which nothing refers to).
  std::string_view name = internal::BuiltinTypeName(c);
  char* p = room(13 + name.size());
  p[0] = static_cast<char>(op::kShortBinUnicode);
  p[1] = 8;
  std::memcpy(p + 2, "builtins", 8);
  p[10] = static_cast<char>(op::kShortBinUnicode);
  p[11] = static_cast<char>(name.size());
  std::memcpy(p + 12, name.data(), name.size());
  p[12 + name.size()] = static_cast<char>(op::kStackGlobal);
  len_ += 13 + name.size();
}

void Writer::write_builtin_type(std::string_view name) {
  std::optional<Callable> c = internal::BuiltinTypeByName(name);
  if (!c) {
    throw PicklingError(absl::StrCat(
        "'", absl::string_view(name.data(), std::min<size_t>(name.size(), 100)),
        "' is not a built-in type this library pickles"));
  }
  write_builtin_global(*c);
}

void Writer::begin_call(std::string_view name) {
  std::optional<Callable> c = internal::BuiltinTypeByName(name);
  if (!c || (*c != Callable::kBytes && *c != Callable::kByteArray &&
             *c != Callable::kSet && *c != Callable::kFrozenSet &&
             *c != Callable::kRange && *c != Callable::kSlice)) {
    throw PicklingError(absl::StrCat(
        "cannot pickle a call of '",
        absl::string_view(name.data(), std::min<size_t>(name.size(), 100)),
        "': only bytes, bytearray, set, frozenset, range and slice"));
  }
  write_builtin_global(*c);
  put(op::kMark);
}

void Writer::end_call() {
  put(op::kTuple);
  put(op::kReduce);
}

void Writer::write_range(const Range& r) {
  if (r.step == 0) throw PicklingError("range() with a step of 0");
  begin_call("range");
  write_int(r.start);
  write_int(r.stop);
  write_int(r.step);
  end_call();
}

void Writer::write_bytes(std::string_view data) {
  if (protocol_ >= 3) {
    write_sized(op::kShortBinBytes, op::kBinBytes,
                protocol_ >= 4 ? op::kBinBytes8 : 0, data);
    return;
  }
  // Protocol 2 has no bytes type: CPython writes _codecs.encode(data as latin-1
  // text, 'latin1').
  if (data.empty()) {
    write_global("builtins", "bytes");
    put(op::kEmptyTuple);
  } else {
    write_global("_codecs", "encode");
    put(op::kMark);
    write_str(internal::Utf8FromLatin1(data));
    write_str("latin1");
    put(op::kTuple);
  }
  put(op::kReduce);
}

void Writer::write_bytearray(std::string_view data) {
  if (protocol_ >= 5) {
    char* p = room(9 + data.size());
    p[0] = static_cast<char>(op::kByteArray8);
    uint64_t n = data.size();
    std::memcpy(p + 1, &n, 8);
    if (!data.empty()) std::memcpy(p + 9, data.data(), data.size());
    len_ += 9 + data.size();
    return;
  }
  write_global("builtins", "bytearray");
  put(op::kMark);
  write_bytes(data);
  put(op::kTuple);
  put(op::kReduce);
}

// Sets are written as set([items]) in every protocol: unlike EMPTY_SET +
// ADDITEMS it cannot be confused with what follows it, and CPython reads it in
// all of them.
void Writer::begin_set() {
  write_global("builtins", "set");
  put(op::kMark);
  put(op::kMark);
}

void Writer::end_set() {
  put(op::kList);
  put(op::kTuple);
  put(op::kReduce);
}

void Writer::begin_frozenset() {
  if (protocol_ >= 4) {
    put(op::kMark);
  } else {
    write_global("builtins", "frozenset");
    put(op::kMark);
    put(op::kMark);
  }
}

void Writer::end_frozenset() {
  if (protocol_ >= 4) {
    put(op::kFrozenSet);
  } else {
    end_set();
  }
}

uint32_t Writer::memoize() {
  uint32_t index = memo_count_++;
  if (protocol_ >= 4) {
    put(op::kMemoize);
  } else if (index < 256) {
    put(op::kBinPut);
    put(static_cast<uint8_t>(index));
  } else {
    char* p = room(5);
    p[0] = static_cast<char>(op::kLongBinPut);
    std::memcpy(p + 1, &index, 4);
    len_ += 5;
  }
  return index;
}

void Writer::write_get(uint32_t index) {
  if (index < 256) {
    put(op::kBinGet);
    put(static_cast<uint8_t>(index));
  } else {
    char* p = room(5);
    p[0] = static_cast<char>(op::kLongBinGet);
    std::memcpy(p + 1, &index, 4);
    len_ += 5;
  }
}

std::string Writer::finish() {
  put(op::kStop);
  if (protocol_ >= 4) {
    uint64_t payload = len_ - 11;
    if (payload >= 4) {
      std::memcpy(&buf_[3], &payload, 8);
    } else {
      buf_.erase(2, 9);  // CPython does not frame tiny pickles
      len_ -= 9;
    }
  }
  buf_.resize(len_);
  return std::move(buf_);
}

void Pickler<Slice>::Save(Writer& w, const Slice& v) {
  w.begin_call("slice");
  for (const std::optional<int64_t>* m : {&v.start, &v.stop, &v.step}) {
    if (*m) {
      w.write_int(**m);
    } else {
      w.write_none();
    }
  }
  w.end_call();
}

namespace {

void SaveObject(Writer& w, const Object& o, internal::WriterState& st) {
  using T = Object::Type;
  const std::shared_ptr<void>& node = internal::ObjectAccess::node(o);
  bool shared = node != nullptr && node.use_count() > 1;
  if (shared) {
    auto it = st.memo.find(node.get());
    if (it != st.memo.end()) {
      w.write_get(it->second);
      return;
    }
  }
  if (++st.depth > kMaxDepth) {
    throw PicklingError(
        absl::StrCat("the value nests deeper than ", kMaxDepth, " levels"));
  }
  switch (o.type()) {
    case T::kNone:
      w.write_none();
      break;
    case T::kBool:
      w.write_bool(o.as_bool());
      break;
    case T::kInt:
      w.write_long(o.int_negative(), o.int_magnitude());
      break;
    case T::kFloat:
      w.write_float(o.as_float());
      break;
    case T::kStr:
      w.write_str(o.as_str());
      break;
    case T::kBytes:
      w.write_bytes(o.as_bytes());
      break;
    case T::kByteArray:
      w.write_bytearray(o.as_bytes());
      break;
    case T::kList:
      w.begin_list();
      for (const Object& x : o.items()) SaveObject(w, x, st);
      w.end_list();
      break;
    case T::kTuple:
      w.begin_tuple();
      for (const Object& x : o.items()) SaveObject(w, x, st);
      w.end_tuple();
      break;
    case T::kDict: {
      w.begin_dict();
      const auto& keys = o.keys();
      const auto& values = o.values();
      for (size_t i = 0; i < keys.size(); ++i) {
        SaveObject(w, keys[i], st);
        SaveObject(w, values[i], st);
      }
      w.end_dict();
      break;
    }
    case T::kSet:
      w.begin_set();
      for (const Object& x : o.items()) SaveObject(w, x, st);
      w.end_set();
      break;
    case T::kFrozenSet:
      w.begin_frozenset();
      for (const Object& x : o.items()) SaveObject(w, x, st);
      w.end_frozenset();
      break;
    case T::kType:
      w.write_builtin_type(o.type_object_name());
      break;
    case T::kRange:
      w.write_range(o.as_range());
      break;
    case T::kSlice:
      w.begin_call("slice");
      SaveObject(w, o.slice_start(), st);
      SaveObject(w, o.slice_stop(), st);
      SaveObject(w, o.slice_step(), st);
      w.end_call();
      break;
  }
  --st.depth;
  if (shared) st.memo.emplace(node.get(), w.memoize());
}

}  // namespace

void Pickler<Object>::Save(Writer& w, const Object& v) {
  SaveObject(w, v, w.state());
}

}  // namespace multiprocessing::reduction
