// ctypes-like objects in shared memory, as Python's
// multiprocessing.sharedctypes: RawValue, RawArray, Value, Array,
// synchronized(), copy().
//
//   namespace sc = multiprocessing::sharedctypes;
//   auto num = sc::Value<'d'>(0.0);             // or sc::Value<double>(0.0)
//   auto arr = sc::Array<'i'>({0, 1, 2, 3});     // or sc::Array<int>(10)
//   num.value() = 3.1415927;                     // locked write
//   arr[1] = -arr[1];                            // locked read, locked write
//   {
//     std::lock_guard guard(num.get_lock());     // several steps atomically
//     num.value() = num.value() * 2;
//   }
//   std::cout << num << "\n";  // <Synchronized wrapper for
//   c_double(6.2831854)>
//
// The element type is a typecode of the array module (c b B h H i I l L q Q
// f d) or any trivially copyable C++ type (a struct like the documentation's
// Point). Storage comes from the shared heap (synchronize/internal/heap.h):
// forked children share it, and the objects pickle (shared-memory descriptor
// out of band, and the lock's name) so spawn and forkserver children reach
// the same bytes when the object is a Process argument.
//
// Value() and Array() wrap the object with a lock: a new RLock by default,
// a given Lock / RLock, or none with {.lock = false} (then access is not
// process-safe, and get_lock() throws AttributeError, as Python has no
// get_lock on a raw object). Element access through a wrapper takes the
// lock for each read and each write; `+=` and friends on value() / a[i]
// take it once for the whole read-modify-write.
//
// Indexing accepts negative indices (from the end) and throws IndexError out
// of range; slices are half-open [start, stop) with Python's clamping.
#ifndef MULTIPROCESSING_SHAREDCTYPES_SHAREDCTYPES_H_
#define MULTIPROCESSING_SHAREDCTYPES_SHAREDCTYPES_H_

#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#include "errors/errors.h"
#include "reduction/pickle.h"
#include "synchronize/internal/heap.h"
#include "synchronize/internal/semlock.h"
#include "synchronize/synchronize.h"

