// reduction::Object: a dynamically typed value with Python's semantics, for
// data whose shape is known only at run time (what a CPython peer sends, the
// contents of a manager's dict or list, printed results).
//
//   Object v = Object::list({1, "two", Object::tuple({3.0, nullptr})});
//   repr(v)  == "[1, 'two', (3.0, None)]"
//   v[1]     == Object("two")
//
// An Object holds one of Python's built-in kinds: None, bool, int (from
// -(2**128 - 1) to 2**128 - 1), float, str (UTF-8), bytes, bytearray, list,
// tuple, dict (insertion-ordered), set and frozenset (both keep the order in
// which elements were first added), range (64-bit bounds), slice (members None
// or int), and the type objects of some built-in types (`float` itself, as in
// `[2.25, None, 'junk', float]`; see builtin_type()). `repr()` and `str()`
// print what CPython prints, `==` and `hash()` follow Python (1 == 1.0 == True
// and their hashes are equal; list, dict, set and bytearray are unhashable).
// Objects are values: copying is cheap (containers and strings are shared until
// one copy is modified), and an Object never contains itself.
//
// Sets and frozensets print in insertion order; CPython prints them in
// hash-table order, which for sets of small non-negative ints is usually the
// same and for strings differs between runs.
//
// Threads: like std::string, one Object must not be modified while another
// thread uses it; different Objects (copies included, even of shared contents)
// may be used from different threads freely.

#ifndef MULTIPROCESSING_REDUCTION_OBJECT_H_
#define MULTIPROCESSING_REDUCTION_OBJECT_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/numeric/int128.h"
#include "errors/errors.h"

namespace multiprocessing::reduction {

namespace internal {
struct ObjectAccess;
}  // namespace internal

// range with 64-bit bounds: the typed counterpart of a range Object
// (Object::as_range(), Object::range(r)); pickles as CPython's range. Iterating
// it yields the ints without storing them.
struct Range {
  int64_t start = 0;
  int64_t stop = 0;
  int64_t step = 1;

  // len(range): up to 2**64 - 1.
  uint64_t length() const noexcept;
  bool empty() const noexcept { return length() == 0; }
  // r[i] with Python's negative indices; IndexError when out of range.
  int64_t at(int64_t index) const;
  // `value in r`, computed.
  bool contains(int64_t value) const noexcept;

  class iterator {
   public:
    using value_type = int64_t;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    int64_t operator*() const noexcept { return value_; }
    iterator& operator++() noexcept {
      value_ = static_cast<int64_t>(static_cast<uint64_t>(value_) +
                                    static_cast<uint64_t>(step_));
      --left_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.left_ == b.left_;
    }

   private:
    friend struct Range;
    iterator(int64_t value, int64_t step, uint64_t left)
        : value_(value), step_(step), left_(left) {}
    int64_t value_ = 0;
    int64_t step_ = 1;
    uint64_t left_ = 0;
  };
  iterator begin() const noexcept { return {start, step, length()}; }
  iterator end() const noexcept { return {0, step, 0}; }

  // Python's ==: equal when they are the same sequence (range(0) ==
  // range(5, 5)).
  friend bool operator==(const Range& a, const Range& b) noexcept;
};

// slice with 64-bit members (std::nullopt for None): the typed counterpart of
// a slice Object; pickles as CPython's slice. Equality is member-wise, as
// Python's.
struct Slice {
  std::optional<int64_t> start;
  std::optional<int64_t> stop;
  std::optional<int64_t> step;

  // slice.indices(length) and the number of items selected: what
  // `sequence[slice]` picks from a sequence of `length` items. ValueError when
  // step is 0.
  struct Indices {
    int64_t start;
    int64_t stop;
    int64_t step;
    size_t count;
  };
  Indices indices(size_t length) const;

  friend bool operator==(const Slice&, const Slice&) = default;
};

class Object {
 public:
  // Python's built-in types, as `type(x).__name__` names them (see
  // type_name()).
  enum class Type : uint8_t {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kByteArray,
    kList,
    kTuple,
    kDict,
    kSet,
    kFrozenSet,
    kType,   // a built-in type object: <class 'float'>
    kRange,  // range(start, stop, step)
    kSlice,  // slice(start, stop, step)
  };

