// Pickle, Python's object serialization format, for C++ values: what crosses a
// process boundary (connections, queues, pools, managers) travels as pickle
// bytes, so C++ and CPython peers understand each other.
//
//   // CPython's pickle.loads() of `bytes` gives [1, 2]:
//   std::string bytes = reduction::dumps(std::vector<int>{1, 2});
//   auto v = reduction::loads<std::vector<int>>(bytes);
//   // Any supported value:
//   reduction::Object any = reduction::loads<reduction::Object>(from_python);
//   reduction::repr(std::make_pair(1.5, "x")) == "(1.5, 'x')"
//
// Supported on the wire: None, bool, int (up to 128 bits), float, str, bytes,
// bytearray, list, tuple, dict, set and frozenset, range and slice, the type
// objects of built-in types (`float`), nested, with shared sub-objects (memo)
// and frames, protocols 2 to 5: everything CPython's pickle.dumps() writes for
// these types. Anything else in the input (other
// globals, class instances, unknown opcodes, truncated or inconsistent data)
// raises UnpicklingError; the decoder never executes code, bounds nesting depth
// and allocates only what the input's size justifies.
//
// C++ types map to Python types through the trait Pickler<T>:
//   bool -> bool; integers -> int; float/double -> float; std::string,
//   std::string_view, const char* -> str; reduction::Bytes / ByteArray -> bytes
//   / bytearray; vector, array, list, deque -> list; pair, tuple -> tuple; map,
//   unordered_map -> dict; set, unordered_set -> set; optional -> value or
//   None; std::nullptr_t, std::nullopt_t, std::monostate -> None; variant ->
//   its alternative (decoding tries the alternatives in order);
//   std::chrono::duration -> float seconds; Object -> itself; protobuf messages
//   -> bytes (include reduction/protobuf.h, target //reduction:protobuf).
// A struct opts in by listing its fields, at namespace scope in the struct's
// namespace:
//   struct Point { double x, y; };
//   MP_PICKLE_FIELDS(Point, x, y)   // pickled as the tuple (x, y)
// Any other type: specialise Pickler (see the bottom of this file for
// examples):
//   template <> struct multiprocessing::reduction::Pickler<MyType> {
//     static void Save(Writer& w, const MyType& v);
//     static MyType Load(Reader& r);
//   };
// Decoding checks the shape: a mismatch (a str where an int is expected, a
// tuple of the wrong length) raises TypeError; an int that does not fit the C++
// type raises OverflowError.
#ifndef MULTIPROCESSING_REDUCTION_PICKLE_H_
#define MULTIPROCESSING_REDUCTION_PICKLE_H_

#include <array>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/numeric/int128.h"
#include "errors/errors.h"
#include "reduction/internal/opcodes.h"
#include "reduction/internal/wire.h"
#include "reduction/object.h"

namespace multiprocessing::reduction {

// Protocol 4 is what CPython 3.8+ writes by default; 2 to 5 are supported.
inline constexpr int kDefaultProtocol = 4;
inline constexpr int kHighestProtocol = 5;
// Deepest nesting the decoder accepts (CPython's own recursion limit is about
// as deep).
inline constexpr uint32_t kMaxDepth = 1000;

// File descriptors and other out-of-band resources travelling beside the pickle
// bytes. A Pickler that saves an fd-carrying object (a Connection, ...) appends
// a dup()ed fd here (Writer::add_fd) and writes its index into the stream; on
// the receiving side the OutOfBand owns the fds received, in the same order,
// and a Pickler's Load takes its own dup() of one (Reader::dup_fd). Every fd
// still held is closed when the OutOfBand is destroyed.
struct OutOfBand {
  std::vector<int> fds;  // owned; -1 marks a slot that was released

  OutOfBand() = default;
  OutOfBand(OutOfBand&& other) noexcept : fds(std::move(other.fds)) {
    other.fds.clear();
  }
  OutOfBand& operator=(OutOfBand&& other) noexcept;
  OutOfBand(const OutOfBand&) = delete;
  OutOfBand& operator=(const OutOfBand&) = delete;
  ~OutOfBand() { close_all(); }

