// The Pickler<T> trait: how a C++ type maps to a Python value in pickle
// bytes, and the types it speaks of (OutOfBand, Bytes, ByteArray, the
// protocol numbers). Part of reduction/pickle.h, which users include.
//
// A type opts in by specialising the trait (or, for a struct, with
// MP_PICKLE_FIELDS, see reduction/pickle_fields.h):
//
//   template <> struct multiprocessing::reduction::Pickler<MyType> {
//     static void Save(Writer& w, const MyType& v);
//     static MyType Load(Reader& r);
//   };
#ifndef MULTIPROCESSING_REDUCTION_PICKLER_H_
#define MULTIPROCESSING_REDUCTION_PICKLER_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

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

class Writer;
class Reader;

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_REDUCTION_PICKLER_H_
