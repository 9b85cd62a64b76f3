// The Object decoder: CPython's unpickling stack machine restricted to the
// built-in data types. It is the decoder of loads<Object>() and the fallback of
// the typed Reader for streams it cannot follow.
//
// Hostile input: every length is checked against the remaining input before
// anything is allocated, the stack, marks and memo grow at most by one entry
// per opcode read, containers deeper than kMaxDepth are refused as they are
// built, and a container that was handed out through the memo can no longer be
// modified (which is how a pickle builds a cycle) -- so no Object is ever
// cyclic or too deep to walk.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "errors/errors.h"
#include "reduction/internal/globals.h"
#include "reduction/internal/object_nodes.h"
#include "reduction/internal/opcodes.h"
#include "reduction/internal/utf8.h"
#include "reduction/internal/wire.h"
#include "reduction/object.h"
#include "reduction/pickle.h"

namespace multiprocessing::reduction::internal {
namespace {

// A stack or memo entry: an Object, and for what a GLOBAL / STACK_GLOBAL
// named, the Callable (a built-in type's value is its type object;
// `_codecs.encode` has none and can only be called).
struct Slot {
  Object value;
  int callable = -1;  // a Callable when >= 0
  bool is_value() const {
    return callable != static_cast<int>(Callable::kCodecsEncode);
  }
};

class Machine {
 public:
  explicit Machine(std::string_view data)
      : base_(reinterpret_cast<const uint8_t*>(data.data())),
        pos_(base_),
        end_(base_ + data.size()) {}

  Object Run();

 private:
  [[noreturn]] void Fail(std::string_view what) const {
    throw UnpicklingError(
        absl::StrCat("malformed pickle at offset ", op_offset_, ": ",
                     absl::string_view(what.data(), what.size())));
  }
  [[noreturn]] static void Truncated() {
    throw UnpicklingError(
        "pickle data was truncated: the input ends in the middle of a value");
  }
  const uint8_t* Need(size_t n) {
    if (static_cast<size_t>(end_ - pos_) < n) Truncated();
    const uint8_t* p = pos_;
    pos_ += n;
    return p;
  }
  std::string_view Bytes(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - pos_)) Truncated();
    return {reinterpret_cast<const char*>(Need(static_cast<size_t>(n))),
            static_cast<size_t>(n)};
  }
  std::string_view Line() {
    size_t limit = std::min<size_t>(static_cast<size_t>(end_ - pos_), 256);
    const void* nl = std::memchr(pos_, '\n', limit);
    if (nl == nullptr) {
      if (limit < 256) Truncated();
      Fail("a GLOBAL name is longer than 255 characters");
    }
    auto len = static_cast<size_t>(static_cast<const uint8_t*>(nl) - pos_);
    std::string_view line(reinterpret_cast<const char*>(pos_), len);
    pos_ += len + 1;
    return line;
  }