  // Appends a dup() of `fd` (the caller keeps `fd`); returns its index. OSError
  // if dup() fails.
  size_t add_dup(int fd);
  // A new dup() of fds[index] for the caller to own. UnpicklingError for a bad
  // index.
  int dup_fd(size_t index) const;
  // Hands fds[index] itself to the caller (the slot becomes -1).
  // UnpicklingError for a bad index.
  int release(size_t index);
  void close_all() noexcept;
};

template <class T, class Enable = void>
struct Pickler {
  // No Pickler for T: the marker makes Picklable<T> false and dumps()/loads()
  // fail with a message.
  using Unsupported = void;
};

// True when Pickler<T> exists (built-in, specialised, or via MP_PICKLE_FIELDS).
template <class T>
concept Picklable = !requires {
  typename Pickler<std::remove_cvref_t<T>>::Unsupported;
};

namespace internal {
template <class T>
constexpr void RequirePicklable() {
  static_assert(
      Picklable<T>,
      "this type has no pickle encoding: specialise "
      "multiprocessing::reduction::Pickler<T> (static "
      "void Save(Writer&, const T&); static T Load(Reader&)), or list a "
      "struct's fields with "
      "MP_PICKLE_FIELDS(Type, field1, field2, ...) in the struct's own "
      "namespace");
}
}  // namespace internal

// Python bytes and bytearray, for C++ code that must tell binary data from
// text.
struct Bytes {
  std::string data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
};
struct ByteArray {
  std::string data;
  friend bool operator==(const ByteArray&, const ByteArray&) = default;
};

namespace internal {
struct WriterState;
struct ReaderAccess;
}  // namespace internal

// The encoder handle passed to Pickler<T>::Save: appends opcodes to one growing
// buffer. A Save writes exactly one value, by calling one write_* function, or
// begin_*, the items' saves and end_*.
class Writer {
 public:
  // `size_hint`: the expected size of the pickle, so that the buffer is
  // allocated once.
  explicit Writer(int protocol = kDefaultProtocol, OutOfBand* oob = nullptr,
                  size_t size_hint = 0);
  // Writes into `buffer`'s memory (see dumps_into).
  Writer(int protocol, OutOfBand* oob, std::string&& buffer);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  int protocol() const noexcept { return protocol_; }
  OutOfBand* oob() const noexcept { return oob_; }
  // Appends a dup() of `fd` to the OutOfBand and returns its index;
  // PicklingError when dumps() was given no OutOfBand (the value can only
  // travel over a Connection that passes fds).
  size_t add_fd(int fd);

  template <class T>
  void save(const T& value) {
    internal::RequirePicklable<T>();
    if constexpr (Picklable<T>)
      Pickler<std::remove_cvref_t<T>>::Save(*this, value);
  }

