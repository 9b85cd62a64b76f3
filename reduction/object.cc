#include "reduction/object.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "reduction/internal/globals.h"
#include "reduction/internal/object_nodes.h"
#include "reduction/internal/utf8.h"
#include "reduction/internal/wire.h"

namespace multiprocessing::reduction {

using internal::ContainerBase;
using internal::ObjectAccess;
using internal::SeqNode;
using internal::SliceNode;
using internal::StrNode;
using internal::TableNode;

namespace internal {

bool IsContainer(Object::Type type) {
  switch (type) {
    case Object::Type::kList:
    case Object::Type::kTuple:
    case Object::Type::kDict:
    case Object::Type::kSet:
    case Object::Type::kFrozenSet:
      return true;
    default:
      return false;
  }
}

ContainerBase* ObjectAccess::container(const Object& o) {
  switch (o.type()) {
    case Object::Type::kList:
    case Object::Type::kTuple:
      return &seq(o);
    case Object::Type::kDict:
    case Object::Type::kSet:
    case Object::Type::kFrozenSet:
      return &table(o);
    default:
      return nullptr;
  }
}

void TableNode::Insert(Object key, Object value, bool is_dict) {
  key.hash();  // throws TypeError for unhashable keys before anything changes
  auto [it, inserted] =
      index.try_emplace(key, static_cast<uint32_t>(keys.size()));
  if (!inserted) {
    if (is_dict) values[it->second] = std::move(value);
    return;
  }
  depth = std::max(depth, ObjectAccess::depth(key) + 1);
  keys.push_back(std::move(key));
  if (is_dict) {
    depth = std::max(depth, ObjectAccess::depth(value) + 1);
    values.push_back(std::move(value));
  }
}

bool TableNode::Erase(const Object& key, bool is_dict) {
  auto it = index.find(key);
  if (it == index.end()) return false;
  uint32_t pos = it->second;
  index.erase(it);
  keys.erase(keys.begin() + pos);
  if (is_dict) values.erase(values.begin() + pos);
  for (auto& [k, i] : index) {
    if (i > pos) --i;
  }
  return true;
}

const Object* TableNode::Find(const Object& key) const {
  auto it = index.find(key);
  return it == index.end() ? nullptr : &keys[it->second];
}

}  // namespace internal

// ---------------------------------------------------------------------------------------------------
// Range and Slice

uint64_t Range::length() const noexcept {
  if (step > 0 && start < stop) {
    uint64_t span = static_cast<uint64_t>(stop) - static_cast<uint64_t>(start);
    return (span - 1) / static_cast<uint64_t>(step) + 1;
  }
  if (step < 0 && start > stop) {
    uint64_t span = static_cast<uint64_t>(start) - static_cast<uint64_t>(stop);
    return (span - 1) / (0 - static_cast<uint64_t>(step)) + 1;
  }
  return 0;
}

int64_t Range::at(int64_t index) const {
  absl::int128 n = length();
  absl::int128 i = index < 0 ? n + index : absl::int128(index);
  if (i < 0 || i >= n) throw IndexError("range object index out of range");
  return static_cast<int64_t>(start + i * step);
}

bool Range::contains(int64_t value) const noexcept {
  absl::int128 v = value;
  if (step > 0) {
    return start <= value && value < stop && (v - start) % step == 0;
  }
  if (step < 0) {
    return stop < value && value <= start &&
           (absl::int128(start) - v) % step == 0;
  }
  return false;
}

bool operator==(const Range& a, const Range& b) noexcept {
  uint64_t n = a.length();
  if (n != b.length()) return false;
  if (n == 0) return true;
  if (a.start != b.start) return false;
  return n == 1 || a.step == b.step;
}

Slice::Indices Slice::indices(size_t length) const {
  int64_t st = step.value_or(1);
  if (st == 0) throw ValueError("slice step cannot be zero");
  if (st < -std::numeric_limits<int64_t>::max())
    st = -std::numeric_limits<int64_t>::max();
  auto len = static_cast<int64_t>(
      std::min<size_t>(length, std::numeric_limits<int64_t>::max()));
  auto adjust = [&](const std::optional<int64_t>& v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) {
      x = x < -len ? (st < 0 ? -1 : 0) : x + len;
    } else if (x >= len) {
      x = st < 0 ? len - 1 : len;
    }
    return x;
  };
  Indices out;
  out.step = st;
  out.start = adjust(start, st < 0 ? len - 1 : 0);
  out.stop = adjust(stop, st < 0 ? -1 : len);
  out.count =
      static_cast<size_t>(Range{out.start, out.stop, out.step}.length());
  return out;
}