  void Push(Object o) { stack_.push_back(Slot{std::move(o), -1}); }
  // The index in stack_ of the first entry above the innermost MARK (0 without
  // marks).
  size_t Fence() const { return marks_.empty() ? 0 : marks_.back(); }
  Slot PopSlot() {
    if (stack_.size() <= Fence())
      Fail("stack underflow (an operation needs more values than there are)");
    Slot s = std::move(stack_.back());
    stack_.pop_back();
    return s;
  }
  Object Pop() {
    Slot s = PopSlot();
    if (!s.is_value())
      Fail("a global can only be called (REDUCE), not used as a value");
    return std::move(s.value);
  }
  void PushGlobal(std::string_view module, std::string_view name) {
    Callable c = ResolveGlobal(module, name);
    Object value;
    if (const char* type_name = BuiltinTypeName(c))
      value = Object::builtin_type(type_name);
    stack_.push_back(Slot{std::move(value), static_cast<int>(c)});
  }
  Slot& Top() {
    if (stack_.size() <= Fence()) Fail("stack underflow");
    return stack_.back();
  }
  // Pops everything above the innermost MARK and the MARK itself.
  std::vector<Object> PopMark() {
    if (marks_.empty()) Fail("an operation needs a MARK and there is none");
    size_t fence = marks_.back();
    marks_.pop_back();
    std::vector<Object> items;
    items.reserve(stack_.size() - fence);
    for (size_t i = fence; i < stack_.size(); ++i) {
      if (!stack_[i].is_value())
        Fail("a global can only be called (REDUCE), not used as a value");
      items.push_back(std::move(stack_[i].value));
    }
    stack_.resize(fence);
    return items;
  }
  // The container below the values just popped, checked to be of `type` and
  // still modifiable.
  Object& Target(Object::Type type, const char* opname) {
    if (stack_.size() <= Fence())
      Fail(absl::StrCat(opname, " without a container to add to"));
    Slot& s = stack_.back();
    if (!s.is_value() || s.value.type() != type) {
      Fail(absl::StrCat(opname, " on a ",
                        !s.is_value() ? "global" : s.value.type_name(),
                        " (expected a ", Object::type_name(type), ")"));
    }
    if (ObjectAccess::container(s.value)->shared_by_memo) {
      throw UnpicklingError(
          "the pickle modifies a container after referring to it again: "
          "recursive (self-containing) "
          "structures are not supported");
    }
    return s.value;
  }
  void CheckDepth(uint32_t depth) const {
    if (depth > kMaxDepth) {
      throw UnpicklingError(
          absl::StrCat("the pickle nests deeper than ", kMaxDepth, " levels"));
    }
  }
  Object Checked(Object o) const {
    CheckDepth(ObjectAccess::depth(o));
    return o;
  }
  void Grow(Object& container, const Object& child) {
    ContainerBase* c = ObjectAccess::container(container);
    c->depth = std::max(c->depth, ObjectAccess::depth(child) + 1);
    CheckDepth(c->depth);
  }
  void Memoize(uint64_t index) {
    if (stack_.size() <= Fence()) Fail("memoizing with an empty stack");
    memo_[index] = stack_.back();
  }
  void Get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end())
      Fail(absl::StrCat("memo reference ", index, " was never stored"));
    const Slot& s = it->second;
    if (s.callable < 0) {
      if (ContainerBase* c = ObjectAccess::container(s.value)) {
        if (s.value.is_list() || s.value.is_dict() || s.value.is_set())
          c->shared_by_memo = true;
      }
    }
    stack_.push_back(s);
  }
  const uint8_t* base_;
  const uint8_t* pos_;
  const uint8_t* end_;
  size_t op_offset_ = 0;
  std::vector<Slot> stack_;
  std::vector<size_t> marks_;
  absl::flat_hash_map<uint64_t, Slot> memo_;
};