namespace multiprocessing::sharedctypes {

// ---- Types and typecodes

// What can live in shared memory: bytes that mean the same in every process.
template <class T>
concept CType = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                !std::is_reference_v<T> && !std::is_const_v<T> &&
                std::is_default_constructible_v<T>;

template <char C>
struct TypeCodeTraits {
  static_assert(C != C,
                "unknown typecode: use one of c b B h H i I l L q Q f d");
};
template <>
struct TypeCodeTraits<'c'> {
  using type = char;
};
template <>
struct TypeCodeTraits<'b'> {
  using type = signed char;
};
template <>
struct TypeCodeTraits<'B'> {
  using type = unsigned char;
};
template <>
struct TypeCodeTraits<'h'> {
  using type = short;
};
template <>
struct TypeCodeTraits<'H'> {
  using type = unsigned short;
};
template <>
struct TypeCodeTraits<'i'> {
  using type = int;
};
template <>
struct TypeCodeTraits<'I'> {
  using type = unsigned int;
};
template <>
struct TypeCodeTraits<'l'> {
  using type = long;
};
template <>
struct TypeCodeTraits<'L'> {
  using type = unsigned long;
};
template <>
struct TypeCodeTraits<'q'> {
  using type = long long;
};
template <>
struct TypeCodeTraits<'Q'> {
  using type = unsigned long long;
};
template <>
struct TypeCodeTraits<'f'> {
  using type = float;
};
template <>
struct TypeCodeTraits<'d'> {
  using type = double;
};

// The C++ type of a typecode: TypeCode<'d'> is double.
template <char C>
using TypeCode = typename TypeCodeTraits<C>::type;

namespace internal {
// ctypes' name for T ("c_double"; for other types their C++ name).
std::string CTypeName(const std::type_info& type, size_t size, bool is_integral,
                      bool is_signed, bool is_floating);
template <class T>
std::string CTypeNameOf() {
  return CTypeName(typeid(T), sizeof(T), std::is_integral_v<T>,
                   std::is_signed_v<T>, std::is_floating_point_v<T>);
}
std::string ObjectRepr(const std::string& type_name, const void* address);
// ctypes' repr of a simple value: c_double(3.1415927), c_char(b'x').
std::string SimpleRepr(const std::string& ctype, const void* data,
                       const std::type_info& type, size_t size,
                       bool is_integral, bool is_signed, bool is_floating);
template <class T>
std::string ValueRepr(const T* data) {
  if constexpr (std::is_arithmetic_v<T>) {
    return SimpleRepr(CTypeNameOf<T>(), data, typeid(T), sizeof(T),
                      std::is_integral_v<T>, std::is_signed_v<T>,
                      std::is_floating_point_v<T>);
  } else {
    return ObjectRepr(CTypeNameOf<T>(), data);
  }
}
// "<multiprocessing.sharedctypes.c_int_Array_10 object at 0x...>".
std::string ArrayRepr(const std::string& element, size_t length,
                      const void* address);
[[noreturn]] void ThrowIndexError(long long index, size_t length);
// Python's index rules: negative counts from the end; IndexError outside.
// Inline, so that a[i] compiles to a compare and a load.
inline size_t CheckIndex(long long index, size_t length) {
  long long n = static_cast<long long>(length);
  long long i = index < 0 ? index + n : index;
  if (i < 0 || i >= n) [[unlikely]] {
    ThrowIndexError(index, length);
  }
  return static_cast<size_t>(i);
}
// Python's slice clamping of [start, stop) (no step).
std::pair<size_t, size_t> ClampSlice(long long start, long long stop,
                                     size_t length);
[[noreturn]] void ThrowNoLock(const std::string& type_name);
[[noreturn]] void ThrowSliceAssignLength(size_t expected, size_t got);
[[noreturn]] void ThrowTooLong(size_t capacity, size_t got);
}  // namespace internal

// A range argument usable as an initializer (not a string for char arrays).
template <class R, class T>
concept InitializerRange = requires(R& r) {
  std::begin(r);
  std::end(r);
}
&&std::is_convertible_v<decltype(*std::begin(std::declval<R&>())), T> &&
    !(std::is_same_v<T, char> &&
      std::is_convertible_v<const R&, std::string_view>);

// ---- The lock of a synchronized wrapper: a Lock or an RLock.

class SyncLock {
 public:
  SyncLock(Lock lock)  // NOLINT: implicit, as Python accepts either
      : sem_(multiprocessing::internal::SyncAccess::Sem(lock)) {}
  SyncLock(RLock lock)  // NOLINT
      : sem_(multiprocessing::internal::SyncAccess::Sem(lock)) {}

  bool acquire(bool block = true, synchronize::Timeout timeout = std::nullopt) {
    return sem_->Acquire(block, synchronize::internal::Seconds(timeout));
  }
  void release() { sem_->Release(); }
  void lock() { sem_->Acquire(true, std::nullopt); }
  bool try_lock() { return sem_->Acquire(false, std::nullopt); }
  void unlock() { sem_->Release(); }
  bool is_rlock() const {
    return sem_->kind() ==
           multiprocessing::internal::SemLock::Kind::kRecursiveMutex;
  }
  std::string repr() const {
    return is_rlock() ? sem_->RLockRepr() : sem_->LockRepr();
  }
  const std::shared_ptr<multiprocessing::internal::SemLock>& semlock() const {
    return sem_;
  }
  explicit SyncLock(std::shared_ptr<multiprocessing::internal::SemLock> sem)
      : sem_(std::move(sem)) {}

 private:
  std::shared_ptr<multiprocessing::internal::SemLock> sem_;
};

// Python's lock= argument: true (a new RLock), false (no lock), or a lock.
class LockOption {
 public:
  LockOption(bool use_lock) : use_(use_lock) {}  // NOLINT
  LockOption(Lock lock)
      : use_(true), lock_(SyncLock(std::move(lock))) {}  // NOLINT
  LockOption(RLock lock)
      : use_(true), lock_(SyncLock(std::move(lock))) {}              // NOLINT
  LockOption(SyncLock lock) : use_(true), lock_(std::move(lock)) {}  // NOLINT
  // The lock to use, or nullopt for none.
  std::optional<SyncLock> resolve() const {
    if (!use_) return std::nullopt;
    if (lock_) return lock_;
    return SyncLock(RLock());
  }