namespace {

constexpr uint64_t kHashModulus =
    (uint64_t{1} << 61) - 1;  // CPython's _PyHASH_MODULUS
constexpr int kHashBits = 61;

absl::uint128 Magnitude(uint64_t hi, uint64_t lo) {
  return absl::MakeUint128(hi, lo);
}

int64_t FixHash(int64_t h) { return h == -1 ? -2 : h; }

// CPython's long_hash for sign and magnitude.
int64_t IntHash(bool negative, absl::uint128 magnitude) {
  auto h =
      static_cast<int64_t>(static_cast<uint64_t>(magnitude % kHashModulus));
  return FixHash(negative ? -h : h);
}

// CPython's _Py_HashDouble (NaN hashes to 0, as before 3.10).
int64_t FloatHash(double v) {
  if (!std::isfinite(v)) {
    if (std::isinf(v)) return v > 0 ? 314159 : -314159;
    return 0;
  }
  int e;
  double m = std::frexp(v, &e);
  int sign = 1;
  if (m < 0) {
    sign = -1;
    m = -m;
  }
  uint64_t x = 0;
  while (m != 0) {
    x = ((x << 28) & kHashModulus) | x >> (kHashBits - 28);
    m *= 268435456.0;
    e -= 28;
    auto y = static_cast<uint64_t>(m);
    m -= static_cast<double>(y);
    x += y;
    if (x >= kHashModulus) x -= kHashModulus;
  }
  e = e >= 0 ? e % kHashBits : kHashBits - 1 - ((-1 - e) % kHashBits);
  x = ((x << e) & kHashModulus) | x >> (kHashBits - e);
  auto h = static_cast<int64_t>(x) * sign;
  return FixHash(h);
}

bool IsNumeric(Object::Type t) {
  return t == Object::Type::kBool || t == Object::Type::kInt ||
         t == Object::Type::kFloat;
}

// Exact comparison of an int with a float, as Python does it.
bool IntEqualsFloat(bool negative, absl::uint128 magnitude, double f) {
  if (!std::isfinite(f) || std::trunc(f) != f) return false;
  if ((f < 0) != negative && !(f == 0 && magnitude == 0)) return false;
  double a = std::fabs(f);
  if (a >= 0x1p128) return false;
  return absl::uint128(a) == magnitude;
}

[[noreturn]] void WrongType(const Object& o, const char* wanted) {
  throw TypeError(
      absl::StrCat("expected ", wanted, ", got '", o.type_name(), "'"));
}

std::shared_ptr<void> NewStr(std::string data) {
  auto node = std::make_shared<StrNode>();
  node->data = std::move(data);
  return node;
}

Object MakeSeq(Object::Type type, std::vector<Object> items) {
  auto node = std::make_shared<SeqNode>();
  for (const Object& item : items)
    node->depth = std::max(node->depth, ObjectAccess::depth(item) + 1);
  node->items = std::move(items);
  return ObjectAccess::Make(type, std::move(node));
}

// Bytes of a str as code points; invalid sequences yield each byte as
// U+DC80..U+DCFF (never in valid pickled text) so that repr() shows them.
template <class F>
void ForEachCodePoint(std::string_view s, F&& f) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F;
      n = 2;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F;
      n = 3;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07;
      n = 4;
    } else {
      f(0xDC00u + c);
      ++i;
      continue;
    }
    bool ok = i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      f(0xDC00u + c);
      ++i;
      continue;
    }
    f(cp);
    i += n;
  }
}

struct CodePointRange {
  uint32_t lo, hi;
};
constexpr CodePointRange kNonPrintable[] = {
#include "reduction/internal/unicode_nonprintable.inc"
};