Object Machine::Run() {
  for (;;) {
    op_offset_ = static_cast<size_t>(pos_ - base_);
    uint8_t c = *Need(1);
    switch (c) {
      case op::kProto: {
        uint8_t v = *Need(1);
        if (v > kHighestProtocol)
          throw UnpicklingError(
              absl::StrCat("unsupported pickle protocol: ", v));
        break;
      }
      case op::kFrame:
        if (LoadLE64(Need(8)) > static_cast<uint64_t>(end_ - pos_)) Truncated();
        break;
      case op::kStop: {
        if (!marks_.empty() || stack_.size() != 1)
          Fail("STOP with other than exactly one value on the stack");
        return Pop();
      }
      case op::kMark:
        marks_.push_back(stack_.size());
        break;
      case op::kPop:
        if (stack_.size() > Fence()) {
          stack_.pop_back();
        } else if (!marks_.empty() && marks_.back() == stack_.size()) {
          marks_.pop_back();
        } else {
          Fail("POP from an empty stack");
        }
        break;
      case op::kPopMark:
        PopMark();
        break;
      case op::kNone:
        Push(Object());
        break;
      case op::kNewTrue:
      case op::kNewFalse:
        Push(Object(c == op::kNewTrue));
        break;
      case op::kBinInt1:
        Push(Object(int64_t{*Need(1)}));
        break;
      case op::kBinInt2:
        Push(Object(int64_t{LoadLE16(Need(2))}));
        break;
      case op::kBinInt:
        Push(Object(int64_t{static_cast<int32_t>(LoadLE32(Need(4)))}));
        break;
      case op::kLong1:
      case op::kLong4: {
        uint64_t n;
        if (c == op::kLong1) {
          n = *Need(1);
        } else {
          auto n32 = static_cast<int32_t>(LoadLE32(Need(4)));
          if (n32 < 0) Fail("LONG4 with a negative length");
          n = static_cast<uint64_t>(n32);
        }
        bool negative;
        absl::uint128 magnitude;
        DecodeLong(Bytes(n), &negative, &magnitude);
        Push(Object::from_sign_magnitude(negative, magnitude));
        break;
      }
      case op::kBinFloat:
        Push(Object(LoadBE64Double(Need(8))));
        break;
      case op::kShortBinUnicode:
      case op::kBinUnicode:
      case op::kBinUnicode8: {
        uint64_t n = c == op::kShortBinUnicode ? *Need(1)
                     : c == op::kBinUnicode    ? LoadLE32(Need(4))
                                               : LoadLE64(Need(8));
        std::string_view text = Bytes(n);
        CheckUtf8(text);
        Push(Object(text));
        break;
      }
      case op::kShortBinBytes:
      case op::kBinBytes:
      case op::kBinBytes8:
      case op::kByteArray8: {
        uint64_t n = c == op::kShortBinBytes ? *Need(1)
                     : c == op::kBinBytes    ? LoadLE32(Need(4))
                                             : LoadLE64(Need(8));
        std::string_view data = Bytes(n);
        Push(c == op::kByteArray8 ? Object::bytearray(data)
                                  : Object::bytes(data));
        break;
      }
      case op::kEmptyList:
        Push(Object::list());
        break;
      case op::kEmptyTuple:
        Push(Object::tuple());
        break;
      case op::kEmptyDict:
        Push(Object::dict());
        break;
      case op::kEmptySet:
        Push(Object::set());
        break;
      case op::kTuple:
        Push(Checked(Object::tuple(PopMark())));
        break;
      case op::kTuple1:
      case op::kTuple2:
      case op::kTuple3: {
        size_t n = c - op::kTuple1 + 1;
        if (stack_.size() < Fence() + n) Fail("stack underflow in TUPLE1/2/3");
        std::vector<Object> items(n);
        for (size_t i = n; i-- > 0;) items[i] = Pop();
        Push(Checked(Object::tuple(std::move(items))));
        break;
      }
      case op::kList:
        Push(Checked(Object::list(PopMark())));
        break;
      case op::kFrozenSet:
        Push(Checked(Object::frozenset(PopMark())));
        break;
      case op::kDict: {
        std::vector<Object> items = PopMark();
        if (items.size() % 2) Fail("DICT with an odd number of items");
        Object d = Object::dict();
        for (size_t i = 0; i < items.size(); i += 2) {
          Grow(d, items[i]);
          Grow(d, items[i + 1]);
          ObjectAccess::table(d).Insert(std::move(items[i]),
                                        std::move(items[i + 1]), true);
        }
        Push(std::move(d));
        break;
      }
      case op::kAppend: {
        Object item = Pop();
        Object& list = Target(Object::Type::kList, "APPEND");
        Grow(list, item);
        ObjectAccess::seq(list).items.push_back(std::move(item));
        break;
      }
      case op::kAppends: {
        std::vector<Object> items = PopMark();
        Object& list = Target(Object::Type::kList, "APPENDS");
        auto& dest = ObjectAccess::seq(list).items;
        for (Object& item : items) {
          Grow(list, item);
          dest.push_back(std::move(item));
        }
        break;
      }
      case op::kSetItem: {
        Object value = Pop();
        Object key = Pop();
        Object& dict = Target(Object::Type::kDict, "SETITEM");
        Grow(dict, key);
        Grow(dict, value);
        ObjectAccess::table(dict).Insert(std::move(key), std::move(value),
                                         true);
        break;
      }
      case op::kSetItems: {
        std::vector<Object> items = PopMark();
        if (items.size() % 2) Fail("SETITEMS with an odd number of items");
        Object& dict = Target(Object::Type::kDict, "SETITEMS");
        for (size_t i = 0; i < items.size(); i += 2) {
          Grow(dict, items[i]);
          Grow(dict, items[i + 1]);
          ObjectAccess::table(dict).Insert(std::move(items[i]),
                                           std::move(items[i + 1]), true);
        }
        break;
      }
      case op::kAddItems: {
        std::vector<Object> items = PopMark();
        Object& set = Target(Object::Type::kSet, "ADDITEMS");
        for (Object& item : items) {
          Grow(set, item);
          ObjectAccess::table(set).Insert(std::move(item), Object(), false);
        }
        break;
      }
      case op::kGlobal: {
        std::string_view module = Line();
        std::string_view name = Line();
        PushGlobal(module, name);
        break;
      }
      case op::kStackGlobal: {
        Object name = Pop();
        Object module = Pop();
        if (!name.is_str() || !module.is_str())
          Fail("STACK_GLOBAL needs two str");
        PushGlobal(module.as_str(), name.as_str());
        break;
      }
      case op::kReduce: {
        Object args = Pop();
        Slot callable = PopSlot();
        if (callable.callable < 0)
          Fail("REDUCE of something that is not an allowed global");
        if (!args.is_tuple()) Fail("REDUCE arguments are not a tuple");
        try {
          Push(Checked(CallBuiltin(static_cast<Callable>(callable.callable),
                                   args.items())));
        } catch (const UnpicklingError& e) {
          Fail(e.what());
        }
        break;
      }
      case op::kMemoize:
        Memoize(memo_.size());
        break;
      case op::kBinPut:
        Memoize(*Need(1));
        break;
      case op::kLongBinPut:
        Memoize(LoadLE32(Need(4)));
        break;
      case op::kBinGet:
        Get(*Need(1));
        break;
      case op::kLongBinGet:
        Get(LoadLE32(Need(4)));
        break;
      default: {
        std::string shown =
            c >= 0x20 && c < 0x7F ? absl::StrFormat(" ('%c')", c) : "";
        throw UnpicklingError(
            absl::StrFormat("unsupported pickle opcode 0x%02x%s at offset %d: "
                            "only protocols 2 to 5 and the built-in data types "
                            "(None, bool, int, float, str, bytes, bytearray, "
                            "list, tuple, dict, set, frozenset) are supported",
                            c, shown, op_offset_));
      }
    }
  }
}

