// MP_PICKLE_FIELDS(Type, field1, field2, ...): a struct pickles as the tuple
// of the fields listed. Part of reduction/pickle.h, which users include.
//
//   namespace geo {
//   struct Point { double x, y; };
//   MP_PICKLE_FIELDS(Point, x, y)   // pickled as the tuple (x, y)
//   }  // namespace geo
#ifndef MULTIPROCESSING_REDUCTION_PICKLE_FIELDS_H_
#define MULTIPROCESSING_REDUCTION_PICKLE_FIELDS_H_

#include <tuple>
#include <type_traits>
#include <utility>

#include "reduction/pickler.h"
#include "reduction/reader.h"
#include "reduction/std_picklers.h"
#include "reduction/writer.h"

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

#endif  // MULTIPROCESSING_REDUCTION_PICKLE_FIELDS_H_