 private:
  bool use_;
  std::optional<SyncLock> lock_;
};

struct Options {
  LockOption lock = true;
};

// ---- Raw objects

// A ctypes object of type T in shared memory (what RawValue returns).
template <CType T>
class CValue {
 public:
  using value_type = T;
  // A new zeroed object, then `initial`.
  explicit CValue(const T& initial = T{})
      : block_(multiprocessing::internal::SharedBlock::Allocate(sizeof(T))),
        data_(static_cast<T*>(block_->data())) {
    std::memcpy(static_cast<void*>(data_), &initial, sizeof(T));
  }
  // Direct access, not process-safe: reads and writes the shared bytes.
  T& value() { return *data_; }
  const T& value() const { return *data_; }
  T* get() const { return data_; }
  std::string repr() const { return internal::ValueRepr(data_); }

  // Rebuilds the object on `block` (from a pickle).
  explicit CValue(std::shared_ptr<multiprocessing::internal::SharedBlock> block)
      : block_(std::move(block)), data_(static_cast<T*>(block_->data())) {
    if (block_->size() < sizeof(T)) {
      throw ValueError("shared value: block smaller than the type");
    }
  }
  const std::shared_ptr<multiprocessing::internal::SharedBlock>& block() const {
    return block_;
  }

 private:
  std::shared_ptr<multiprocessing::internal::SharedBlock> block_;
  T* data_;
};

// A ctypes array of T in shared memory (what RawArray returns).
template <CType T>
class CArray {
 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  // `length` zeroed elements.
  explicit CArray(size_t length) : CArray(Allocate(length), length) {}
  // A copy of `init`.
  CArray(std::initializer_list<T> init) : CArray(init.size()) {
    std::copy(init.begin(), init.end(), data_);
  }
  template <class R>
  requires InitializerRange<R, T> &&
      (!std::is_same_v<std::remove_cvref_t<R>, CArray>)explicit CArray(R&& init)
      : CArray(Count(init)) {
    size_t i = 0;
    for (auto&& v : init) data_[i++] = static_cast<T>(v);
  }
  // For char arrays: the bytes of `text` (no terminating NUL, as b'...').
  explicit CArray(std::string_view text) requires std::is_same_v<T, char>
      : CArray(text.size()) {
    std::memcpy(data_, text.data(), text.size());
  }

  size_t size() const { return length_; }
  size_t len() const { return length_; }
  T* data() const { return data_; }
  T* begin() const { return data_; }
  T* end() const { return data_ + length_; }
  // Unchecked, as std::vector's.
  T& operator[](size_t i) const { return data_[i]; }
  // Python's a[i]: negative from the end, IndexError outside.
  T& at(long long i) const { return data_[internal::CheckIndex(i, length_)]; }
  // a[start:stop] and a[:].
  std::vector<T> slice(long long start, long long stop) const {
    auto [b, e] = internal::ClampSlice(start, stop, length_);
    return std::vector<T>(data_ + b, data_ + e);
  }
  std::vector<T> list() const { return std::vector<T>(begin(), end()); }
  // a[start:stop] = values; ValueError unless the lengths match.
  template <class R>
  void set_slice(long long start, long long stop, const R& values) const {
    auto [b, e] = internal::ClampSlice(start, stop, length_);
    size_t n = static_cast<size_t>(
        std::distance(std::begin(values), std::end(values)));
    if (n != e - b) internal::ThrowSliceAssignLength(e - b, n);
    std::copy(std::begin(values), std::end(values), data_ + b);
  }
  void set_slice(long long start, long long stop,
                 std::initializer_list<T> v) const {
    set_slice<std::initializer_list<T>>(start, stop, v);
  }

  // char arrays: `value` is the bytes up to the first NUL, `raw` all bytes.
  std::string value() const requires std::is_same_v<T, char> {
    return std::string(data_, strnlen(data_, length_));
  }
  std::string raw() const requires std::is_same_v<T, char> {
    return std::string(data_, length_);
  }
  // ValueError when longer than the array; shorter values get a NUL.
  void set_value(std::string_view v) const requires std::is_same_v<T, char> {
    if (v.size() > length_) internal::ThrowTooLong(length_, v.size());
    std::memcpy(data_, v.data(), v.size());
    if (v.size() < length_) data_[v.size()] = '\0';
  }
  void set_raw(std::string_view v) const requires std::is_same_v<T, char> {
    if (v.size() > length_) internal::ThrowTooLong(length_, v.size());
    std::memcpy(data_, v.data(), v.size());
  }

