// Reader, the decoder a Pickler<T>::Load reads through: one value from the
// opcode stream, straight into T, with the memo replay and backtracking that
// CPython's forms of containers need. Part of reduction/pickle.h, which users
// include.
//
//   static Point Load(Reader& r) {
//     auto [x, y] = r.load<std::pair<double, double>>();
//     return Point{x, y};
//   }
#ifndef MULTIPROCESSING_REDUCTION_READER_H_
#define MULTIPROCESSING_REDUCTION_READER_H_

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/numeric/int128.h"
#include "errors/errors.h"
#include "reduction/internal/globals.h"
#include "reduction/internal/opcodes.h"
#include "reduction/internal/wire.h"
#include "reduction/object.h"
#include "reduction/pickler.h"

namespace multiprocessing::reduction {

namespace internal {
struct ReaderAccess;
}  // namespace internal

// The decoder handle passed to Pickler<T>::Load: reads one value from the
// opcode stream, straight into T. A Load reads exactly one value: one read_*
// call, or one read_sequence / read_dict whose callbacks each load() one item.
// Shared sub-objects (memo references) are decoded again for every use.
class Reader {
 public:
  explicit Reader(std::string_view data, OutOfBand* oob = nullptr);
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  OutOfBand* oob() const noexcept { return oob_; }
  // A dup() of the fd the stream calls `index`, for the loaded value to own.
  int dup_fd(size_t index) const;

  // One value as T.
  template <class T>
  T load();

  void read_none();
  bool read_bool();
  // An int, checked to fit I (OverflowError otherwise). bool is not an int here
  // (unlike in Python), so that std::variant<int, bool> keeps the difference.
  template <std::integral I>
  I read_int() {
    bool negative;
    absl::uint128 magnitude;
    read_int(&negative, &magnitude);
    return internal_int_cast<I>(negative, magnitude);
  }
  absl::int128 read_int128();
  absl::uint128 read_uint128();
  void read_int(bool* negative, absl::uint128* magnitude);
  double read_float();  // a float, or an int converted as Python's float() does
  std::string read_str();
  std::string read_bytes();  // bytes or bytearray
  // True when the next value is None (not consumed).
  bool next_is_none();

  // What read_sequence accepts.
  enum Shapes : unsigned {
    kList = 1,
    kTuple = 2,
    kSet = 4,  // set or frozenset
    kAnySequence = kList | kTuple | kSet,
  };
  // Reads a list, tuple or set (as allowed by `shapes`), calling item() once
  // per element; item() must load() the element and may return a count when it
  // read several at once. truncate(n) must drop every element added after the
  // first n (the reader backtracks when it tried an interpretation of the bytes
  // that turned out wrong). Returns the number of elements.
  template <class Item, class Truncate>
  size_t read_sequence(unsigned shapes, Item&& item, Truncate&& truncate);
  // Reads a dict, calling item() once per entry (it must load() the key, then
  // the value).
  template <class Item, class Truncate>
  size_t read_dict(Item&& item, Truncate&& truncate);
  // Reads up to `max` consecutive ints of up to 32 bits (the common encoding
  // of a list of ints) into `out`; returns how many were read (0 if the next
  // value is not one).
  size_t read_int_run(int64_t* out, size_t max);
  // An upper bound of how many more ints read_int_run() could return, for
  // reserving room.
  size_t int_run_bound() const {
    return std::min(budget_, static_cast<size_t>(end_ - pos_) / 2);
  }

  // Tries f(); if f fails to decode, rewinds to where it started and returns
  // false.
  template <class F>
  bool attempt(F&& f);

  // TypeError: "expected <expected>, got <what is next in the stream>".
  [[noreturn]] void fail_type(std::string_view expected);
  // Finishes a top-level decode: the value must be followed by STOP.
  void expect_stop();

 private:
  friend struct internal::ReaderAccess;
  static constexpr size_t kPending = ~size_t{0};
  struct MemoRange {
    size_t start;
    size_t end;  // kPending while the container is still being read
  };
  struct Checkpoint {
    const uint8_t* pos;
    size_t memo_size;
  };

  template <std::integral I>
  static I internal_int_cast(bool negative, absl::uint128 magnitude);

