// The Picklers this library provides: bool, integers (up to 128 bits),
// floating point, strings, Bytes / ByteArray, None-like types, Object, Range
// and Slice; and the standard containers (vector, deque, list, array, set,
// map, their unordered kinds, pair, tuple, optional, variant) and
// std::chrono::duration, over the Picklers of their items. Part of
// reduction/pickle.h, which users include.
#ifndef MULTIPROCESSING_REDUCTION_STD_PICKLERS_H_
#define MULTIPROCESSING_REDUCTION_STD_PICKLERS_H_

#include <array>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <iterator>
#include <limits>
#include <list>
#include <map>
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

#include "absl/numeric/int128.h"
#include "errors/errors.h"
#include "reduction/object.h"
#include "reduction/pickler.h"
#include "reduction/reader.h"
#include "reduction/writer.h"

namespace multiprocessing::reduction {

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

#endif  // MULTIPROCESSING_REDUCTION_STD_PICKLERS_H_