  std::string repr() const {
    return internal::ArrayRepr(internal::CTypeNameOf<T>(), length_, data_);
  }

  CArray(std::shared_ptr<multiprocessing::internal::SharedBlock> block,
         size_t length)
      : block_(std::move(block)),
        data_(static_cast<T*>(block_->data())),
        length_(length) {
    if (length > block_->size() / (sizeof(T) == 0 ? 1 : sizeof(T))) {
      throw ValueError("shared array: block smaller than its length");
    }
  }
  const std::shared_ptr<multiprocessing::internal::SharedBlock>& block() const {
    return block_;
  }

 private:
  static std::shared_ptr<multiprocessing::internal::SharedBlock> Allocate(
      size_t length) {
    if (length > (size_t{1} << 40) / sizeof(T)) {
      throw MemoryError("shared array of " + std::to_string(length) +
                        " elements is too large");
    }
    return multiprocessing::internal::SharedBlock::Allocate(
        length == 0 ? 1 : length * sizeof(T));
  }
  template <class R>
  static size_t Count(R& r) {
    if constexpr (requires { r.size(); }) {
      return static_cast<size_t>(r.size());
    } else {
      return static_cast<size_t>(std::distance(std::begin(r), std::end(r)));
    }
  }

  std::shared_ptr<multiprocessing::internal::SharedBlock> block_;
  T* data_;
  size_t length_;
};

// ---- Synchronized wrappers

namespace internal {
// Locks for the scope, when there is a lock.
class MaybeGuard {
 public:
  [[gnu::always_inline]] explicit MaybeGuard(
      multiprocessing::internal::SemLock* sem)
      : sem_(sem) {
    if (sem_) sem_->Acquire(true, std::nullopt);
  }
  [[gnu::always_inline]] ~MaybeGuard() {
    if (sem_) sem_->Release();
  }
  MaybeGuard(const MaybeGuard&) = delete;
  MaybeGuard& operator=(const MaybeGuard&) = delete;

 private:
  multiprocessing::internal::SemLock* sem_;
};

// A reference to one shared T, reading and writing under the lock.
template <class T>
class LockedRef {
 public:
  LockedRef(T* p, multiprocessing::internal::SemLock* sem) : p_(p), sem_(sem) {}
  [[gnu::always_inline]] operator T() const {  // NOLINT: reads like Python
    return get();
  }
  [[gnu::always_inline]] T get() const {
    if (sem_ == nullptr) return *p_;  // a raw array: just the load
    MaybeGuard g(sem_);
    return *p_;
  }
  const LockedRef& operator=(const T& v) const {
    MaybeGuard g(sem_);
    *p_ = v;
    return *this;
  }
  const LockedRef& operator=(const LockedRef& other) const {
    return *this = other.get();
  }
#define MP_SHAREDCTYPES_COMPOUND(op)               \
  template <class U>                               \
  const LockedRef& operator op(const U& v)         \
      const requires requires(T & t, const U& u) { \
    t op u;                                        \
  }                                                \
  {                                                \
    MaybeGuard g(sem_);                            \
    *p_ op v;                                      \
    return *this;                                  \
  }
  MP_SHAREDCTYPES_COMPOUND(+=)
  MP_SHAREDCTYPES_COMPOUND(-=)
  MP_SHAREDCTYPES_COMPOUND(*=)
  MP_SHAREDCTYPES_COMPOUND(/=)
  MP_SHAREDCTYPES_COMPOUND(%=)
  MP_SHAREDCTYPES_COMPOUND(&=)
  MP_SHAREDCTYPES_COMPOUND(|=)
  MP_SHAREDCTYPES_COMPOUND(^=)
#undef MP_SHAREDCTYPES_COMPOUND
  const LockedRef& operator++() const requires requires(T& t) { ++t; }
  {
    MaybeGuard g(sem_);
    ++*p_;
    return *this;
  }
  const LockedRef& operator--() const requires requires(T& t) { --t; }
  {
    MaybeGuard g(sem_);
    --*p_;
    return *this;
  }