  size_t offset() const { return static_cast<size_t>(pos_ - base_); }
  // The next opcode, skipping FRAME markers; 0 at the end of a memo replay.
  // UnpicklingError at the end of the input.
  uint8_t peek() {
    if (pos_ != end_ && *pos_ != internal::op::kFrame) [[likely]]
      return *pos_;
    return peek_slow();
  }
  uint8_t peek_slow();
  void expect(uint8_t op, const char* what);
  const uint8_t* need(size_t n) {
    if (static_cast<size_t>(end_ - pos_) < n) [[unlikely]]
      truncated();
    const uint8_t* p = pos_;
    pos_ += n;
    return p;
  }
  [[noreturn]] void truncated();
  [[noreturn]] static void too_complex();
  Checkpoint checkpoint() const { return {pos_, memo_.size()}; }
  void restore(const Checkpoint& c) {
    pos_ = c.pos;
    memo_.resize(c.memo_size);
  }
  static bool is_memo_op(uint8_t op) {
    return op == internal::op::kMemoize || op == internal::op::kBinPut ||
           op == internal::op::kLongBinPut;
  }
  static bool is_get_op(uint8_t op) {
    return op == internal::op::kBinGet || op == internal::op::kLongBinGet;
  }
  // An opcode that starts a value (rather than closing or changing one).
  static bool is_value_start(uint8_t op);
  // False when the value at the read position is certainly not followed by
  // `single` (checked cheaply for scalars, so that the common case needs no
  // trial decode).
  bool may_be_single_item(uint8_t single) const;
  // Consumes memo opcodes after a value that started at `start`, recording
  // them.
  void note_memo(size_t start) {
    if (pos_ != end_ && is_memo_op(*pos_)) [[unlikely]]
      note_memo_slow(start);
  }
  void note_memo_slow(size_t start);
  // Consumes one memo opcode right after an EMPTY_* container; returns its memo
  // slot or kPending.
  size_t memo_pending(size_t start);
  template <class T>
  T replay();
  // While alive, the read position is in the memo entry `range`, read as a
  // replay reads it (recording no memo entries); the position is restored
  // after.
  class ReplayScope {
   public:
    ReplayScope(Reader& r, MemoRange range)
        : r_(r), pos_(r.pos_), end_(r.end_) {
      r.pos_ = r.base_ + range.start;
      r.end_ = r.base_ + range.end;
      ++r.replaying_;
    }
    ReplayScope(const ReplayScope&) = delete;
    ReplayScope& operator=(const ReplayScope&) = delete;
    ~ReplayScope() {
      r_.pos_ = pos_;
      r_.end_ = end_;
      --r_.replaying_;
    }

   private:
    Reader& r_;
    const uint8_t* pos_;
    const uint8_t* end_;
  };
  template <class Item>
  static size_t call_item(Item& item) {
    if constexpr (std::is_void_v<decltype(item())>) {
      item();
      return 1;
    } else {
      return item();
    }
  }
  template <class Item, class Truncate>
  size_t read_continued(uint8_t single, uint8_t batch, Item& item,
                        Truncate& truncate);
  template <class Item, class Truncate>
  size_t read_reduced_set(Item& item, Truncate& truncate);
  internal::Callable read_global();
  // Whether a global in the STACK_GLOBAL form, or a memo reference to a
  // global, starts at the read position.
  bool global_follows();