bool IsPrintable(uint32_t cp) {
  if (cp >= 0x20 && cp < 0x7F) return true;
  auto it = std::upper_bound(
      std::begin(kNonPrintable), std::end(kNonPrintable), cp,
      [](uint32_t v, const CodePointRange& r) { return v < r.lo; });
  if (it == std::begin(kNonPrintable)) return true;
  --it;
  return cp > it->hi;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void AppendHex(std::string& out, uint32_t v, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out += kHex[(v >> (4 * i)) & 0xF];
}

void StrRepr(std::string& out, std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  out += quote;
  ForEachCodePoint(s, [&](uint32_t cp) {
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (IsPrintable(cp)) {
      AppendUtf8(out, cp);
    } else if (cp < 0x100) {
      out += "\\x";
      AppendHex(out, cp, 2);
    } else if (cp < 0x10000) {
      out += "\\u";
      AppendHex(out, cp, 4);
    } else {
      out += "\\U";
      AppendHex(out, cp, 8);
    }
  });
  out += quote;
}

// CPython's bytearray repr escapes every single quote, even inside double
// quotes; bytes escapes only the quote it uses.
void BytesRepr(std::string& out, std::string_view s,
               bool is_bytearray = false) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  out += 'b';
  out += quote;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == static_cast<unsigned char>(quote) || c == '\\' ||
        (is_bytearray && c == '\'')) {
      out += '\\';
      out += ch;
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7F) {
      out += "\\x";
      AppendHex(out, c, 2);
    } else {
      out += ch;
    }
  }
  out += quote;
}

void UInt128Decimal(std::string& out, absl::uint128 v) {
  char buf[40];
  int n = 0;
  do {
    buf[n++] = static_cast<char>(
        '0' + static_cast<int>(static_cast<uint64_t>(v % 10)));
    v /= 10;
  } while (v != 0);
  while (n > 0) out += buf[--n];
}

void FloatRepr(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "nan";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "inf" : "-inf";
    return;
  }
  char buf[64];
  auto res =
      std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, res.ptr - buf);
  if (!sci.empty() && sci[0] == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits += c;
  }
  int exp10 = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+' ? 1 : 0),
                  sci.data() + sci.size(), exp10);
  int decpt = exp10 + 1;
  auto n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out += digits[0];
    if (n > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += 'e';
    out += exp10 < 0 ? '-' : '+';
    int a = exp10 < 0 ? -exp10 : exp10;
    if (a < 10) out += '0';
    out += std::to_string(a);
  } else if (decpt <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-decpt), '0');
    out += digits;
  } else if (decpt >= n) {
    out += digits;
    out.append(static_cast<size_t>(decpt - n), '0');
    out += ".0";
  } else {
    out.append(digits, 0, static_cast<size_t>(decpt));
    out += '.';
    out.append(digits, static_cast<size_t>(decpt));
  }
}

void Repr(std::string& out, const Object& o);

void ReprItems(std::string& out, const std::vector<Object>& items) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    Repr(out, items[i]);
  }
}

void Repr(std::string& out, const Object& o) {
  switch (o.type()) {
    case Object::Type::kNone:
      out += "None";
      return;
    case Object::Type::kBool:
      out += o.as_bool() ? "True" : "False";
      return;
    case Object::Type::kInt:
      if (o.int_negative()) out += '-';
      UInt128Decimal(out, o.int_magnitude());
      return;
    case Object::Type::kFloat:
      FloatRepr(out, o.as_float());
      return;
    case Object::Type::kStr:
      StrRepr(out, o.as_str());
      return;
    case Object::Type::kBytes:
      BytesRepr(out, o.as_bytes());
      return;
    case Object::Type::kByteArray:
      out += "bytearray(";
      BytesRepr(out, o.as_bytes(), /*is_bytearray=*/true);
      out += ')';
      return;
    case Object::Type::kList:
      out += '[';
      ReprItems(out, o.items());
      out += ']';
      return;
    case Object::Type::kTuple:
      out += '(';
      ReprItems(out, o.items());
      if (o.items().size() == 1) out += ',';
      out += ')';
      return;
    case Object::Type::kDict: {
      out += '{';
      const auto& t = ObjectAccess::table(o);
      for (size_t i = 0; i < t.keys.size(); ++i) {
        if (i) out += ", ";
        Repr(out, t.keys[i]);
        out += ": ";
        Repr(out, t.values[i]);
      }
      out += '}';
      return;
    }
    case Object::Type::kSet:
    case Object::Type::kFrozenSet: {
      bool frozen = o.is_frozenset();
      const auto& keys = o.items();
      if (keys.empty()) {
        out += frozen ? "frozenset()" : "set()";
        return;
      }
      if (frozen) out += "frozenset(";
      out += '{';
      ReprItems(out, keys);
      out += '}';
      if (frozen) out += ')';
      return;
    }
    case Object::Type::kType:
      out += "<class '";
      out += o.type_object_name();
      out += "'>";
      return;
    case Object::Type::kRange: {
      const Range& r = ObjectAccess::range(o);
      absl::StrAppend(&out, "range(", r.start, ", ", r.stop);
      if (r.step != 1) absl::StrAppend(&out, ", ", r.step);
      out += ')';
      return;
    }
    case Object::Type::kSlice: {
      const SliceNode& n = ObjectAccess::slice(o);
      out += "slice(";
      Repr(out, n.start);
      out += ", ";
      Repr(out, n.stop);
      out += ", ";
      Repr(out, n.step);
      out += ')';
      return;
    }
  }
}

}  // namespace