 private:
  T* p_;
  multiprocessing::internal::SemLock* sem_;
};

template <class T>
std::ostream& operator<<(std::ostream& os, const LockedRef<T>& r) requires
    requires(std::ostream& o, const T& t) {
  o << t;
}
{ return os << r.get(); }

// The parts every wrapper has: the lock and its Python-facing methods.
class SynchronizedBase {
 public:
  // The lock; AttributeError when built with {.lock = false}.
  SyncLock& get_lock() const {
    if (!lock_) ThrowNoLock(type_name_);
    return *lock_;
  }
  bool acquire(bool block = true, synchronize::Timeout timeout = std::nullopt) {
    return get_lock().acquire(block, timeout);
  }
  void release() { get_lock().release(); }
  void lock() { get_lock().lock(); }
  bool try_lock() { return get_lock().try_lock(); }
  void unlock() { get_lock().unlock(); }
  bool has_lock() const { return lock_.has_value(); }

 protected:
  SynchronizedBase(std::optional<SyncLock> lock, std::string type_name)
      : lock_(std::move(lock)),
        sem_(lock_ ? lock_->semlock().get() : nullptr),
        type_name_(std::move(type_name)) {}
  mutable std::optional<SyncLock> lock_;  // a handle: locking is not a change
  multiprocessing::internal::SemLock* sem_;  // lock_'s, or null
  std::string type_name_;
};
}  // namespace internal

// A value with a lock (what Value returns).
template <CType T>
class Synchronized : public internal::SynchronizedBase {
 public:
  Synchronized(CValue<T> obj, std::optional<SyncLock> lock)
      : SynchronizedBase(std::move(lock), internal::CTypeNameOf<T>()),
        obj_(std::move(obj)) {}

  // n.value() = 3.0; double d = n.value(); n.value() += 1 (one locked step).
  internal::LockedRef<T> value() const { return {obj_.get(), sem_}; }
  T get() const { return value().get(); }
  void set(const T& v) const { value() = v; }
  CValue<T> get_obj() const { return obj_; }
  const std::optional<SyncLock>& lock_option() const { return lock_; }

  // "<Synchronized wrapper for c_double(3.1415927)>"; without a lock the
  // raw object's repr, as Python returns the raw object then.
  std::string repr() const {
    if (!lock_) return obj_.repr();
    std::string kind = "Synchronized";
    if constexpr (!std::is_arithmetic_v<T>) {
      std::string name = internal::CTypeNameOf<T>();
      size_t colon = name.rfind("::");
      kind += colon == std::string::npos ? name : name.substr(colon + 2);
    }
    internal::MaybeGuard g(sem_);
    return "<" + kind + " wrapper for " + obj_.repr() + ">";
  }

 private:
  CValue<T> obj_;
};

// An array with a lock (what Array returns); SynchronizedString for char.
template <CType T>
class SynchronizedArray : public internal::SynchronizedBase {
 public:
  using value_type = T;

  SynchronizedArray(CArray<T> obj, std::optional<SyncLock> lock)
      : SynchronizedBase(std::move(lock), internal::CTypeNameOf<T>() +
                                              "_Array_" +
                                              std::to_string(obj.size())),
        obj_(std::move(obj)) {}

  size_t size() const { return obj_.size(); }
  size_t len() const { return obj_.size(); }
  // a[i] (negative from the end; IndexError outside): locked read / write.
  internal::LockedRef<T> operator[](long long i) const {
    return {&obj_.data()[internal::CheckIndex(i, obj_.size())], sem_};
  }
  T get(long long i) const { return (*this)[i].get(); }
  void set(long long i, const T& v) const { (*this)[i] = v; }
  std::vector<T> slice(long long start, long long stop) const {
    internal::MaybeGuard g(sem_);
    return obj_.slice(start, stop);
  }
  // a[:]
  std::vector<T> list() const {
    internal::MaybeGuard g(sem_);
    return obj_.list();
  }
  template <class R>
  void set_slice(long long start, long long stop, const R& values) const {
    internal::MaybeGuard g(sem_);
    obj_.template set_slice<R>(start, stop, values);
  }
  void set_slice(long long start, long long stop,
                 std::initializer_list<T> values) const {
    internal::MaybeGuard g(sem_);
    obj_.set_slice(start, stop, values);
  }

  // Iteration yields LockedRefs: each element read or written under the
  // lock, as `for a in A` in Python.
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(T* p, multiprocessing::internal::SemLock* sem)
        : p_(p), sem_(sem) {}
    internal::LockedRef<T> operator*() const { return {p_, sem_}; }
    iterator& operator++() {
      ++p_;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++p_;
      return old;
    }
    bool operator==(const iterator& o) const { return p_ == o.p_; }

