// Reading what a CPython manager's server sends beyond plain data: class
// instances (a managers.Token in a "#PROXY" reply, an exception in an
// "#ERROR" reply). The pickle loader only rebuilds built-in types, so such a
// reply is first rewritten, opcode by opcode, into one that loads as plain
// tuples: each global becomes (module, name, kGlobalTag), each call (REDUCE,
// NEWOBJ) (callable, args, kCallTag) and each BUILD (object, state,
// kBuildTag). Nothing is executed; the rewritten bytes go through the same
// checked loader as any other reply.
#ifndef MULTIPROCESSING_MANAGERS_INTERNAL_INSTANCES_H_
#define MULTIPROCESSING_MANAGERS_INTERNAL_INSTANCES_H_

#include <optional>
#include <string>
#include <string_view>

#include "reduction/object.h"

namespace multiprocessing::managers::internal {

inline constexpr std::string_view kGlobalTag{"\0mp.global", 10};
inline constexpr std::string_view kCallTag{"\0mp.call", 8};
inline constexpr std::string_view kBuildTag{"\0mp.build", 9};

// Loads `bytes`, with class instances as the tagged tuples above.
// UnpicklingError for malformed input (never a crash).
reduction::Object LoadWithInstances(std::string_view bytes);

// "module.name" when `o` is an instance (a call of a global, possibly
// followed by BUILD); nullopt otherwise. `args` receives the call's arguments.
std::optional<std::string> InstanceClass(const reduction::Object& o,
                                         reduction::Object* args = nullptr,
                                         reduction::Object* state = nullptr);

// An exception instance as (Python name, message): ("KeyError", "'x'"),
// ("Empty", ""), ("FileNotFoundError", "[Errno 2] No such file"); a
// non-instance as ("Exception", str(o)).
void ExceptionFromInstance(const reduction::Object& o, std::string* name,
                           std::string* message);

}  // namespace multiprocessing::managers::internal

#endif  // MULTIPROCESSING_MANAGERS_INTERNAL_INSTANCES_H_