  void write_none() { put(internal::op::kNone); }
  void write_bool(bool v) {
    put(v ? internal::op::kNewTrue : internal::op::kNewFalse);
  }
  void write_int(int64_t v) {
    if (v >= 0 && v <= 0xFFFF) {
      write_small_uint(static_cast<uint32_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      char* p = room(5);
      p[0] = static_cast<char>(internal::op::kBinInt);
      auto u = static_cast<uint32_t>(static_cast<int32_t>(v));
      std::memcpy(p + 1, &u, 4);
      len_ += 5;
    } else {
      write_long(v < 0, v < 0 ? 0 - static_cast<uint64_t>(v)
                              : static_cast<uint64_t>(v));
    }
  }
  void write_uint(uint64_t v) {
    if (v <= 0xFFFF) {
      write_small_uint(static_cast<uint32_t>(v));
    } else {
      write_int_slow(false, v);
    }
  }
  void write_int(absl::int128 v);
  void write_uint(absl::uint128 v) { write_long(false, v); }
  // The items of a list of ints, in one pass.
  template <std::integral I>
  void write_int_items(const I* items, size_t n);
  // One of them at `p`, where there is room for 5 bytes; returns where the
  // next goes, with room for `room_after` bytes after it.
  template <std::integral I>
  [[gnu::always_inline]] char* write_int_item(char* p, I item,
                                              size_t room_after);
  // An int given as sign and magnitude (up to 2**128 - 1).
  void write_long(bool negative, absl::uint128 magnitude);
  void write_float(double v);
  // A str; PicklingError unless `utf8` is valid UTF-8 (send binary data as
  // Bytes).
  void write_str(std::string_view utf8);
  void write_bytes(std::string_view data);
  void write_bytearray(std::string_view data);

  // Containers: begin_*, then each item's save() (for a dict: key, value, key,
  // value, ...), then end_*.
  void begin_tuple() { put(internal::op::kMark); }
  void end_tuple() { put(internal::op::kTuple); }
  void begin_list() { put(internal::op::kMark); }
  void end_list() { put(internal::op::kList); }
  void begin_dict() { put(internal::op::kMark); }
  void end_dict() { put(internal::op::kDict); }
  void begin_set();
  void end_set();
  void begin_frozenset();
  void end_frozenset();

  // The type object of a built-in type (the names Object::builtin_type()
  // takes), as CPython writes it: the global builtins.<name> (STACK_GLOBAL
  // from protocol 4, GLOBAL with Python 2's names before). PicklingError for
  // other names.
  void write_builtin_type(std::string_view name);
  // A call of one of the built-in constructors CPython's pickles use (bytes,
  // bytearray, set, frozenset, range, slice): begin_call(name), each
  // argument's save(), end_call().
  void begin_call(std::string_view name);
  void end_call();
  // range(start, stop, step) as CPython writes it; PicklingError for a step of
  // 0.
  void write_range(const Range& r);

  // Shared sub-objects: memoize() right after a value assigns it the next memo
  // index; write_get(index) then stands for that value again.
  uint32_t memoize();
  void write_get(uint32_t index);

  // Appends STOP and returns the finished pickle; the Writer is spent.
  std::string finish();
  // Makes room for `n` more bytes in one step (an optimisation for large
  // values).
  void reserve(size_t n) { room(n); }

 private:
  friend struct internal::WriterState;
  void put(uint8_t b) {
    if (len_ == buf_.size()) grow(1);
    buf_[len_++] = static_cast<char>(b);
  }
  char* room(size_t n) {
    if (buf_.size() - len_ < n) grow(n);
    return &buf_[len_];
  }
  void write_small_uint(uint32_t v) {
    char* p = room(3);
    if (v <= 0xFF) {
      p[0] = static_cast<char>(internal::op::kBinInt1);
      p[1] = static_cast<char>(v);
      len_ += 2;
    } else {
      p[0] = static_cast<char>(internal::op::kBinInt2);
      p[1] = static_cast<char>(v & 0xFF);
      p[2] = static_cast<char>(v >> 8);
      len_ += 3;
    }
  }
  void write_int_slow(bool negative, uint64_t magnitude);
  void write_sized(uint8_t op1, uint8_t op4, uint8_t op8,
                   std::string_view data);
  void write_global(std::string_view module, std::string_view name);
  void write_builtin_global(internal::Callable c);
  void grow(size_t n);

  std::string buf_;  // sized to its capacity; bytes [0, len_) are written
  size_t len_ = 0;
  int protocol_;
  OutOfBand* oob_;
  uint32_t memo_count_ = 0;

 public:
  // For Pickler<Object>: per-dump state (memo of shared sub-objects, recursion
  // depth).
  internal::WriterState& state();

 private:
  std::unique_ptr<internal::WriterState> state_;
};

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

// Encodes `value` as a pickle of `protocol` (2 to 5). File descriptors go to
// `oob` (PicklingError if the value has some and `oob` is null). Throws
// PicklingError when the value cannot be encoded.
template <class T>
std::string dumps(const T& value, OutOfBand* oob = nullptr,
                  int protocol = kDefaultProtocol);

// dumps() into `*out`, reusing its memory: for a sender that pickles message
// after message and copies each one out at once (a queue's put), so that a
// steady stream allocates nothing. On an exception `*out` holds garbage.
template <class T>
void dumps_into(std::string* out, const T& value, OutOfBand* oob = nullptr,
                int protocol = kDefaultProtocol);

// Decodes a pickle into T (T may be Object, for any supported value). File
// descriptors referenced by the stream come from `oob`. Throws UnpicklingError
// for malformed or unsupported input, TypeError when the value's shape does not
// match T, OverflowError when an int does not fit.
template <class T>
T loads(std::string_view data, OutOfBand* oob = nullptr);

// Python's repr() of what `value` pickles as: repr(std::vector<int>{1, 4, 9})
// == "[1, 4, 9]".
template <class T>
requires(!std::same_as<std::remove_cvref_t<T>, Object>) std::string
    repr(const T& value);

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
constexpr bool kDependentFalse = false;

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

namespace internal {

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
}  // namespace internal

template <std::integral I>
char* Writer::write_int_item(char* p, I item, size_t room_after) {
  using Wide = std::conditional_t<std::is_signed_v<I>, int64_t, uint64_t>;
  auto v = static_cast<Wide>(item);
  bool non_negative = !std::is_signed_v<I> || static_cast<int64_t>(v) >= 0;
  // One store per element: there is room for 5 bytes per element left.
  if (non_negative && static_cast<uint64_t>(v) <= 0xFF) {
    auto w = static_cast<uint16_t>(internal::op::kBinInt1 |
                                   (static_cast<uint32_t>(v) << 8));
    std::memcpy(p, &w, 2);
    return p + 2;
  }
  if (non_negative && static_cast<uint64_t>(v) <= 0xFFFF) {
    uint32_t w = internal::op::kBinInt2 | (static_cast<uint32_t>(v) << 8);
    std::memcpy(p, &w, 4);  // the 4th byte is overwritten next
    return p + 3;
  }
  if (non_negative ? static_cast<uint64_t>(v) <= INT32_MAX
                   : static_cast<int64_t>(v) >= INT32_MIN) {
    p[0] = static_cast<char>(internal::op::kBinInt);
    auto u = static_cast<uint32_t>(static_cast<int32_t>(v));
    std::memcpy(p + 1, &u, 4);
    return p + 5;
  }
  len_ = static_cast<size_t>(p - buf_.data());
  if constexpr (std::is_signed_v<I>) {
    write_int(static_cast<int64_t>(v));
  } else {
    write_uint(static_cast<uint64_t>(v));
  }
  return room(room_after);
}

template <std::integral I>
void Writer::write_int_items(const I* items, size_t n) {
  using Wide = std::conditional_t<std::is_signed_v<I>, int64_t, uint64_t>;
  // At most 5 bytes an element on this path (BININT); the rest (LONG1) asks
  // for its own room. A bound of 9 would zero and allocate nearly twice the
  // memory for the common case of small ints.
  char* p = room(n * 5);
  // Runs of small ints come four at a time: when all four fit one short form
  // (BININT1 or BININT2), they are written at fixed strides with no branch per
  // element. A negative int, seen unsigned, fits neither.
  size_t i = 0;
  while (i + 4 <= n) {
    uint64_t w[4];
    for (int k = 0; k < 4; ++k)
      w[k] = static_cast<uint64_t>(static_cast<Wide>(items[i + k]));
    uint64_t all = w[0] | w[1] | w[2] | w[3];
    if (all <= 0xFF) {
      for (int k = 0; k < 4; ++k) {
        auto word = static_cast<uint16_t>(internal::op::kBinInt1 | w[k] << 8);
        std::memcpy(p + 2 * k, &word, 2);
      }
      p += 8;
      i += 4;
    } else if (all <= 0xFFFF && w[0] > 0xFF && w[1] > 0xFF && w[2] > 0xFF &&
               w[3] > 0xFF) {  // as CPython, BININT1 for any that fits it
      for (int k = 0; k < 4; ++k) {
        // 4 bytes each, the 4th overwritten by the next (the last lands in
        // the next element's room).
        auto word = static_cast<uint32_t>(internal::op::kBinInt2 | w[k] << 8);
        std::memcpy(p + 3 * k, &word, 4);
      }
      p += 12;
      i += 4;
    } else {
      p = write_int_item(p, items[i], (n - i - 1) * 5);
      ++i;
    }
  }
  for (; i < n; ++i) p = write_int_item(p, items[i], (n - i - 1) * 5);
  len_ = static_cast<size_t>(p - buf_.data());
}

template <class T>
[[gnu::always_inline]] inline std::string dumps(const T& value, OutOfBand* oob,
                                                int protocol) {
  internal::RequirePicklable<T>();
  if constexpr (std::is_same_v<T, std::string>) {
    // The most common message: one string, written without a Writer. Short
    // text inline at the caller (a call and its frame cost more than the
    // header), the rest in one call.
    constexpr size_t kInline = 512;
    if (value.size() <= kInline) {
      char buf[internal::FastDumpsStrSize(kInline)];
      if (char* end = internal::FastDumpsStrTo(buf, value, protocol)) [[likely]]
        return std::string(buf, static_cast<size_t>(end - buf));
    }
    return internal::DumpsStr(value, oob, protocol);
  } else {
    Writer w(protocol, oob, internal::SizeHint(value));
    w.save(value);
    return w.finish();
  }
}

template <class T>
void dumps_into(std::string* out, const T& value, OutOfBand* oob,
                int protocol) {
  internal::RequirePicklable<T>();
  if constexpr (std::is_same_v<T, std::string>) {
    // A reused buffer is usually already at this size: no fill.
    out->resize(internal::FastDumpsStrSize(value.size()));
    if (internal::FastDumpsStrTo(out->data(), value, protocol)) return;
  }
  Writer w(protocol, oob, std::move(*out));
  w.save(value);
  *out = w.finish();
}

template <class T>
[[gnu::always_inline]] inline T loads(std::string_view data, OutOfBand* oob) {
  internal::RequirePicklable<T>();
  if constexpr (std::is_same_v<T, Object>) {
    return internal::LoadObject(data);
  } else {
    if constexpr (std::is_same_v<T, std::string>) {
      // The most common message: one string, in the exact form CPython writes.
      // Only this path is inline (at the caller: a call and its frame cost
      // more than the parse), the rest one call.
      std::string_view text;
      if (internal::ExactStrPayload(data, &text) &&
          internal::IsPickleUtf8(text)) [[likely]]
        return std::string(text);
      return internal::LoadsStrSlow(data, oob);
    } else {
      return internal::LoadTyped<T>(data, oob);
    }
  }
}

template <class T>
requires(!std::same_as<std::remove_cvref_t<T>, Object>) std::string
    repr(const T& value) {
  OutOfBand oob;
  return repr(loads<Object>(dumps(value, &oob)));
}

// ---------------------------------------------------------------------------------------------------
// The built-in Picklers.

template <>
struct Pickler<bool> {
  static void Save(Writer& w, bool v) { w.write_bool(v); }
  static bool Load(Reader& r) { return r.read_bool(); }
};

template <std::integral I>
requires(!std::same_as<I, bool>) struct Pickler<I> {
  static void Save(Writer& w, I v) {
    if constexpr (std::is_signed_v<I>) {
      w.write_int(static_cast<int64_t>(v));
    } else {
      w.write_uint(static_cast<uint64_t>(v));
    }
  }
  static I Load(Reader& r) { return r.read_int<I>(); }
};

template <>
struct Pickler<absl::int128> {
  static void Save(Writer& w, absl::int128 v) { w.write_int(v); }
  static absl::int128 Load(Reader& r) { return r.read_int128(); }
};
template <>
struct Pickler<absl::uint128> {
  static void Save(Writer& w, absl::uint128 v) { w.write_uint(v); }
  static absl::uint128 Load(Reader& r) { return r.read_uint128(); }
};

template <std::floating_point F>
struct Pickler<F> {
  static void Save(Writer& w, F v) { w.write_float(static_cast<double>(v)); }
  static F Load(Reader& r) { return static_cast<F>(r.read_float()); }
};

template <>
struct Pickler<std::string> {
  static void Save(Writer& w, const std::string& v) { w.write_str(v); }
  static std::string Load(Reader& r) { return r.read_str(); }
};
// Save-only: decode into std::string.
template <>
struct Pickler<std::string_view> {
  static void Save(Writer& w, std::string_view v) { w.write_str(v); }
};
template <>
struct Pickler<const char*> {
  static void Save(Writer& w, const char* v) { w.write_str(v); }
};
template <>
struct Pickler<char*> {
  static void Save(Writer& w, const char* v) { w.write_str(v); }
};
template <size_t N>
struct Pickler<char[N]> {
  static void Save(Writer& w, const char (&v)[N]) {
    w.write_str(std::string_view(v, strnlen(v, N)));
  }
};

template <>
struct Pickler<Bytes> {
  static void Save(Writer& w, const Bytes& v) { w.write_bytes(v.data); }
  static Bytes Load(Reader& r) { return Bytes{r.read_bytes()}; }
};
template <>
struct Pickler<ByteArray> {
  static void Save(Writer& w, const ByteArray& v) { w.write_bytearray(v.data); }
  static ByteArray Load(Reader& r) { return ByteArray{r.read_bytes()}; }
};
template <>
struct Pickler<std::vector<std::byte>> {
  static void Save(Writer& w, const std::vector<std::byte>& v) {
    w.write_bytes(
        std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
  }
  static std::vector<std::byte> Load(Reader& r) {
    std::string s = r.read_bytes();
    std::vector<std::byte> out(s.size());
    if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
    return out;
  }
};

template <class N>
requires(std::same_as<N, std::nullptr_t> || std::same_as<N, std::nullopt_t> ||
         std::same_as<N, std::monostate>) struct Pickler<N> {
  static void Save(Writer& w, const N&) { w.write_none(); }
  static N Load(Reader& r) {
    r.read_none();
    if constexpr (std::is_same_v<N, std::nullopt_t>) {
      return std::nullopt;
    } else {
      return N{};
    }
  }
};

template <>
struct Pickler<Object> {
  static void Save(Writer& w, const Object& v);
  static Object Load(Reader& r);
};

// range and slice, as CPython pickles them.
template <>
struct Pickler<Range> {
  static void Save(Writer& w, const Range& v) { w.write_range(v); }
  static Range Load(Reader& r);
};
template <>
struct Pickler<Slice> {
  static void Save(Writer& w, const Slice& v);
  static Slice Load(Reader& r);
};

namespace internal {

// List-like containers: vector, deque, list (as Python lists).
template <class C>
struct ListPickler {
  using T = typename C::value_type;
  static void Save(Writer& w, const C& v) {
    RequirePicklable<T>();
    w.begin_list();
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                  requires { v.data(); }) {
      w.write_int_items(v.data(), v.size());
    } else {
      for (const auto& x : v) w.save(x);
    }
    w.end_list();
  }
  static C Load(Reader& r) {
    RequirePicklable<T>();
    C out;
    auto item = [&]() -> size_t {
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        // Bulk path for the common case, in chunks (so the container grows once
        // per chunk).
        int64_t chunk[256];
        size_t total = 0;
        while (size_t n = r.read_int_run(chunk, 256)) {
          if constexpr (!std::is_same_v<T, int64_t>) {
            for (size_t i = 0; i < n; ++i) {
              if (chunk[i] <
                      static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                  (chunk[i] > 0 && static_cast<uint64_t>(chunk[i]) >
                                       std::numeric_limits<T>::max())) {
                throw OverflowError(
                    "int " + std::to_string(chunk[i]) + " does not fit in a " +
                    std::to_string(8 * sizeof(T)) + "-bit integer");
              }
            }
          }
          if constexpr (requires { out.reserve(size_t{1}); }) {
            // A long run: room for what the input can still hold (up to a
            // bound, so that a short list in a large pickle stays cheap).
            if (n == 256 && total == 0) {
              out.reserve(out.size() + 256 +
                          std::min<size_t>(r.int_run_bound(), size_t{1} << 16));
            }
          }
          out.insert(out.end(), chunk, chunk + n);
          total += n;
          if (n < 256) break;
        }
        if (total) return total;
      }
      out.push_back(r.load<T>());
      return 1;
    };
    auto truncate = [&](size_t n) {
      out.erase(std::next(out.begin(), static_cast<std::ptrdiff_t>(n)),
                out.end());
    };
    r.read_sequence(Reader::kList | Reader::kTuple, item, truncate);
    return out;
  }
};

template <class C>
struct SetPickler {
  using T = typename C::value_type;
  static void Save(Writer& w, const C& v) {
    RequirePicklable<T>();
    w.begin_set();
    for (const auto& x : v) w.save(x);
    w.end_set();
  }
  static C Load(Reader& r) {
    RequirePicklable<T>();
    // Elements are staged so that a backtrack can drop them.
    std::vector<T> items;
    auto item = [&] { items.push_back(r.load<T>()); };
    auto truncate = [&](size_t n) {
      while (items.size() > n) items.pop_back();
    };
    r.read_sequence(Reader::kSet | Reader::kList | Reader::kTuple, item,
                    truncate);
    C out;
    for (auto& x : items) out.insert(std::move(x));
    return out;
  }
};

template <class C>
struct MapPickler {
  using K = typename C::key_type;
  using V = typename C::mapped_type;
  static void Save(Writer& w, const C& v) {
    RequirePicklable<K>();
    RequirePicklable<V>();
    w.begin_dict();
    for (const auto& [k, x] : v) {
      w.save(k);
      w.save(x);
    }
    w.end_dict();
  }
  static C Load(Reader& r) {
    RequirePicklable<K>();
    RequirePicklable<V>();
    std::vector<std::pair<K, V>> items;
    auto item = [&] {
      K k = r.load<K>();
      items.emplace_back(std::move(k), r.load<V>());
    };
    auto truncate = [&](size_t n) {
      while (items.size() > n) items.pop_back();
    };
    r.read_dict(item, truncate);
    C out;
    for (auto& [k, x] : items) out.insert_or_assign(std::move(k), std::move(x));
    return out;
  }
};

// Heterogeneous fixed-size sequences (pair, tuple, user structs): a Python
// tuple of the elements.
template <class... Ts>
struct TupleCodec {
  template <class Tuple>
  static void Save(Writer& w, const Tuple& t) {
    (RequirePicklable<Ts>(), ...);
    w.begin_tuple();
    std::apply([&](const auto&... x) { (w.save(x), ...); }, t);
    w.end_tuple();
  }
  static std::tuple<Ts...> Load(Reader& r) {
    (RequirePicklable<Ts>(), ...);
    constexpr size_t kN = sizeof...(Ts);
    std::tuple<std::optional<Ts>...> parts;
    size_t i = 0;
    auto item = [&] {
      if (i >= kN) r.fail_type("a tuple of " + std::to_string(kN) + " items");
      LoadAt(r, parts, i, std::index_sequence_for<Ts...>{});
      ++i;
    };
    auto truncate = [&](size_t n) {
      ResetFrom(parts, n, std::index_sequence_for<Ts...>{});
      i = n;
    };
    r.read_sequence(Reader::kTuple | Reader::kList, item, truncate);
    if (i != kN) {
      throw TypeError("expected a tuple of " + std::to_string(kN) +
                      " items, got " + std::to_string(i));
    }
    return std::apply(
        [](auto&... p) { return std::tuple<Ts...>(std::move(*p)...); }, parts);
  }