   private:
    T* p_ = nullptr;
    multiprocessing::internal::SemLock* sem_ = nullptr;
  };
  iterator begin() const { return {obj_.begin(), sem_}; }
  iterator end() const { return {obj_.end(), sem_}; }

  std::string value() const requires std::is_same_v<T, char> {
    internal::MaybeGuard g(sem_);
    return obj_.value();
  }
  std::string raw() const requires std::is_same_v<T, char> {
    internal::MaybeGuard g(sem_);
    return obj_.raw();
  }
  void set_value(std::string_view v) const requires std::is_same_v<T, char> {
    internal::MaybeGuard g(sem_);
    obj_.set_value(v);
  }
  void set_raw(std::string_view v) const requires std::is_same_v<T, char> {
    internal::MaybeGuard g(sem_);
    obj_.set_raw(v);
  }

  CArray<T> get_obj() const { return obj_; }
  const std::optional<SyncLock>& lock_option() const { return lock_; }

  // "<SynchronizedArray wrapper for <multiprocessing.sharedctypes.
  // c_int_Array_10 object at 0x...>>", SynchronizedString for char.
  std::string repr() const {
    if (!lock_) return obj_.repr();
    const char* kind =
        std::is_same_v<T, char> ? "SynchronizedString" : "SynchronizedArray";
    return std::string("<") + kind + " wrapper for " + obj_.repr() + ">";
  }

 private:
  CArray<T> obj_;
};

// ---- The module's functions. T is a C++ type (Value<double>) or a
// typecode (Value<'d'>).

template <CType T>
CValue<T> RawValue(const T& initial = T{}) {
  return CValue<T>(initial);
}
template <char C>
CValue<TypeCode<C>> RawValue(const TypeCode<C>& initial = TypeCode<C>{}) {
  return CValue<TypeCode<C>>(initial);
}

template <CType T>
CArray<T> RawArray(size_t length) {
  return CArray<T>(length);
}
template <CType T>
CArray<T> RawArray(std::initializer_list<T> init) {
  return CArray<T>(init);
}
template <CType T, class R>
requires InitializerRange<R, T> CArray<T> RawArray(R&& init) {
  return CArray<T>(std::forward<R>(init));
}
template <CType T>
requires std::is_same_v<T, char> CArray<T> RawArray(std::string_view text) {
  return CArray<T>(text);
}
template <char C>
CArray<TypeCode<C>> RawArray(size_t length) {
  return RawArray<TypeCode<C>>(length);
}
template <char C>
CArray<TypeCode<C>> RawArray(std::initializer_list<TypeCode<C>> init) {
  return RawArray<TypeCode<C>>(init);
}
template <char C, class R>
requires InitializerRange<R, TypeCode<C>> CArray<TypeCode<C>> RawArray(
    R&& init) {
  return RawArray<TypeCode<C>>(std::forward<R>(init));
}
template <char C>
requires(C == 'c') CArray<char> RawArray(std::string_view text) {
  return CArray<char>(text);
}

// synchronized(obj, lock): a wrapper using `lock` (a new RLock by default).
template <CType T>
Synchronized<T> synchronized(CValue<T> obj, LockOption lock = true) {
  return Synchronized<T>(std::move(obj), lock.resolve());
}
template <CType T>
SynchronizedArray<T> synchronized(CArray<T> obj, LockOption lock = true) {
  return SynchronizedArray<T>(std::move(obj), lock.resolve());
}

template <CType T>
Synchronized<T> Value(const T& initial = T{}, Options options = {}) {
  return synchronized(RawValue<T>(initial), options.lock);
}
template <char C>
Synchronized<TypeCode<C>> Value(const TypeCode<C>& initial = TypeCode<C>{},
                                Options options = {}) {
  return Value<TypeCode<C>>(initial, std::move(options));
}

