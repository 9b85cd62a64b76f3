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
// these types. Anything else in the input (other globals, class instances,
// unknown opcodes, truncated or inconsistent data) raises UnpicklingError; the
// decoder never executes code, bounds nesting depth and allocates only what
// the input's size justifies.
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
//
// A struct opts in by listing its fields, at namespace scope in the struct's
// namespace:
//
//   struct Point { double x, y; };
//   MP_PICKLE_FIELDS(Point, x, y)   // pickled as the tuple (x, y)
//
// Any other type: specialise Pickler (reduction/std_picklers.h has many
// examples):
//
//   template <> struct multiprocessing::reduction::Pickler<MyType> {
//     static void Save(Writer& w, const MyType& v);
//     static MyType Load(Reader& r);
//   };
//
// Decoding checks the shape: a mismatch (a str where an int is expected, a
// tuple of the wrong length) raises TypeError; an int that does not fit the C++
// type raises OverflowError.
//
// This header is the one to include; it declares dumps(), dumps_into(),
// loads() and repr() and includes the parts:
//
//   reduction/pickler.h        the Pickler<T> trait, OutOfBand, Bytes
//   reduction/writer.h         Writer, the encoder a Save writes through
//   reduction/reader.h         Reader, the decoder a Load reads through
//   reduction/std_picklers.h   the Picklers of built-in and std:: types
//   reduction/pickle_fields.h  MP_PICKLE_FIELDS
//   reduction/internal/fast_paths.h  dumps()/loads() of one str
#ifndef MULTIPROCESSING_REDUCTION_PICKLE_H_
#define MULTIPROCESSING_REDUCTION_PICKLE_H_

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

#include "reduction/internal/fast_paths.h"
#include "reduction/object.h"
#include "reduction/pickle_fields.h"  // IWYU pragma: export
#include "reduction/pickler.h"        // IWYU pragma: export
#include "reduction/reader.h"         // IWYU pragma: export
#include "reduction/std_picklers.h"   // IWYU pragma: export
#include "reduction/writer.h"         // IWYU pragma: export

namespace multiprocessing::reduction {

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

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_REDUCTION_PICKLE_H_