 private:
  template <size_t... I>
  static void LoadAt(Reader& r, std::tuple<std::optional<Ts>...>& parts,
                     size_t i, std::index_sequence<I...>) {
    (void)((i == I ? (std::get<I>(parts).emplace(r.load<Ts>()), true)
                   : false) ||
           ...);
  }
  template <size_t... I>
  static void ResetFrom(std::tuple<std::optional<Ts>...>& parts, size_t n,
                        std::index_sequence<I...>) {
    ((I >= n ? std::get<I>(parts).reset() : void()), ...);
  }
};

}  // namespace internal

template <class T, class A>
struct Pickler<std::vector<T, A>> : internal::ListPickler<std::vector<T, A>> {};
template <class T, class A>
struct Pickler<std::deque<T, A>> : internal::ListPickler<std::deque<T, A>> {};
template <class T, class A>
struct Pickler<std::list<T, A>> : internal::ListPickler<std::list<T, A>> {};

template <class T, size_t N>
struct Pickler<std::array<T, N>> {
  static void Save(Writer& w, const std::array<T, N>& v) {
    internal::RequirePicklable<T>();
    w.begin_list();
    for (const auto& x : v) w.save(x);
    w.end_list();
  }
  static std::array<T, N> Load(Reader& r) {
    internal::RequirePicklable<T>();
    std::vector<T> items = Pickler<std::vector<T>>::Load(r);
    if (items.size() != N) {
      throw TypeError("expected a list of " + std::to_string(N) +
                      " items, got " + std::to_string(items.size()));
    }
    std::array<T, N> out;
    for (size_t i = 0; i < N; ++i) out[i] = std::move(items[i]);
    return out;
  }
};

template <class K, class C, class A>
struct Pickler<std::set<K, C, A>> : internal::SetPickler<std::set<K, C, A>> {};
template <class K, class H, class E, class A>
struct Pickler<std::unordered_set<K, H, E, A>>
    : internal::SetPickler<std::unordered_set<K, H, E, A>> {};
template <class K, class V, class C, class A>
struct Pickler<std::map<K, V, C, A>>
    : internal::MapPickler<std::map<K, V, C, A>> {};
template <class K, class V, class H, class E, class A>
struct Pickler<std::unordered_map<K, V, H, E, A>>
    : internal::MapPickler<std::unordered_map<K, V, H, E, A>> {};

template <class... Ts>
struct Pickler<std::tuple<Ts...>> {
  static void Save(Writer& w, const std::tuple<Ts...>& v) {
    internal::TupleCodec<Ts...>::Save(w, v);
  }
  static std::tuple<Ts...> Load(Reader& r) {
    return internal::TupleCodec<Ts...>::Load(r);
  }
};
template <class A, class B>
struct Pickler<std::pair<A, B>> {
  static void Save(Writer& w, const std::pair<A, B>& v) {
    internal::TupleCodec<A, B>::Save(w, v);
  }
  static std::pair<A, B> Load(Reader& r) {
    auto t = internal::TupleCodec<A, B>::Load(r);
    return {std::move(std::get<0>(t)), std::move(std::get<1>(t))};
  }
};

template <class T>
struct Pickler<std::optional<T>> {
  static void Save(Writer& w, const std::optional<T>& v) {
    internal::RequirePicklable<T>();
    if (v) {
      w.save(*v);
    } else {
      w.write_none();
    }
  }
  static std::optional<T> Load(Reader& r) {
    internal::RequirePicklable<T>();
    if (r.next_is_none()) {
      r.read_none();
      return std::nullopt;
    }
    return r.load<T>();
  }
};

template <class... Ts>
struct Pickler<std::variant<Ts...>> {
  static void Save(Writer& w, const std::variant<Ts...>& v) {
    (internal::RequirePicklable<Ts>(), ...);
    std::visit([&](const auto& x) { w.save(x); }, v);
  }
  static std::variant<Ts...> Load(Reader& r) {
    (internal::RequirePicklable<Ts>(), ...);
    std::optional<std::variant<Ts...>> out;
    // The first alternative that decodes wins.
    (void)((r.attempt([&] {
      out.emplace(std::in_place_type<Ts>, r.load<Ts>());
    }) || ...));
    if (!out) r.fail_type("a value matching one of the variant's alternatives");
    return std::move(*out);
  }
};

template <class Rep, class Period>
struct Pickler<std::chrono::duration<Rep, Period>> {
  using D = std::chrono::duration<Rep, Period>;
  static void Save(Writer& w, const D& v) {
    w.write_float(std::chrono::duration<double>(v).count());
  }
  static D Load(Reader& r) {
    std::chrono::duration<double> seconds(r.read_float());
    if constexpr (std::is_floating_point_v<Rep>) {
      return std::chrono::duration_cast<D>(seconds);
    } else {
      // Checked first: converting an out-of-range double to an integer is
      // undefined.
      double ticks = std::chrono::duration<double, Period>(seconds).count();
      if (!(ticks > -0x1p63 && ticks < 0x1p63) ||
          std::round(ticks) <
              static_cast<double>(std::numeric_limits<Rep>::min()) ||
          std::round(ticks) >
              static_cast<double>(std::numeric_limits<Rep>::max())) {
        throw OverflowError("duration of " + std::to_string(seconds.count()) +
                            " seconds does not fit the C++ duration type");
      }
      return std::chrono::round<D>(seconds);
    }
  }
};

}  // namespace multiprocessing::reduction