std::vector<Object> Elements(const Object& arg) {
  if (arg.is_list() || arg.is_tuple() || arg.is_set() || arg.is_frozenset())
    return arg.items();
  throw UnpicklingError(
      absl::StrCat("set() or frozenset() of a ", arg.type_name()));
}

bool IsLatin1(const Object& o) {
  if (!o.is_str()) return false;
  const std::string& s = o.as_str();
  return s == "latin1" || s == "latin-1" || s == "iso-8859-1" ||
         s == "iso8859-1";
}

// An int argument of range() as int64 (CPython's range takes any int).
int64_t RangeBound(const Object& o) {
  if (!o.is_int() && !o.is_bool())
    throw UnpicklingError(
        absl::StrCat("range() of a ", o.type_name(), " (expected int)"));
  try {
    return o.as_int();
  } catch (const OverflowError&) {
    throw UnpicklingError(absl::StrCat(
        "range() bound ", repr(o),
        " does not fit in 64 bits; only ranges with 64-bit bounds are "
        "supported"));
  }
}

}  // namespace

Object CallBuiltin(Callable callable, const std::vector<Object>& a) {
  switch (callable) {
    case Callable::kCodecsEncode:
      if (a.size() == 2 && a[0].is_str() && IsLatin1(a[1]))
        return Object::bytes(Latin1FromUtf8(a[0].as_str()));
      break;
    case Callable::kBytes:
      if (a.empty()) return Object::bytes("");
      if (a.size() == 1 && (a[0].is_bytes() || a[0].is_bytearray()))
        return Object::bytes(a[0].as_bytes());
      break;
    case Callable::kByteArray:
      if (a.empty()) return Object::bytearray("");
      if (a.size() == 1 && (a[0].is_bytes() || a[0].is_bytearray()))
        return Object::bytearray(a[0].as_bytes());
      if (a.size() == 2 && a[0].is_str() && IsLatin1(a[1]))
        return Object::bytearray(Latin1FromUtf8(a[0].as_str()));
      break;
    case Callable::kSet:
      if (a.empty()) return Object::set();
      if (a.size() == 1) return Object::set(Elements(a[0]));
      break;
    case Callable::kFrozenSet:
      if (a.empty()) return Object::frozenset();
      if (a.size() == 1) return Object::frozenset(Elements(a[0]));
      break;
    case Callable::kRange:
      if (a.size() >= 1 && a.size() <= 3) {
        Range r;
        if (a.size() == 1) {
          r.stop = RangeBound(a[0]);
        } else {
          r.start = RangeBound(a[0]);
          r.stop = RangeBound(a[1]);
          if (a.size() == 3) r.step = RangeBound(a[2]);
        }
        if (r.step == 0) throw UnpicklingError("range() with a step of 0");
        return Object::range(r);
      }
      break;
    case Callable::kSlice:
      if (a.size() >= 1 && a.size() <= 3) {
        for (const Object& m : a) {
          if (!m.is_none() && !m.is_int() && !m.is_bool()) {
            throw UnpicklingError(
                absl::StrCat("slice() of a ", m.type_name(),
                             "; only slices of None and int are supported"));
          }
        }
        if (a.size() == 1) return Object::slice(nullptr, a[0]);
        return Object::slice(a[0], a[1], a.size() == 3 ? a[2] : Object());
      }
      break;
    default:
      throw UnpicklingError(absl::StrCat(
          "calling builtins.", BuiltinTypeName(callable),
          " is not allowed: only bytes, bytearray, set, frozenset, range and "
          "slice are rebuilt from arguments"));
  }
  throw UnpicklingError(absl::StrCat("unexpected arguments for ",
                                     callable == Callable::kCodecsEncode
                                         ? "_codecs.encode"
                                         : BuiltinTypeName(callable),
                                     "()"));
}

Object LoadObject(std::string_view data) {
  // The most common message: one str, in the exact form CPython writes.
  std::string_view text;
  if (FastStrPayload(data, &text) && IsPickleUtf8(text)) return Object(text);
  Machine m(data);
  try {
    return m.Run();
  } catch (const TypeError& e) {
    // Unhashable dict keys or set elements.
    throw UnpicklingError(absl::StrCat("invalid pickle: ", e.what()));
  }
}

namespace {
std::atomic<uint64_t> g_fallbacks{0};
}  // namespace

uint64_t TypedFallbackCount() {
  return g_fallbacks.load(std::memory_order_relaxed);
}

std::string Canonicalize(std::string_view data) {
  g_fallbacks.fetch_add(1, std::memory_order_relaxed);
  Object value = LoadObject(data);
  Writer w(kDefaultProtocol);
  w.save(value);
  return w.finish();
}

}  // namespace multiprocessing::reduction::internal
