// The objects a manager's server holds (Python's "referents") and how their
// methods are called by name from proxies in other processes.
//
// A user class becomes shareable by listing the methods proxies may call:
//
//   struct MathsClass {
//     int add(int x, int y) { return x + y; }
//     int mul(int x, int y) { return x * y; }
//   };
//   MP_EXPOSE(MathsClass, add, mul);   // at namespace scope, outside any
//                                      // namespace
//
//   manager.register_("Maths", managers::Factory<MathsClass>());
//
// Arguments and results travel pickled (reduction/pickle.h), so parameter
// and result types must be Picklable. Methods whose names start with '_' are
// private: a proxy may call them only when the registration's `exposed` list
// names them (Python's rule for "public methods"). Calls on one object are
// serialised by a mutex of that object; different objects run concurrently.
//
// The built-in types of SyncManager (list, dict, Namespace, Queue, Lock, ...)
// are Referents too; their values are reduction::Object, and a list or dict
// may hold another shared object of the same manager (a.append(b)).
#ifndef MULTIPROCESSING_MANAGERS_REFERENT_H_
#define MULTIPROCESSING_MANAGERS_REFERENT_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "errors/errors.h"
#include "reduction/object.h"
#include "reduction/pickle.h"

namespace multiprocessing::managers {

class Referent;

// Python's StopIteration, raised by a generator-like referent's __next__ and
// re-raised by the proxy (multiprocessing::StopIteration).
using StopIteration = multiprocessing::StopIteration;

// One value inside a shared object or passed to one of its methods: plain
// data, or (when `ref` is set) another shared object of the same manager,
// which a proxy sent into its own manager turns into.
struct Item {
  Item() = default;
  Item(reduction::Object o) : object(std::move(o)) {}  // NOLINT: data converts
  explicit Item(std::shared_ptr<Referent> r) : ref(std::move(r)) {}
  reduction::Object object;
  std::shared_ptr<Referent> ref;
};

namespace internal {
// One empty dict shared by every Call without keywords (copies share it, and
// writing to one makes its own copy first), so that a call allocates none.
inline const reduction::Object& EmptyKwds() {
  static const auto* empty = new reduction::Object(reduction::Object::dict());
  return *empty;
}
}  // namespace internal

// The arguments of a method call: positional items and a dict of keywords.
struct Call {
  std::vector<Item> args;
  reduction::Object kwds = internal::EmptyKwds();