// MP_PICKLE_FIELDS(Type, field1, field2, ...): Type pickles as the tuple
// (field1, field2, ...). Use it at namespace scope in Type's own namespace (it
// declares functions found by argument-dependent lookup). Loading needs Type to
// be default-constructible. Up to 16 fields.
#define MP_PICKLE_FIELDS(Type, ...)                                            \
  [[maybe_unused]] inline auto MpPickleFields(const Type& mp_pickle_value) {   \
    return std::tie(                                                           \
        MP_PICKLE_INTERNAL_FOR_EACH(MP_PICKLE_INTERNAL_FIELD, __VA_ARGS__));   \
  }                                                                            \
  [[maybe_unused]] inline auto MpPickleFields(Type& mp_pickle_value) {         \
    return std::tie(                                                           \
        MP_PICKLE_INTERNAL_FOR_EACH(MP_PICKLE_INTERNAL_FIELD, __VA_ARGS__));   \
  }                                                                            \
  [[maybe_unused]] inline constexpr bool MpPickleFieldsDeclared(const Type*) { \
    return true;                                                               \
  }

#define MP_PICKLE_INTERNAL_FIELD(f) mp_pickle_value.f
#define MP_PICKLE_INTERNAL_EXPAND(x) x
#define MP_PICKLE_INTERNAL_FE1(m, a) m(a)
#define MP_PICKLE_INTERNAL_FE2(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE1(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE3(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE2(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE4(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE3(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE5(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE4(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE6(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE5(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE7(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE6(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE8(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE7(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE9(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE8(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE10(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE9(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE11(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE10(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE12(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE11(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE13(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE12(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE14(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE13(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE15(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE14(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_FE16(m, a, ...) \
  m(a), MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_FE15(m, __VA_ARGS__))