  // None.
  Object() noexcept : type_(Type::kNone) {}
  Object(std::nullptr_t) noexcept
      : Object() {}  // NOLINT: None converts implicitly
  Object(std::nullopt_t) noexcept : Object() {}                      // NOLINT
  Object(bool value) noexcept : type_(Type::kBool) { lo_ = value; }  // NOLINT
  template <std::integral I>
  requires(!std::same_as<I, bool>) Object(I value)
  noexcept : type_(Type::kInt) {  // NOLINT
    if constexpr (std::is_signed_v<I>) {
      negative_ = value < 0;
      lo_ = negative_ ? 0 - static_cast<uint64_t>(value)
                      : static_cast<uint64_t>(value);
    } else {
      lo_ = static_cast<uint64_t>(value);
    }
  }
  Object(absl::int128 value) noexcept;   // NOLINT
  Object(absl::uint128 value) noexcept;  // NOLINT
  Object(double value) noexcept : type_(Type::kFloat) {
    float_ = value;
  }  // NOLINT
  Object(float value) noexcept
      : Object(static_cast<double>(value)) {}  // NOLINT
  // str, from UTF-8.
  Object(const char* utf8);       // NOLINT
  Object(std::string_view utf8);  // NOLINT
  Object(std::string utf8);       // NOLINT

  // The other kinds, named like Python's constructors.
  static Object bytes(std::string_view data);
  static Object bytearray(std::string_view data);
  static Object list(std::vector<Object> items = {});
  static Object tuple(std::vector<Object> items = {});
  // Later duplicates of a key replace the value and keep the first position, as
  // in Python.
  static Object dict(std::vector<std::pair<Object, Object>> items = {});
  static Object set(std::vector<Object> items = {});
  static Object frozenset(std::vector<Object> items = {});
  // Integers given as sign and magnitude (`magnitude` up to 2**128 - 1).
  static Object from_sign_magnitude(bool negative, absl::uint128 magnitude);
  // The type object of the built-in type `name`: one of int, float, str,
  // bytes, bytearray, bool, list, tuple, dict, set, frozenset, complex, object,
  // type, range, slice (ValueError for any other name). It pickles as the
  // global builtins.<name>, so CPython loads it back as the type itself.
  static Object builtin_type(std::string_view name);
  // range(stop), range(start, stop[, step]); ValueError when step is 0.
  static Object range(int64_t stop);
  static Object range(int64_t start, int64_t stop, int64_t step = 1);
  static Object range(const Range& r);
  // slice(start, stop, step): each None or an int (TypeError otherwise), as
  // Python's `x[start:stop:step]` makes them. A step of 0 is allowed here, as
  // in Python; Slice::indices() refuses it.
  static Object slice(Object start, Object stop, Object step = Object());

  Type type() const noexcept { return type_; }
  // Python's type name: "NoneType", "bool", "int", "float", "str", "bytes",
  // "bytearray", "list", ...
  const char* type_name() const noexcept;
  static const char* type_name(Type type) noexcept;

  bool is_none() const noexcept { return type_ == Type::kNone; }
  bool is_bool() const noexcept { return type_ == Type::kBool; }
  bool is_int() const noexcept { return type_ == Type::kInt; }
  bool is_float() const noexcept { return type_ == Type::kFloat; }
  bool is_str() const noexcept { return type_ == Type::kStr; }
  bool is_bytes() const noexcept { return type_ == Type::kBytes; }
  bool is_bytearray() const noexcept { return type_ == Type::kByteArray; }
  bool is_list() const noexcept { return type_ == Type::kList; }
  bool is_tuple() const noexcept { return type_ == Type::kTuple; }
  bool is_dict() const noexcept { return type_ == Type::kDict; }
  bool is_set() const noexcept { return type_ == Type::kSet; }
  bool is_frozenset() const noexcept { return type_ == Type::kFrozenSet; }
  bool is_type() const noexcept { return type_ == Type::kType; }
  bool is_range() const noexcept { return type_ == Type::kRange; }
  bool is_slice() const noexcept { return type_ == Type::kSlice; }