  // The plain values of the positional arguments (shared objects become
  // copies of their values), as a tuple.
  reduction::Object args_tuple() const;
  // Checks the count: TypeError "<what> takes from min to max arguments".
  void expect(std::string_view what, size_t min, size_t max) const;
};

// A shared object held by a manager's server.
class Referent {
 public:
  virtual ~Referent() = default;
  // Calls `method` with `call`; what it throws is re-raised by the caller's
  // proxy.
  virtual Item call(const std::string& method, Call& call) = 0;
  // Every method name callable through call(), public and private.
  virtual std::vector<std::string> methods() const = 0;
  // Python's repr() and str() of the object.
  virtual std::string repr() const;
  virtual std::string str() const { return repr(); }
  // A copy of the value, for _getvalue(); TypeError when there is none.
  virtual reduction::Object value() const;
  // Wakes every thread blocked in a call on this object (the server is
  // stopping); those calls then throw.
  virtual void interrupt() {}
  // The type name used in repr() and errors.
  virtual std::string type_name() const { return "object"; }
};

// The value of an item: the object itself, or a copy of a shared object's
// value.
reduction::Object ValueOf(const Item& item);
// repr() of an item (a shared object prints its referent's repr).
std::string ReprOf(const Item& item);

// What MP_EXPOSE records for each method of T.
template <class T>
struct MethodEntry {
  const char* name;
  // Calls the method on `self` with the pickled argument tuple `args` and
  // returns the pickled result.
  Item (*invoke)(T& self, Call& call);
};

// Specialised by MP_EXPOSE(T, methods...).
template <class T>
struct Exposed {
  static constexpr bool kDeclared = false;
};

namespace internal {

// Converts plain call arguments to the tuple of the method's parameters.
template <class Tuple>
Tuple ArgsAs(const Call& call) {
  reduction::OutOfBand oob;
  return reduction::loads<Tuple>(reduction::dumps(call.args_tuple(), &oob),
                                 &oob);
}

template <class R>
Item ResultOf(R&& value) {
  using D = std::remove_cvref_t<R>;
  if constexpr (std::is_same_v<D, reduction::Object>) {
    return Item(std::forward<R>(value));
  } else if constexpr (std::is_convertible_v<D, std::shared_ptr<Referent>>) {
    return Item(std::shared_ptr<Referent>(std::forward<R>(value)));
  } else {
    reduction::OutOfBand oob;
    return Item(reduction::loads<reduction::Object>(
        reduction::dumps(value, &oob), &oob));
  }
}

template <auto M, class T, class R, class... P>
Item InvokeMember(T& self, Call& call) {
  auto args = ArgsAs<std::tuple<std::decay_t<P>...>>(call);
  if constexpr (std::is_void_v<R>) {
    std::apply([&](auto&&... a) { (self.*M)(std::move(a)...); },
               std::move(args));
    return Item();
  } else {
    return ResultOf(
        std::apply([&](auto&&... a) -> R { return (self.*M)(std::move(a)...); },
                   std::move(args)));
  }
}

template <auto M, class T, class R, class C, class... P>
MethodEntry<T> MakeEntry(const char* name, R (C::*)(P...)) {
  return {name, &InvokeMember<M, T, R, P...>};
}
template <auto M, class T, class R, class C, class... P>
MethodEntry<T> MakeEntry(const char* name, R (C::*)(P...) const) {
  return {name, &InvokeMember<M, T, R, P...>};
}
template <auto M, class T, class R, class C, class... P>
MethodEntry<T> MakeEntry(const char* name, R (C::*)(P...) noexcept) {
  return {name, &InvokeMember<M, T, R, P...>};
}
template <auto M, class T, class R, class C, class... P>
MethodEntry<T> MakeEntry(const char* name, R (C::*)(P...) const noexcept) {
  return {name, &InvokeMember<M, T, R, P...>};
}

template <auto M>
struct MemberTraits;
template <class C, class R, class... P, R (C::*M)(P...)>
struct MemberTraits<M> {
  using Class = C;
};
template <class C, class R, class... P, R (C::*M)(P...) const>
struct MemberTraits<M> {
  using Class = C;
};

[[noreturn]] void RaiseNoMethod(std::string_view type, std::string_view name);
std::string DefaultRepr(std::string_view type, const void* address);

}  // namespace internal

// One exposed method under a name of one's choosing, for method names C++
// cannot spell ("__next__"):
//   MP_EXPOSE_METHODS(Generator,
//   managers::Method<&Generator::next>("__next__"));
template <auto M>
MethodEntry<typename internal::MemberTraits<M>::Class> Method(
    const char* name) {
  using T = typename internal::MemberTraits<M>::Class;
  return internal::MakeEntry<M, T>(name, M);
}

// A user object held by the server, its methods listed by MP_EXPOSE.
template <class T>
class ObjectReferent : public Referent {
 public:
  static_assert(Exposed<T>::kDeclared,
                "list the methods proxies may call with MP_EXPOSE(Type, "
                "method1, method2, ...) at global namespace scope");
  explicit ObjectReferent(std::shared_ptr<T> object)
      : object_(std::move(object)) {}

  Item call(const std::string& method, Call& call) override {
    for (const MethodEntry<T>& m : Exposed<T>::methods()) {
      if (method == m.name) {
        std::lock_guard<std::mutex> lock(mu_);
        return m.invoke(*object_, call);
      }
    }
    internal::RaiseNoMethod(type_name(), method);
  }
  std::vector<std::string> methods() const override {
    std::vector<std::string> names;
    for (const MethodEntry<T>& m : Exposed<T>::methods()) {
      names.emplace_back(m.name);
    }
    return names;
  }
  std::string type_name() const override { return Exposed<T>::kName; }
  std::string repr() const override {
    return internal::DefaultRepr(type_name(), object_.get());
  }
  T& object() { return *object_; }

 private:
  std::mutex mu_;
  std::shared_ptr<T> object_;
};

// The creator of shared objects for one typeid: called in the server with the
// arguments the client passed.
using Callable = std::function<std::shared_ptr<Referent>(Call&)>;

// A Callable constructing T from the arguments (converted to Args...), for a
// class listed with MP_EXPOSE: managers::Factory<MathsClass>() or
// managers::Factory<Point, double, double>().
template <class T, class... Args>
Callable Factory() {
  return [](Call& call) -> std::shared_ptr<Referent> {
    auto args = internal::ArgsAs<std::tuple<std::decay_t<Args>...>>(call);
    auto object = std::apply(
        [](auto&&... a) { return std::make_shared<T>(std::move(a)...); },
        std::move(args));
    return std::make_shared<ObjectReferent<T>>(std::move(object));
  };
}

// A Callable calling `fn` (no arguments) and sharing what it returns, an
// object of a class listed with MP_EXPOSE or a shared_ptr<Referent>.
template <class R>
Callable FromFunction(R (*fn)()) {
  return [fn](Call& call) -> std::shared_ptr<Referent> {
    call.expect("the registered function", 0, 0);
    if constexpr (std::is_convertible_v<R, std::shared_ptr<Referent>>) {
      return fn();
    } else {
      return std::make_shared<ObjectReferent<R>>(std::make_shared<R>(fn()));
    }
  };
}

// Every shared object of the same kind reached by one Callable: returns
// `object` to each caller (Python's `callable=lambda: queue`).
inline Callable Shared(std::shared_ptr<Referent> object) {
  return [object](Call& call) {
    call.expect("the registered callable", 0, 0);
    return object;
  };
}
template <class T>
Callable Shared(std::shared_ptr<T> object) requires(
    !std::is_base_of_v<Referent, T>) {
  return Shared(std::shared_ptr<Referent>(
      std::make_shared<ObjectReferent<T>>(std::move(object))));
}

}  // namespace multiprocessing::managers