Object::Object(absl::int128 value) noexcept : type_(Type::kInt) {
  negative_ = value < 0;
  absl::uint128 m = static_cast<absl::uint128>(value);
  if (negative_) m = -m;
  lo_ = absl::Uint128Low64(m);
  hi_ = absl::Uint128High64(m);
}

Object::Object(absl::uint128 value) noexcept : type_(Type::kInt) {
  lo_ = absl::Uint128Low64(value);
  hi_ = absl::Uint128High64(value);
}

Object::Object(const char* utf8) : Object(std::string(utf8)) {}
Object::Object(std::string_view utf8) : Object(std::string(utf8)) {}
Object::Object(std::string utf8)
    : type_(Type::kStr), node_(NewStr(std::move(utf8))) {}

Object Object::bytes(std::string_view data) {
  return ObjectAccess::Make(Type::kBytes, NewStr(std::string(data)));
}
Object Object::bytearray(std::string_view data) {
  return ObjectAccess::Make(Type::kByteArray, NewStr(std::string(data)));
}
Object Object::list(std::vector<Object> items) {
  return MakeSeq(Type::kList, std::move(items));
}
Object Object::tuple(std::vector<Object> items) {
  return MakeSeq(Type::kTuple, std::move(items));
}

Object Object::dict(std::vector<std::pair<Object, Object>> items) {
  auto node = std::make_shared<TableNode>();
  for (auto& [k, v] : items)
    node->Insert(std::move(k), std::move(v), /*is_dict=*/true);
  return ObjectAccess::Make(Type::kDict, std::move(node));
}

Object Object::set(std::vector<Object> items) {
  auto node = std::make_shared<TableNode>();
  for (auto& k : items) node->Insert(std::move(k), Object(), /*is_dict=*/false);
  return ObjectAccess::Make(Type::kSet, std::move(node));
}

Object Object::frozenset(std::vector<Object> items) {
  Object o = set(std::move(items));
  o.type_ = Type::kFrozenSet;
  return o;
}

Object Object::builtin_type(std::string_view name) {
  std::optional<internal::Callable> c = internal::BuiltinTypeByName(name);
  if (!c) {
    throw ValueError(absl::StrCat(
        "'", absl::string_view(name.data(), std::min<size_t>(name.size(), 100)),
        "' is not one of the built-in types an Object can hold (int, float, "
        "str, bytes, bytearray, bool, list, tuple, dict, set, frozenset, "
        "complex, object, type, range, slice)"));
  }
  Object o;
  o.type_ = Type::kType;
  o.lo_ = static_cast<uint64_t>(*c);
  return o;
}

Object Object::range(int64_t stop) { return range(Range{0, stop, 1}); }
Object Object::range(int64_t start, int64_t stop, int64_t step) {
  return range(Range{start, stop, step});
}
Object Object::range(const Range& r) {
  if (r.step == 0) throw ValueError("range() arg 3 must not be zero");
  return ObjectAccess::Make(Type::kRange, std::make_shared<Range>(r));
}

Object Object::slice(Object start, Object stop, Object step) {
  for (const Object* m : {&start, &stop, &step}) {
    if (!m->is_none() && !m->is_int() && !m->is_bool()) {
      throw TypeError(absl::StrCat("slice members must be None or int, not '",
                                   m->type_name(), "'"));
    }
  }
  auto node = std::make_shared<SliceNode>();
  node->start = std::move(start);
  node->stop = std::move(stop);
  node->step = std::move(step);
  return ObjectAccess::Make(Type::kSlice, std::move(node));
}

const char* Object::type_object_name() const {
  if (type_ != Type::kType) WrongType(*this, "a type object");
  return internal::BuiltinTypeName(static_cast<internal::Callable>(lo_));
}

Range Object::as_range() const {
  if (type_ != Type::kRange) WrongType(*this, "range");
  return ObjectAccess::range(*this);
}