template <CType T>
SynchronizedArray<T> Array(size_t length, Options options = {}) {
  return synchronized(RawArray<T>(length), options.lock);
}
template <CType T>
SynchronizedArray<T> Array(std::initializer_list<T> init,
                           Options options = {}) {
  return synchronized(RawArray<T>(init), options.lock);
}
template <CType T, class R>
requires InitializerRange<R, T> SynchronizedArray<T> Array(
    R&& init, Options options = {}) {
  return synchronized(RawArray<T>(std::forward<R>(init)), options.lock);
}
template <CType T>
requires std::is_same_v<T, char> SynchronizedArray<T> Array(
    std::string_view text, Options options = {}) {
  return synchronized(RawArray<T>(text), options.lock);
}
template <char C>
SynchronizedArray<TypeCode<C>> Array(size_t length, Options options = {}) {
  return Array<TypeCode<C>>(length, std::move(options));
}
template <char C>
SynchronizedArray<TypeCode<C>> Array(std::initializer_list<TypeCode<C>> init,
                                     Options options = {}) {
  return Array<TypeCode<C>>(init, std::move(options));
}
template <char C, class R>
requires InitializerRange<R, TypeCode<C>> SynchronizedArray<TypeCode<C>> Array(
    R&& init, Options options = {}) {
  return Array<TypeCode<C>>(std::forward<R>(init), std::move(options));
}
template <char C>
requires(C == 'c') SynchronizedArray<char> Array(std::string_view text,
                                                 Options options = {}) {
  return Array<char>(text, std::move(options));
}

// copy(obj): a new shared object holding a copy of obj's bytes.
template <CType T>
CValue<T> copy(const CValue<T>& obj) {
  return CValue<T>(obj.value());
}
template <CType T>
CArray<T> copy(const CArray<T>& obj) {
  CArray<T> out(obj.size());
  std::memcpy(static_cast<void*>(out.data()), obj.data(),
              obj.size() * sizeof(T));
  return out;
}

template <class T>
concept SharedCObject = requires(const T& t) {
  { t.repr() } -> std::convertible_to<std::string>;
  typename T::value_type;
}
&&(std::is_same_v<T, CValue<typename T::value_type>> ||
   std::is_same_v<T, CArray<typename T::value_type>> ||
   std::is_same_v<T, Synchronized<typename T::value_type>> ||
   std::is_same_v<T, SynchronizedArray<typename T::value_type>>);

// Prints repr(), as Python's print().
template <SharedCObject T>
std::ostream& operator<<(std::ostream& os, const T& obj) {
  return os << obj.repr();
}

}  // namespace multiprocessing::sharedctypes

namespace multiprocessing {
// The top-level names, as multiprocessing.Value / Array / RawValue /
// RawArray in Python.
using sharedctypes::Array;
using sharedctypes::RawArray;
using sharedctypes::RawValue;
using sharedctypes::Value;
}  // namespace multiprocessing