#define MP_MANAGERS_INTERNAL_EXPAND(x) x
#define MP_MANAGERS_INTERNAL_ENTRY(T, m) \
  ::multiprocessing::managers::internal::MakeEntry<&T::m, T>(#m, &T::m)
#define MP_MANAGERS_INTERNAL_FE1(T, a) MP_MANAGERS_INTERNAL_ENTRY(T, a)
#define MP_MANAGERS_INTERNAL_FE2(T, a, ...) \
  MP_MANAGERS_INTERNAL_ENTRY(T, a),         \
      MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_FE1(T, __VA_ARGS__))
#define MP_MANAGERS_INTERNAL_FE3(T, a, ...) \
  MP_MANAGERS_INTERNAL_ENTRY(T, a),         \
      MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_FE2(T, __VA_ARGS__))
#define MP_MANAGERS_INTERNAL_FE4(T, a, ...) \
  MP_MANAGERS_INTERNAL_ENTRY(T, a),         \
      MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_FE3(T, __VA_ARGS__))
#define MP_MANAGERS_INTERNAL_FE5(T, a, ...) \
  MP_MANAGERS_INTERNAL_ENTRY(T, a),         \
      MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_FE4(T, __VA_ARGS__))
#define MP_MANAGERS_INTERNAL_FE6(T, a, ...) \
  MP_MANAGERS_INTERNAL_ENTRY(T, a),         \
      MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_FE5(T, __VA_ARGS__))
#define MP_MANAGERS_INTERNAL_FE7(T, a, ...) \
  MP_MANAGERS_INTERNAL_ENTRY(T, a),         \
      MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_FE6(T, __VA_ARGS__))
#define MP_MANAGERS_INTERNAL_FE8(T, a, ...) \
  MP_MANAGERS_INTERNAL_ENTRY(T, a),         \
      MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_FE7(T, __VA_ARGS__))
#define MP_MANAGERS_INTERNAL_PICK(_1, _2, _3, _4, _5, _6, _7, _8, N, ...) N

// MP_EXPOSE(Type, method1, method2, ...): the methods of Type that a proxy
// can call by name (up to 8). Use at global namespace scope.
#define MP_EXPOSE(Type, ...)                                                   \
  template <>                                                                  \
  struct multiprocessing::managers::Exposed<Type> {                            \
    static constexpr bool kDeclared = true;                                    \
    static constexpr const char* kName = #Type;                                \
    static const std::vector<MethodEntry<Type>>& methods() {                   \
      static const std::vector<MethodEntry<Type>> entries = {                  \
          MP_MANAGERS_INTERNAL_EXPAND(MP_MANAGERS_INTERNAL_PICK(               \
              __VA_ARGS__, MP_MANAGERS_INTERNAL_FE8, MP_MANAGERS_INTERNAL_FE7, \
              MP_MANAGERS_INTERNAL_FE6, MP_MANAGERS_INTERNAL_FE5,              \
              MP_MANAGERS_INTERNAL_FE4, MP_MANAGERS_INTERNAL_FE3,              \
              MP_MANAGERS_INTERNAL_FE2,                                        \
              MP_MANAGERS_INTERNAL_FE1)(Type, __VA_ARGS__))};                  \
      return entries;                                                          \
    }                                                                          \
  }

// MP_EXPOSE_METHODS(Type, managers::Method<&Type::m>("name"), ...): the same
// with explicit names. Use at global namespace scope.
#define MP_EXPOSE_METHODS(Type, ...)                                       \
  template <>                                                              \
  struct multiprocessing::managers::Exposed<Type> {                        \
    static constexpr bool kDeclared = true;                                \
    static constexpr const char* kName = #Type;                            \
    static const std::vector<MethodEntry<Type>>& methods() {               \
      static const std::vector<MethodEntry<Type>> entries = {__VA_ARGS__}; \
      return entries;                                                      \
    }                                                                      \
  }

#endif  // MULTIPROCESSING_MANAGERS_REFERENT_H_