const Object& Object::slice_start() const {
  if (type_ != Type::kSlice) WrongType(*this, "slice");
  return ObjectAccess::slice(*this).start;
}
const Object& Object::slice_stop() const {
  if (type_ != Type::kSlice) WrongType(*this, "slice");
  return ObjectAccess::slice(*this).stop;
}
const Object& Object::slice_step() const {
  if (type_ != Type::kSlice) WrongType(*this, "slice");
  return ObjectAccess::slice(*this).step;
}

Slice Object::as_slice() const {
  if (type_ != Type::kSlice) WrongType(*this, "slice");
  const SliceNode& n = ObjectAccess::slice(*this);
  auto clamp = [](const Object& m) -> std::optional<int64_t> {
    if (m.is_none()) return std::nullopt;
    absl::uint128 mag = m.int_magnitude();
    constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
    if (m.int_negative()) {
      return mag > kMax ? std::numeric_limits<int64_t>::min()
                        : -static_cast<int64_t>(static_cast<uint64_t>(mag));
    }
    return mag > kMax ? std::numeric_limits<int64_t>::max()
                      : static_cast<int64_t>(static_cast<uint64_t>(mag));
  };
  return Slice{clamp(n.start), clamp(n.stop), clamp(n.step)};
}

Object Object::to_list(size_t max_items) const {
  auto check = [&](uint64_t n) {
    if (n > max_items) {
      throw MemoryError(absl::StrCat("list() of a ", type_name(), " of ", n,
                                     " items is larger than the limit of ",
                                     max_items));
    }
  };
  switch (type_) {
    case Type::kRange: {
      Range r = ObjectAccess::range(*this);
      check(r.length());
      std::vector<Object> items;
      items.reserve(static_cast<size_t>(r.length()));
      for (int64_t v : r) items.emplace_back(v);
      return list(std::move(items));
    }
    case Type::kDict:
      check(keys().size());
      return list(keys());
    default:
      check(items().size());
      return list(items());
  }
}

Object Object::from_sign_magnitude(bool negative, absl::uint128 magnitude) {
  Object o(magnitude);
  o.negative_ = negative && magnitude != 0;
  return o;
}

const char* Object::type_name(Type type) noexcept {
  switch (type) {
    case Type::kNone:
      return "NoneType";
    case Type::kBool:
      return "bool";
    case Type::kInt:
      return "int";
    case Type::kFloat:
      return "float";
    case Type::kStr:
      return "str";
    case Type::kBytes:
      return "bytes";
    case Type::kByteArray:
      return "bytearray";
    case Type::kList:
      return "list";
    case Type::kTuple:
      return "tuple";
    case Type::kDict:
      return "dict";
    case Type::kSet:
      return "set";
    case Type::kFrozenSet:
      return "frozenset";
    case Type::kType:
      return "type";
    case Type::kRange:
      return "range";
    case Type::kSlice:
      return "slice";
  }
  return "?";
}

const char* Object::type_name() const noexcept { return type_name(type_); }

bool Object::truth() const noexcept {
  switch (type_) {
    case Type::kNone:
      return false;
    case Type::kBool:
    case Type::kInt:
      return lo_ != 0 || hi_ != 0;
    case Type::kFloat:
      return float_ != 0;
    case Type::kType:
    case Type::kSlice:
      return true;
    case Type::kRange:
      return !ObjectAccess::range(*this).empty();
    default:
      return size() != 0;
  }
}

bool Object::as_bool() const {
  if (type_ != Type::kBool) WrongType(*this, "bool");
  return lo_ != 0;
}

bool Object::int_negative() const {
  if (type_ != Type::kInt && type_ != Type::kBool) WrongType(*this, "int");
  return negative_;
}

absl::uint128 Object::int_magnitude() const {
  if (type_ != Type::kInt && type_ != Type::kBool) WrongType(*this, "int");
  return Magnitude(type_ == Type::kBool ? 0 : hi_, lo_);
}

int64_t Object::as_int() const {
  absl::uint128 m = int_magnitude();
  constexpr auto kMax =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!negative_ && m <= kMax)
    return static_cast<int64_t>(static_cast<uint64_t>(m));
  if (negative_ && m <= kMax + 1)
    return static_cast<int64_t>(0 - static_cast<uint64_t>(m));
  throw OverflowError(absl::StrCat(
      "int ", repr(*this), " does not fit in 64 bits; use as_int128()"));
}