namespace multiprocessing::reduction {
// The objects pickle by reference: the shared block (its arena's descriptor
// out of band, the offset and size), an array's length, and a wrapper's lock
// (by semaphore name) or None. The receiver maps the same bytes.
template <class T>
struct Pickler<sharedctypes::CValue<T>> {
  static void Save(Writer& w, const sharedctypes::CValue<T>& v) {
    multiprocessing::internal::SaveBlock(w, *v.block());
  }
  static sharedctypes::CValue<T> Load(Reader& r) {
    return sharedctypes::CValue<T>(multiprocessing::internal::LoadBlock(r));
  }
};
template <class T>
struct Pickler<sharedctypes::CArray<T>> {
  static void Save(Writer& w, const sharedctypes::CArray<T>& a) {
    w.begin_tuple();
    multiprocessing::internal::SaveBlock(w, *a.block());
    w.write_uint(a.size());
    w.end_tuple();
  }
  static sharedctypes::CArray<T> Load(Reader& r) {
    std::shared_ptr<multiprocessing::internal::SharedBlock> block;
    uint64_t length = 0;
    int n = 0;
    r.read_sequence(
        Reader::kTuple,
        [&] {
          if (n == 0) {
            block = multiprocessing::internal::LoadBlock(r);
          } else if (n == 1) {
            length = r.read_int<uint64_t>();
          } else {
            r.fail_type("a shared array (block, length)");
          }
          ++n;
        },
        [&](size_t keep) { n = static_cast<int>(keep); });
    if (!block) throw TypeError("a pickled shared array needs its block");
    return sharedctypes::CArray<T>(std::move(block), length);
  }
};
namespace internal {
inline void SaveLockOption(Writer& w,
                           const std::optional<sharedctypes::SyncLock>& lock) {
  if (lock) {
    multiprocessing::internal::SaveSemLock(w, *lock->semlock());
  } else {
    w.write_none();
  }
}
inline std::optional<sharedctypes::SyncLock> LoadLockOption(Reader& r) {
  if (r.next_is_none()) {
    r.read_none();
    return std::nullopt;
  }
  auto sem = multiprocessing::internal::LoadSemLock(r);
  if (sem->maxvalue() != 1) {
    throw TypeError("a synchronized object's lock must be a Lock or RLock");
  }
  return sharedctypes::SyncLock(std::move(sem));
}
template <class W, class O>
W LoadWrapper(Reader& r) {
  std::optional<O> obj;
  std::optional<sharedctypes::SyncLock> lock;
  int n = 0;
  r.read_sequence(
      Reader::kTuple,
      [&] {
        if (n == 0) {
          obj = r.load<O>();
        } else if (n == 1) {
          lock = LoadLockOption(r);
        } else {
          r.fail_type("a synchronized wrapper (object, lock)");
        }
        ++n;
      },
      [&](size_t keep) { n = static_cast<int>(keep); });
  if (!obj) throw TypeError("a pickled synchronized wrapper needs its object");
  return W(std::move(*obj), std::move(lock));
}
}  // namespace internal
template <class T>
struct Pickler<sharedctypes::Synchronized<T>> {
  static void Save(Writer& w, const sharedctypes::Synchronized<T>& v) {
    w.begin_tuple();
    w.save(v.get_obj());
    internal::SaveLockOption(w, v.lock_option());
    w.end_tuple();
  }
  static sharedctypes::Synchronized<T> Load(Reader& r) {
    return internal::LoadWrapper<sharedctypes::Synchronized<T>,
                                 sharedctypes::CValue<T>>(r);
  }
};
template <class T>
struct Pickler<sharedctypes::SynchronizedArray<T>> {
  static void Save(Writer& w, const sharedctypes::SynchronizedArray<T>& v) {
    w.begin_tuple();
    w.save(v.get_obj());
    internal::SaveLockOption(w, v.lock_option());
    w.end_tuple();
  }
  static sharedctypes::SynchronizedArray<T> Load(Reader& r) {
    return internal::LoadWrapper<sharedctypes::SynchronizedArray<T>,
                                 sharedctypes::CArray<T>>(r);
  }
};
template <>
struct Pickler<sharedctypes::SyncLock> {
  static void Save(Writer& w, const sharedctypes::SyncLock& l) {
    multiprocessing::internal::SaveSemLock(w, *l.semlock());
  }
  static sharedctypes::SyncLock Load(Reader& r) {
    auto lock = internal::LoadLockOption(r);
    if (!lock) throw TypeError("expected a lock, got None");
    return *lock;
  }
};
}  // namespace multiprocessing::reduction

namespace multiprocessing::internal {
// ctx.Value<T>(), ctx.Array<T>(), ... (process/context.h): the module's
// functions, called while the context is the creating one, so the lock they
// make is the context's.
struct ContextSharedctypes {
  template <auto T, class... A>
  static auto Value(A&&... args) {
    return sharedctypes::Value<T>(std::forward<A>(args)...);
  }
  template <class T, class... A>
  static auto Value(A&&... args) {
    return sharedctypes::Value<T>(std::forward<A>(args)...);
  }
  template <auto T, class... A>
  static auto Array(A&&... args) {
    return sharedctypes::Array<T>(std::forward<A>(args)...);
  }
  template <class T, class... A>
  static auto Array(A&&... args) {
    return sharedctypes::Array<T>(std::forward<A>(args)...);
  }
  template <auto T, class... A>
  static auto RawValue(A&&... args) {
    return sharedctypes::RawValue<T>(std::forward<A>(args)...);
  }
  template <class T, class... A>
  static auto RawValue(A&&... args) {
    return sharedctypes::RawValue<T>(std::forward<A>(args)...);
  }
  template <auto T, class... A>
  static auto RawArray(A&&... args) {
    return sharedctypes::RawArray<T>(std::forward<A>(args)...);
  }
  template <class T, class... A>
  static auto RawArray(A&&... args) {
    return sharedctypes::RawArray<T>(std::forward<A>(args)...);
  }
};
}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_SHAREDCTYPES_SHAREDCTYPES_H_
