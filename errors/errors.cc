#include "errors/errors.h"

#include <cxxabi.h>
#include <string.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <typeinfo>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace multiprocessing {
namespace {

using Thrower = std::function<void(const std::string&)>;

template <class E>
Thrower ThrowerOf() {
  return [](const std::string& m) { throw E(m); };
}

const absl::flat_hash_map<std::string_view, Thrower>& Throwers() {
  static const auto* const kThrowers =
      new absl::flat_hash_map<std::string_view, Thrower>{
          {"Exception", ThrowerOf<Exception>()},
          {"ValueError", ThrowerOf<ValueError>()},
          {"TypeError", ThrowerOf<TypeError>()},
          {"AssertionError", ThrowerOf<AssertionError>()},
          {"RuntimeError", ThrowerOf<RuntimeError>()},
          {"NotImplementedError", ThrowerOf<NotImplementedError>()},
          {"LookupError", ThrowerOf<LookupError>()},
          {"KeyError", ThrowerOf<KeyError>()},
          {"IndexError", ThrowerOf<IndexError>()},
          {"AttributeError", ThrowerOf<AttributeError>()},
          {"ArithmeticError", ThrowerOf<ArithmeticError>()},
          {"OverflowError", ThrowerOf<OverflowError>()},
          {"ZeroDivisionError", ThrowerOf<ZeroDivisionError>()},
          {"EOFError", ThrowerOf<EOFError>()},
          {"MemoryError", ThrowerOf<MemoryError>()},
          {"RecursionError", ThrowerOf<RecursionError>()},
          {"StopIteration", ThrowerOf<StopIteration>()},
          {"BrokenBarrierError", ThrowerOf<BrokenBarrierError>()},
          {"PickleError", ThrowerOf<PickleError>()},
          {"PicklingError", ThrowerOf<PicklingError>()},
          {"UnpicklingError", ThrowerOf<UnpicklingError>()},
          {"ProcessError", ThrowerOf<ProcessError>()},
          {"AuthenticationError", ThrowerOf<AuthenticationError>()},
          {"TimeoutError", ThrowerOf<TimeoutError>()},
          {"RemoteError", ThrowerOf<RemoteError>()},
          {"OSError", [](const std::string& m) { throw OSError(0, m); }},
      };
  return *kThrowers;
}

std::string Demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

}  // namespace

void RaiseOSError(std::string_view call, int errno_value) {
  throw OSError(errno_value,
                absl::StrCat(std::string(call), ": ", strerror(errno_value)));
}

void RaiseByName(std::string_view python_name, const std::string& message) {
  const auto& throwers = Throwers();
  if (auto it = throwers.find(python_name); it != throwers.end()) {
    it->second(message);
  }
  throw RemoteError(absl::StrCat(std::string(python_name), ": ", message));
}

std::string PythonNameOf(const std::exception& e) {
  if (auto* ours = dynamic_cast<const Exception*>(&e))
    return ours->python_name();
  if (dynamic_cast<const std::out_of_range*>(&e)) return "IndexError";
  if (dynamic_cast<const std::invalid_argument*>(&e)) return "ValueError";
  if (dynamic_cast<const std::domain_error*>(&e)) return "ValueError";
  if (dynamic_cast<const std::length_error*>(&e)) return "ValueError";
  if (dynamic_cast<const std::overflow_error*>(&e)) return "OverflowError";
  if (dynamic_cast<const std::underflow_error*>(&e)) return "ArithmeticError";
  if (dynamic_cast<const std::range_error*>(&e)) return "ValueError";
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "MemoryError";
  if (dynamic_cast<const std::system_error*>(&e)) return "OSError";
  if (dynamic_cast<const std::runtime_error*>(&e)) return "RuntimeError";
  return Demangle(typeid(e).name());
}

}  // namespace multiprocessing