absl::int128 Object::as_int128() const {
  absl::uint128 m = int_magnitude();
  absl::uint128 max =
      static_cast<absl::uint128>(std::numeric_limits<absl::int128>::max());
  if (!negative_ && m <= max) return static_cast<absl::int128>(m);
  if (negative_ && m <= max + 1) return static_cast<absl::int128>(-m);
  throw OverflowError(
      absl::StrCat("int ", repr(*this), " does not fit in 128 signed bits"));
}

absl::uint128 Object::as_uint128() const {
  absl::uint128 m = int_magnitude();
  if (negative_)
    throw OverflowError(absl::StrCat(
        "int ", repr(*this), " is negative; expected an unsigned value"));
  return m;
}

double Object::as_float() const {
  if (type_ == Type::kFloat) return float_;
  absl::uint128 m = int_magnitude();
  auto d = static_cast<double>(m);
  return negative_ ? -d : d;
}

const std::string& Object::as_str() const {
  if (type_ != Type::kStr) WrongType(*this, "str");
  return ObjectAccess::str(*this).data;
}

const std::string& Object::as_bytes() const {
  if (type_ != Type::kBytes && type_ != Type::kByteArray)
    WrongType(*this, "bytes");
  return ObjectAccess::str(*this).data;
}

const std::vector<Object>& Object::items() const {
  switch (type_) {
    case Type::kList:
    case Type::kTuple:
      return ObjectAccess::seq(*this).items;
    case Type::kSet:
    case Type::kFrozenSet:
      return ObjectAccess::table(*this).keys;
    default:
      WrongType(*this, "list, tuple, set or frozenset");
  }
}

const std::vector<Object>& Object::keys() const {
  if (type_ != Type::kDict) WrongType(*this, "dict");
  return ObjectAccess::table(*this).keys;
}

const std::vector<Object>& Object::values() const {
  if (type_ != Type::kDict) WrongType(*this, "dict");
  return ObjectAccess::table(*this).values;
}

size_t Object::size() const {
  switch (type_) {
    case Type::kStr: {
      size_t n = 0;
      for (char c : ObjectAccess::str(*this).data)
        n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
      return n;
    }
    case Type::kBytes:
    case Type::kByteArray:
      return ObjectAccess::str(*this).data.size();
    case Type::kList:
    case Type::kTuple:
      return ObjectAccess::seq(*this).items.size();
    case Type::kDict:
    case Type::kSet:
    case Type::kFrozenSet:
      return ObjectAccess::table(*this).keys.size();
    case Type::kRange:
      return static_cast<size_t>(ObjectAccess::range(*this).length());
    default:
      throw TypeError(
          absl::StrCat("object of type '", type_name(), "' has no len()"));
  }
}

bool Object::contains(const Object& key) const {
  switch (type_) {
    case Type::kDict:
    case Type::kSet:
    case Type::kFrozenSet:
      return ObjectAccess::table(*this).Find(key) != nullptr;
    case Type::kList:
    case Type::kTuple:
      for (const Object& item : items()) {
        if (item == key) return true;
      }
      return false;
    case Type::kStr:
      return as_str().find(key.as_str()) != std::string::npos;
    case Type::kBytes:
    case Type::kByteArray:
      if (key.is_int()) {
        int64_t b = key.as_int();
        return b >= 0 && b < 256 &&
               as_bytes().find(static_cast<char>(b)) != std::string::npos;
      }
      return as_bytes().find(key.as_bytes()) != std::string::npos;
    case Type::kRange: {
      // Only numbers equal to an int can be in a range.
      const Range& r = ObjectAccess::range(*this);
      if (key.is_int() || key.is_bool()) {
        absl::uint128 m = key.int_magnitude();
        if (m > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) +
                    (key.int_negative() ? 1 : 0))
          return false;
        return r.contains(key.as_int());
      }
      if (key.is_float()) {
        double f = key.as_float();
        return std::isfinite(f) && std::trunc(f) == f && f >= -0x1p63 &&
               f < 0x1p63 && r.contains(static_cast<int64_t>(f));
      }
      return false;
    }
    default:
      throw TypeError(
          absl::StrCat("argument of type '", type_name(), "' is not iterable"));
  }
}

const Object* Object::get(const Object& key) const {
  if (type_ != Type::kDict) WrongType(*this, "dict");
  const TableNode& t = ObjectAccess::table(*this);
  auto it = t.index.find(key);
  return it == t.index.end() ? nullptr : &t.values[it->second];
}

