// Functions travel by name, as pickle does it: a process that starts a child
// with spawn or forkserver, or submits a task to a pool, sends the function's
// registered name and the pickled arguments; the other side looks the name up
// and calls it.
//
//   int square(int x) { return x * x; }
//   MP_REGISTER_FUNCTION(square);   // at namespace scope, in any .cc file
//                                   // linked in
//
//   const RegisteredFunction& f = RequireFunction(&square);
//                                   // PicklingError if not registered
//   std::string result =
//       f.call_pickled(dumps(std::make_tuple(7)), nullptr, nullptr);
//   loads<int>(result) == 49
//
// A function is registered under its name as written in the macro
// (MP_REGISTER_FUNCTION(ns::f) registers "ns::f"); overloaded names need one
// function per name. Parameters and results must be Picklable
// (reduction/pickle.h); arguments arrive as a std::tuple of the decayed
// parameter types.
#ifndef MULTIPROCESSING_REDUCTION_REGISTRY_H_
#define MULTIPROCESSING_REDUCTION_REGISTRY_H_

#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "errors/errors.h"
#include "reduction/pickle.h"

namespace multiprocessing::reduction {

struct RegisteredFunction {
  std::string name;
  const void* address;  // the function pointer
  // Calls the function with `args`, a pickled std::tuple of its parameters
  // (decayed types), and returns the pickled result (None for void). Exceptions
  // thrown by the function propagate unchanged.
  std::string (*call_pickled)(std::string_view args, OutOfBand* args_oob,
                              OutOfBand* result_oob);
};

// nullptr if unknown.
const RegisteredFunction* FindFunction(std::string_view name);
// By pointer; nullptr if unknown.
const RegisteredFunction* FindFunction(const void* address);
// By name (a string literal would otherwise convert to `const void*`).
inline const RegisteredFunction* FindFunction(const char* name) {
  return FindFunction(std::string_view(name));
}

namespace internal {

// Records `fn` (called by MP_REGISTER_FUNCTION during static initialisation). A
// second registration of the same name with a different address is ignored with
// a warning on stderr.
bool RegisterFunction(RegisteredFunction fn);
[[noreturn]] void FunctionNotRegistered(const void* address);

template <class T>
const void* FunctionAddress(T* fn) {
  return reinterpret_cast<const void*>(fn);
}

template <auto Fn, class R, class... A>
std::string CallPickled(std::string_view args, OutOfBand* args_oob,
                        OutOfBand* result_oob) {
  auto params = loads<std::tuple<std::decay_t<A>...>>(args, args_oob);
  if constexpr (std::is_void_v<R>) {
    std::apply(Fn, std::move(params));
    return dumps(nullptr, result_oob);
  } else {
    return dumps(std::apply(Fn, std::move(params)), result_oob);
  }
}

template <auto Fn, class R, class... A>
bool Register(const char* name, R (*)(A...)) {
  (RequirePicklable<std::decay_t<A>>(), ...);
  if constexpr (!std::is_void_v<R>) RequirePicklable<std::decay_t<R>>();
  return RegisterFunction(
      {name, FunctionAddress(Fn), &CallPickled<Fn, R, A...>});
}
template <auto Fn, class R, class... A>
bool Register(const char* name, R (*)(A...) noexcept) {
  return Register<Fn, R, A...>(name, static_cast<R (*)(A...)>(nullptr));
}

}  // namespace internal

// The registration of `fn`, or PicklingError: "function 'f' is not registered;
// add MP_REGISTER_FUNCTION(f) at namespace scope so that spawn/forkserver
// children can find it".
template <class R, class... A>
const RegisteredFunction& RequireFunction(R (*fn)(A...)) {
  const RegisteredFunction* f = FindFunction(internal::FunctionAddress(fn));
  if (f == nullptr)
    internal::FunctionNotRegistered(internal::FunctionAddress(fn));
  return *f;
}
template <class R, class... A>
const RegisteredFunction& RequireFunction(R (*fn)(A...) noexcept) {
  const RegisteredFunction* f = FindFunction(internal::FunctionAddress(fn));
  if (f == nullptr)
    internal::FunctionNotRegistered(internal::FunctionAddress(fn));
  return *f;
}

}  // namespace multiprocessing::reduction

#define MP_REGISTER_INTERNAL_CONCAT2(a, b) a##b
#define MP_REGISTER_INTERNAL_CONCAT(a, b) MP_REGISTER_INTERNAL_CONCAT2(a, b)

// Registers the function `fn` under the name "fn" (as written). Use at
// namespace scope.
#define MP_REGISTER_FUNCTION(fn)                                  \
  [[maybe_unused]] static const bool MP_REGISTER_INTERNAL_CONCAT( \
      mp_registered_function_, __COUNTER__) =                     \
      ::multiprocessing::reduction::internal::Register<&fn>(#fn, &fn)

#endif  // MULTIPROCESSING_REDUCTION_REGISTRY_H_
