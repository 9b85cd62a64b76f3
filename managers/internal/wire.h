// The manager protocol shared by the client (proxy.cc) and the server
// (server.cc): requests are pickled tuples (id, method, args, kwds), with id
// None for the server's own functions (create, incref, decref, shutdown,
// ...); answers are (kind, result) with kind "#RETURN", "#ERROR" (result:
// (exception name, message)), "#TRACEBACK" (result: a description of a
// failure in the server) or "#PROXY" (result: (exposed, token)). This is the
// shape of CPython's managers; proxies, which CPython pickles as class
// instances, travel here as tuples tagged with a bytes marker no user value
// carries.
#ifndef MULTIPROCESSING_MANAGERS_INTERNAL_WIRE_H_
#define MULTIPROCESSING_MANAGERS_INTERNAL_WIRE_H_

#include <string>
#include <string_view>

#include "connection/address.h"
#include "managers/proxy.h"
#include "reduction/object.h"

namespace multiprocessing::managers::internal {

inline constexpr std::string_view kProxyTag{"\0mp.proxy", 9};
// A registered function: (kFunctionTag, name).
inline constexpr std::string_view kFunctionTag{"\0mp.function", 12};

// True when `o` is a tuple whose first item is the bytes `tag`.
bool IsTagged(const reduction::Object& o, std::string_view tag);

reduction::Object AddressToObject(const connection::Address& a);
// TypeError when `o` is not an address.
connection::Address AddressFromObject(const reduction::Object& o);

// (typeid, address, id) as a tuple, and back.
reduction::Object TokenToObject(const Token& t);
Token TokenFromObject(const reduction::Object& o);

// The recipe of a tagged proxy tuple: (tag, typeid, address, id, authkey or
// None, exposed or None).
reduction::Object RecipeToObject(const ProxyRecipe& r);
ProxyRecipe RecipeFromObject(const reduction::Object& o);

// ("#ERROR", exception) with the exception pickled as CPython pickles an
// instance of the class named `name` (builtins.IndexError,
// _queue.Empty, threading.BrokenBarrierError, ...; others as
// builtins.Exception("name: message")), so that CPython clients raise it.
std::string EncodeErrorReply(const std::string& name,
                             const std::string& message);

}  // namespace multiprocessing::managers::internal

#endif  // MULTIPROCESSING_MANAGERS_INTERNAL_WIRE_H_