const Object& Object::operator[](const Object& key) const {
  if (type_ == Type::kDict) {
    const Object* v = get(key);
    if (v == nullptr) throw KeyError(repr(key));
    return *v;
  }
  if (type_ == Type::kList || type_ == Type::kTuple) {
    const auto& v = items();
    if (!key.is_int() && !key.is_bool()) {
      throw TypeError(absl::StrCat(
          type_name(), " indices must be integers, not ", key.type_name()));
    }
    int64_t i = key.as_int();
    auto n = static_cast<int64_t>(v.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n)
      throw IndexError(absl::StrCat(type_name(), " index out of range"));
    return v[static_cast<size_t>(i)];
  }
  throw TypeError(
      absl::StrCat("'", type_name(), "' object is not subscriptable"));
}

namespace {

template <class N>
N& Detach(std::shared_ptr<void>& node) {
  if (node.use_count() > 1) {
    auto copy = std::make_shared<N>(*static_cast<N*>(node.get()));
    copy->shared_by_memo = false;
    node = std::move(copy);
  }
  auto& n = *static_cast<N*>(node.get());
  n.hash.reset();
  return n;
}

}  // namespace

std::vector<Object>& Object::mutable_items() {
  if (type_ != Type::kList) WrongType(*this, "list");
  return Detach<SeqNode>(node_).items;
}

void Object::append(Object item) {
  if (type_ != Type::kList) WrongType(*this, "list");
  SeqNode& n = Detach<SeqNode>(node_);
  n.depth = std::max(n.depth, ObjectAccess::depth(item) + 1);
  n.items.push_back(std::move(item));
}

void Object::set_item(Object key, Object value) {
  if (type_ == Type::kDict) {
    Detach<TableNode>(node_).Insert(std::move(key), std::move(value), true);
    return;
  }
  if (type_ == Type::kList) {
    auto n = static_cast<int64_t>(items().size());
    int64_t i = key.as_int();
    if (i < 0) i += n;
    if (i < 0 || i >= n) throw IndexError("list assignment index out of range");
    mutable_items()[static_cast<size_t>(i)] = std::move(value);
    return;
  }
  throw TypeError(absl::StrCat("'", type_name(),
                               "' object does not support item assignment"));
}

void Object::add(Object item) {
  if (type_ != Type::kSet) WrongType(*this, "set");
  Detach<TableNode>(node_).Insert(std::move(item), Object(), false);
}

bool Object::erase(const Object& key) {
  if (type_ != Type::kDict && type_ != Type::kSet)
    WrongType(*this, "dict or set");
  if (ObjectAccess::table(*this).Find(key) == nullptr) return false;
  return Detach<TableNode>(node_).Erase(key, type_ == Type::kDict);
}

void Object::clear() {
  switch (type_) {
    case Type::kList:
      mutable_items().clear();
      return;
    case Type::kDict:
    case Type::kSet: {
      auto node = std::make_shared<TableNode>();
      node_ = std::move(node);
      return;
    }
    case Type::kByteArray:
      node_ = NewStr("");
      return;
    default:
      WrongType(*this, "list, dict, set or bytearray");
  }
}

