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
// which elements were first added). `repr()` and `str()` print what CPython
// prints, `==` and `hash()` follow Python (1 == 1.0 == True and their hashes
// are equal; list, dict, set and bytearray are unhashable). Objects are values:
// copying is cheap (containers and strings are shared until one copy is
// modified), and an Object never contains itself.
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

  // Elements of a list, tuple, set or frozenset, in order.
  const std::vector<Object>& items() const;
  // Keys and values of a dict, in insertion order.
  const std::vector<Object>& keys() const;
  const std::vector<Object>& values() const;

  // len(x) for str (code points), bytes, bytearray and containers.
  size_t size() const;
  // `key in x`: dict keys, set elements, list/tuple elements, substrings of str
  // / bytes.
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
  // hash(True)); TypeError for list, dict, set and bytearray. Numbers hash
  // exactly as in CPython.
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