  const uint8_t* base_;
  const uint8_t* pos_;
  const uint8_t* end_;
  OutOfBand* oob_;
  uint32_t depth_ = 0;
  uint32_t replaying_ = 0;
  size_t budget_;  // values still allowed (memo replays copy; this bounds the
                   // expansion)
  absl::InlinedVector<MemoRange, 8> memo_;
  absl::flat_hash_set<size_t>
      not_continuations_;  // offsets known not to continue the container before
};

// ---------------------------------------------------------------------------------------------------
// Implementation details below.

namespace internal {

// What REDUCE of an allowed built-in constructor with arguments `args` gives
// (bytes, bytearray, set, frozenset, range, slice, _codecs.encode);
// UnpicklingError for anything else.
Object CallBuiltin(Callable callable, const std::vector<Object>& args);

// The Object decoder: a stack machine for any supported pickle (also the
// fallback of the typed path).
Object LoadObject(std::string_view data);
// The pickle re-encoded in the form the typed Reader reads directly (no postfix
// tuples, no continued containers). Throws UnpicklingError for malformed input.
std::string Canonicalize(std::string_view data);
// How many typed decodes in this process needed the Object decoder (for tests
// of the fast path).
uint64_t TypedFallbackCount();

template <class T>
T LoadTop(std::string_view data, OutOfBand* oob) {
  Reader r(data, oob);
  T value = r.load<T>();
  r.expect_stop();
  return value;
}

// The typed Reader decodes what CPython and this library write directly;
// anything it cannot follow is decoded as an Object first (which also reports
// malformed input precisely) and re-read in the form the Reader follows. Not
// inlined into loads(), whose fast paths then need no exception handling.
template <class T>
[[gnu::noinline]] T LoadTyped(std::string_view data, OutOfBand* oob) {
  try {
    return LoadTop<T>(data, oob);
  } catch (const Exception&) {
  }
  std::string canonical = Canonicalize(data);  // counts the fallback
  return LoadTop<T>(canonical, oob);
}

}  // namespace internal

template <std::integral I>
I Reader::internal_int_cast(bool negative, absl::uint128 magnitude) {
  if constexpr (std::is_signed_v<I>) {
    using U = std::make_unsigned_t<I>;
    absl::uint128 limit = static_cast<U>(std::numeric_limits<I>::max());
    if (!negative && magnitude <= limit)
      return static_cast<I>(static_cast<U>(magnitude));
    if (negative && magnitude <= limit + 1)
      return static_cast<I>(static_cast<U>(0 - static_cast<U>(magnitude)));
  } else {
    if (!negative && magnitude <= std::numeric_limits<I>::max())
      return static_cast<I>(magnitude);
  }
  throw OverflowError(std::string("int ") +
                      repr(Object::from_sign_magnitude(negative, magnitude)) +
                      " does not fit in " +
                      (std::is_signed_v<I> ? "a signed " : "an unsigned ") +
                      std::to_string(8 * sizeof(I)) + "-bit integer");
}

template <class T>
T Reader::load() {
  if (depth_ >= kMaxDepth) [[unlikely]] {
    throw UnpicklingError("the pickle nests deeper than " +
                          std::to_string(kMaxDepth) + " levels");
  }
  if (budget_ == 0) [[unlikely]]
    too_complex();
  --budget_;
  ++depth_;
  struct Leave {
    uint32_t& depth;
    ~Leave() { --depth; }
  } leave{depth_};
  size_t start = offset();
  // A memo reference stands for a value read before, except where it is a
  // global or a global's module (CPython refers back to 'builtins' after the
  // first global, and to `range` when it calls it again): Pickler<Object>
  // reads those, for itself or for the Pickler that loads an Object.
  if (is_get_op(peek()) && !global_follows()) [[unlikely]] {
    T value = replay<T>();
    note_memo(start);
    return value;
  }
  T value = Pickler<T>::Load(*this);
  note_memo(start);
  return value;
}

template <class T>
T Reader::replay() {
  uint8_t op = *pos_++;
  size_t index =
      op == internal::op::kBinGet ? *need(1) : internal::LoadLE32(need(4));
  if (index >= memo_.size() || memo_[index].end == kPending) {
    throw UnpicklingError(
        "memo reference " + std::to_string(index) +
        " is not a value decoded before it (a recursive structure?)");
  }
  ReplayScope scope(*this, memo_[index]);
  T value = load<T>();
  if (pos_ != end_)
    throw UnpicklingError(
        "a memo reference does not stand for exactly one value");
  return value;
}

template <class F>
bool Reader::attempt(F&& f) {
  Checkpoint c = checkpoint();
  uint32_t depth = depth_;
  try {
    f();
    return true;
  } catch (const Exception&) {
    restore(c);
    depth_ = depth;
    return false;
  }
}

inline size_t Reader::read_int_run(int64_t* out, size_t max) {
  namespace op = internal::op;
  const uint8_t* p = pos_;
  if (max > budget_) max = budget_;
  size_t n = 0;
  // Every element read below starts at or before `last`, so its opcode and 4
  // more bytes are in the input. CPython writes runs of one opcode (the small
  // ints of a list are BININT1, then BININT2): each run is read by a loop
  // bounded once, by how many elements of that size fit.
  if (end_ - p >= 5) {
    const uint8_t* last = end_ - 5;
    while (n < max && p <= last) {
      uint8_t c = *p;
      if (c == op::kBinInt1) {
        int64_t* o = out + n;
        int64_t* stop = o + std::min<size_t>(
                                max - n, static_cast<size_t>(last - p) / 2 + 1);
        do {
          *o++ = p[1];
          p += 2;
        } while (o != stop && *p == op::kBinInt1);
        n = static_cast<size_t>(o - out);
      } else if (c == op::kBinInt2) {
        int64_t* o = out + n;
        int64_t* stop = o + std::min<size_t>(
                                max - n, static_cast<size_t>(last - p) / 3 + 1);
        do {
          *o++ = internal::LoadLE16(p + 1);
          p += 3;
        } while (o != stop && *p == op::kBinInt2);
        n = static_cast<size_t>(o - out);
      } else if (c == op::kBinInt) {
        out[n++] = static_cast<int32_t>(internal::LoadLE32(p + 1));
        p += 5;
      } else {
        break;
      }
    }
  }
  budget_ -= n;
  pos_ = p;
  return n;
}

template <class Item, class Truncate>
size_t Reader::read_continued(uint8_t single, uint8_t batch, Item& item,
                              Truncate& truncate) {
  size_t start = offset();
  ++pos_;  // EMPTY_LIST / EMPTY_SET / EMPTY_DICT
  size_t slot = memo_pending(start);
  size_t count = 0;
  // CPython fills the container with MARK items APPENDS batches, or one item
  // and APPEND. What follows the container may also be the parent's next value,
  // so each continuation is tried and undone if the bytes turn out to belong to
  // the parent.
  for (;;) {
    // CPython writes batches of 1000 items: only then can another batch (or a
    // last single item) follow.
    if (count % 1000 != 0 || pos_ == end_) break;
    uint8_t c = peek();
    bool is_batch = c == internal::op::kMark;
    if (!is_batch &&
        (single == 0 || !is_value_start(c) || !may_be_single_item(single)))
      break;
    size_t at = offset();
    if (!not_continuations_.empty() && not_continuations_.contains(at)) break;
    Checkpoint cp = checkpoint();
    uint32_t depth = depth_;
    try {
      if (is_batch) {
        ++pos_;
        size_t n = 0;
        while (peek() != batch) n += call_item(item);
        ++pos_;
        count += n;
      } else {
        if (call_item(item) != 1 || peek() != single)
          throw TypeError("not a continuation");
        ++pos_;
        ++count;
      }
    } catch (const Exception&) {
      restore(cp);
      depth_ = depth;
      truncate(count);
      not_continuations_.insert(at);
      break;
    }
  }
  if (slot != kPending) memo_[slot].end = offset();
  return count;
}

template <class Item, class Truncate>
size_t Reader::read_reduced_set(Item& item, Truncate& truncate) {
  internal::Callable callable = read_global();
  if (callable != internal::Callable::kSet &&
      callable != internal::Callable::kFrozenSet)
    fail_type("a set");
  // Type-erased callbacks keep the mutual recursion with read_sequence to one
  // instantiation.
  using ItemRef = absl::FunctionRef<size_t()>;
  using TruncateRef = absl::FunctionRef<void(size_t)>;
  auto item_fn = [&]() -> size_t { return call_item(item); };
  auto truncate_fn = [&](size_t n) { truncate(n); };
  ItemRef item_ref(item_fn);
  TruncateRef truncate_ref(truncate_fn);
  size_t count = 0;
  auto elements = [&]() -> size_t {
    count = read_sequence(kList | kTuple | kSet, item_ref, truncate_ref);
    return 1;
  };
  auto none = [](size_t) {};
  ItemRef elements_ref(elements);
  TruncateRef none_ref(none);
  size_t args_start = offset();
  if (read_sequence(kTuple, elements_ref, none_ref) > 1)
    fail_type("set(iterable)");
  note_memo(args_start);
  expect(internal::op::kReduce, "REDUCE");
  return count;
}

template <class Item, class Truncate>
size_t Reader::read_sequence(unsigned shapes, Item&& item,
                             Truncate&& truncate) {
  namespace op = internal::op;
  uint8_t c = peek();
  if (c == op::kEmptyTuple && (shapes & kTuple)) {
    ++pos_;
    return 0;
  }
  if (c == op::kMark) {
    ++pos_;
    size_t count = 0;
    for (;;) {
      uint8_t closer = peek();
      if ((closer == op::kTuple && (shapes & kTuple)) ||
          (closer == op::kList && (shapes & kList)) ||
          (closer == op::kFrozenSet && (shapes & kSet))) {
        ++pos_;
        return count;
      }
      if (!is_value_start(closer)) break;
      count += call_item(item);
    }
  } else if (c == op::kEmptyList && (shapes & kList)) {
    return read_continued(op::kAppend, op::kAppends, item, truncate);
  } else if (c == op::kEmptySet && (shapes & kSet)) {
    return read_continued(0, op::kAddItems, item, truncate);
  } else if (c == op::kGlobal && (shapes & kSet)) {
    return read_reduced_set(item, truncate);
  } else if ((shapes & kTuple) && is_value_start(c)) {
    // A tuple of one to three items written before TUPLE1 / TUPLE2 / TUPLE3.
    size_t count = 0;
    for (;;) {
      count += call_item(item);
      if (count > 3) break;
      uint8_t closer = peek();
      if (closer == op::kTuple1 + count - 1) {
        ++pos_;
        return count;
      }
      if (count == 3 || !is_value_start(closer)) break;
    }
  }
  fail_type(shapes == kSet ? "a set" : (shapes & kList) ? "a list" : "a tuple");
}

template <class Item, class Truncate>
size_t Reader::read_dict(Item&& item, Truncate&& truncate) {
  namespace op = internal::op;
  uint8_t c = peek();
  if (c == op::kEmptyDict)
    return read_continued(op::kSetItem, op::kSetItems, item, truncate);
  if (c != op::kMark) fail_type("a dict");
  ++pos_;
  size_t count = 0;
  while (peek() != op::kDict) {
    item();
    ++count;
  }
  ++pos_;
  return count;
}

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_REDUCTION_READER_H_