  // Python's truth value, `bool(x)`.
  bool truth() const noexcept;

  // Accessors; each throws TypeError when the kind is wrong and OverflowError
  // when the value does not fit.
  bool as_bool() const;              // bool only
  int64_t as_int() const;            // int or bool
  absl::int128 as_int128() const;    // int or bool
  absl::uint128 as_uint128() const;  // non-negative int or bool
  double as_float() const;           // float, int or bool, as Python's float(x)
  const std::string& as_str() const;    // str (UTF-8)
  const std::string& as_bytes() const;  // bytes or bytearray
  // Sign and magnitude of an int or bool.
  bool int_negative() const;
  absl::uint128 int_magnitude() const;

  // The name of a type object: "float" for <class 'float'>.
  const char* type_object_name() const;
  // A range's bounds; iterate it, index it or take its len() without
  // materialising it.
  Range as_range() const;
  // A slice's members (each None or an int).
  const Object& slice_start() const;
  const Object& slice_stop() const;
  const Object& slice_step() const;
  // The slice with 64-bit members (ints beyond 64 bits are clamped, which
  // leaves Slice::indices() unchanged).
  Slice as_slice() const;
  // list(x) for a range, list, tuple, set, frozenset or dict (its keys);
  // MemoryError when it would have more than `max_items` elements (a range
  // can stand for 2**64 ints).
  Object to_list(size_t max_items = kMaxListExpansion) const;
  static constexpr size_t kMaxListExpansion = size_t{1} << 26;

  // Elements of a list, tuple, set or frozenset, in order.
  const std::vector<Object>& items() const;
  // Keys and values of a dict, in insertion order.
  const std::vector<Object>& keys() const;
  const std::vector<Object>& values() const;

  // len(x) for str (code points), bytes, bytearray, containers and range
  // (OverflowError for a range longer than SIZE_MAX).
  size_t size() const;
  // `key in x`: dict keys, set elements, list/tuple elements, substrings of str
  // / bytes, numbers in a range (computed, not searched).
  bool contains(const Object& key) const;
  // x[key]: dict lookup (KeyError), or list/tuple index with Python's negative
  // indices (IndexError).
  const Object& operator[](const Object& key) const;
  // dict.get: nullptr when absent.
  const Object* get(const Object& key) const;

  // Mutation (the Object gets its own copy of shared contents first).
  void append(Object item);              // list.append
  std::vector<Object>& mutable_items();  // list only
  void set_item(Object key,
                Object value);    // d[key] = value; l[i] = value for a list
  void add(Object item);          // set.add
  bool erase(const Object& key);  // del d[key] / set.discard: false when absent
  void clear();                   // list, dict, set, bytearray

  // Python's hash(): equal for equal values (hash(1) == hash(1.0) ==
  // hash(True)); TypeError for list, dict, set, bytearray and slice (as in
  // CPython 3.11). Numbers hash exactly as in CPython; range hashes as
  // CPython's algorithm over our None hash; type objects by name.
  int64_t hash() const;

  friend bool operator==(const Object& a, const Object& b);
  friend bool operator!=(const Object& a, const Object& b) { return !(a == b); }
  template <class H>
  friend H AbslHashValue(H h, const Object& o) {
    return H::combine(std::move(h), o.hash());
  }

 private:
  friend struct internal::ObjectAccess;

  Type type_;
  bool negative_ = false;  // ints: the sign
  union {
    uint64_t lo_ = 0;  // ints: low 64 bits of the magnitude; bools: 0 or 1
    double float_;
  };
  uint64_t hi_ = 0;             // ints: high 64 bits of the magnitude
  std::shared_ptr<void> node_;  // str, bytes, containers: the (shared) contents
};

// repr(x) exactly as CPython prints it.
std::string repr(const Object& value);
// str(x): the text itself for a str, repr() for everything else.
std::string str(const Object& value);
// Writes str(value).
std::ostream& operator<<(std::ostream& out, const Object& value);

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_REDUCTION_OBJECT_H_