#define MP_PICKLE_INTERNAL_PICK(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, \
                                _12, _13, _14, _15, _16, N, ...)              \
  N
#define MP_PICKLE_INTERNAL_FOR_EACH(m, ...)                                    \
  MP_PICKLE_INTERNAL_EXPAND(MP_PICKLE_INTERNAL_PICK(                           \
      __VA_ARGS__, MP_PICKLE_INTERNAL_FE16, MP_PICKLE_INTERNAL_FE15,           \
      MP_PICKLE_INTERNAL_FE14, MP_PICKLE_INTERNAL_FE13,                        \
      MP_PICKLE_INTERNAL_FE12, MP_PICKLE_INTERNAL_FE11,                        \
      MP_PICKLE_INTERNAL_FE10, MP_PICKLE_INTERNAL_FE9, MP_PICKLE_INTERNAL_FE8, \
      MP_PICKLE_INTERNAL_FE7, MP_PICKLE_INTERNAL_FE6, MP_PICKLE_INTERNAL_FE5,  \
      MP_PICKLE_INTERNAL_FE4, MP_PICKLE_INTERNAL_FE3, MP_PICKLE_INTERNAL_FE2,  \
      MP_PICKLE_INTERNAL_FE1)(m, __VA_ARGS__))

namespace multiprocessing::reduction {
namespace internal {
template <class T>
concept HasPickleFields = requires(const T& c, T& m) {
  {MpPickleFieldsDeclared(static_cast<const T*>(nullptr))};
  MpPickleFields(c);
  MpPickleFields(m);
};
template <class Tuple>
struct FieldCodec;
template <class... Refs>
struct FieldCodec<std::tuple<Refs...>> {
  using Codec = TupleCodec<std::remove_cvref_t<Refs>...>;
};
}  // namespace internal

template <class T>
requires internal::HasPickleFields<T>
struct Pickler<T> {
  using Codec = typename internal::FieldCodec<decltype(MpPickleFields(
      std::declval<const T&>()))>::Codec;
  static void Save(Writer& w, const T& v) { Codec::Save(w, MpPickleFields(v)); }
  static T Load(Reader& r) {
    T out{};
    MpPickleFields(out) = Codec::Load(r);
    return out;
  }
};

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_REDUCTION_PICKLE_H_
