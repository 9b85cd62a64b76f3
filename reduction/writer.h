// Writer, the encoder a Pickler<T>::Save writes through: opcodes appended
// to one growing buffer, as CPython's pickle writes them. Part of
// reduction/pickle.h, which users include.
//
//   static void Save(Writer& w, const Point& p) {
//     w.begin_tuple();
//     w.save(p.x);
//     w.save(p.y);
//     w.end_tuple();
//   }
#ifndef MULTIPROCESSING_REDUCTION_WRITER_H_
#define MULTIPROCESSING_REDUCTION_WRITER_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/numeric/int128.h"
#include "reduction/internal/globals.h"
#include "reduction/internal/opcodes.h"
#include "reduction/object.h"
#include "reduction/pickler.h"

namespace multiprocessing::reduction {

namespace internal {
struct WriterState;
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

  // For Pickler<Object>: per-dump state (memo of shared sub-objects, recursion
  // depth).
  internal::WriterState& state();

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
  std::unique_ptr<internal::WriterState> state_;
};

// ---------------------------------------------------------------------------------------------------
// Implementation details below.

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

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_REDUCTION_WRITER_H_