int64_t Object::hash() const {
  switch (type_) {
    case Type::kNone:
      return 0x5F3759DF;
    case Type::kBool:
      return static_cast<int64_t>(lo_);
    case Type::kInt:
      return IntHash(negative_, Magnitude(hi_, lo_));
    case Type::kFloat:
      return FloatHash(float_);
    case Type::kStr:
    case Type::kBytes: {
      const StrNode& n = ObjectAccess::str(*this);
      if (!n.hash.has())
        n.hash.set(FixHash(
            static_cast<int64_t>(absl::Hash<std::string_view>{}(n.data))));
      return n.hash.get();
    }
    case Type::kTuple: {
      const SeqNode& n = ObjectAccess::seq(*this);
      if (!n.hash.has()) {
        // CPython's tuplehash (xxHash-based).
        constexpr uint64_t kPrime1 = 11400714785074694791ULL;
        constexpr uint64_t kPrime2 = 14029467366897019727ULL;
        constexpr uint64_t kPrime5 = 2870177450012600261ULL;
        uint64_t acc = kPrime5;
        for (const Object& item : n.items) {
          auto lane = static_cast<uint64_t>(item.hash());
          acc += lane * kPrime2;
          acc = (acc << 31) | (acc >> 33);
          acc *= kPrime1;
        }
        acc += n.items.size() ^ (kPrime5 ^ 3527539UL);
        n.hash.set(acc == static_cast<uint64_t>(-1)
                       ? 1546275796
                       : static_cast<int64_t>(acc));
      }
      return n.hash.get();
    }
    case Type::kFrozenSet: {
      const TableNode& n = ObjectAccess::table(*this);
      if (!n.hash.has()) {
        // CPython's frozenset_hash: order-independent.
        uint64_t h = 0;
        for (const Object& item : n.keys) {
          auto x = static_cast<uint64_t>(item.hash());
          h ^= ((x ^ 89869747ULL) ^ (x << 16)) * 3644798167ULL;
        }
        h ^= (n.keys.size() + 1) * 1927868237ULL;
        h ^= (h >> 11) ^ (h >> 25);
        h = h * 69069U + 907133923ULL;
        n.hash.set(h == static_cast<uint64_t>(-1) ? 590923713
                                                  : static_cast<int64_t>(h));
      }
      return n.hash.get();
    }
    case Type::kType:
      return FixHash(static_cast<int64_t>(
          absl::Hash<std::string_view>{}(type_object_name()) ^
          0x7479706555ULL));
    case Type::kRange: {
      // CPython's range_hash: the tuple (len, start, step), with None for
      // what does not matter.
      const Range& r = ObjectAccess::range(*this);
      uint64_t n = r.length();
      if (n == 0) return tuple({Object(0), Object(), Object()}).hash();
      if (n == 1) return tuple({Object(1), Object(r.start), Object()}).hash();
      return tuple({Object(n), Object(r.start), Object(r.step)}).hash();
    }
    default:
      throw TypeError(absl::StrCat("unhashable type: '", type_name(), "'"));
  }
}

bool operator==(const Object& a, const Object& b) {
  using T = Object::Type;
  if (IsNumeric(a.type_) && IsNumeric(b.type_)) {
    if (a.type_ == T::kFloat && b.type_ == T::kFloat)
      return a.float_ == b.float_;
    if (a.type_ == T::kFloat)
      return IntEqualsFloat(b.negative_, b.int_magnitude(), a.float_);
    if (b.type_ == T::kFloat)
      return IntEqualsFloat(a.negative_, a.int_magnitude(), b.float_);
    return a.negative_ == b.negative_ && a.int_magnitude() == b.int_magnitude();
  }
  auto family = [](T t) {
    switch (t) {
      case T::kByteArray:
        return T::kBytes;
      case T::kFrozenSet:
        return T::kSet;
      default:
        return t;
    }
  };
  if (family(a.type_) != family(b.type_)) return false;
  if (a.type_ == T::kType) return a.lo_ == b.lo_;
  if (a.node_ == b.node_) return true;  // also None == None
  switch (a.type_) {
    case T::kStr:
    case T::kBytes:
    case T::kByteArray:
      return ObjectAccess::str(a).data == ObjectAccess::str(b).data;
    case T::kList:
    case T::kTuple: {
      const auto& x = ObjectAccess::seq(a).items;
      const auto& y = ObjectAccess::seq(b).items;
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!(x[i] == y[i])) return false;
      }
      return true;
    }
    case T::kDict: {
      const TableNode& x = ObjectAccess::table(a);
      const TableNode& y = ObjectAccess::table(b);
      if (x.keys.size() != y.keys.size()) return false;
      for (size_t i = 0; i < x.keys.size(); ++i) {
        auto it = y.index.find(x.keys[i]);
        if (it == y.index.end() || !(x.values[i] == y.values[it->second]))
          return false;
      }
      return true;
    }
    case T::kSet:
    case T::kFrozenSet: {
      const TableNode& x = ObjectAccess::table(a);
      const TableNode& y = ObjectAccess::table(b);
      if (x.keys.size() != y.keys.size()) return false;
      for (const Object& k : x.keys) {
        if (y.Find(k) == nullptr) return false;
      }
      return true;
    }
    case T::kRange:
      return ObjectAccess::range(a) == ObjectAccess::range(b);
    case T::kSlice: {
      const SliceNode& x = ObjectAccess::slice(a);
      const SliceNode& y = ObjectAccess::slice(b);
      return x.start == y.start && x.stop == y.stop && x.step == y.step;
    }
    default:
      return false;
  }
}

std::string repr(const Object& value) {
  std::string out;
  Repr(out, value);
  return out;
}

std::string str(const Object& value) {
  return value.is_str() ? value.as_str() : repr(value);
}

std::ostream& operator<<(std::ostream& out, const Object& value) {
  return out << str(value);
}

}  // namespace multiprocessing::reduction
