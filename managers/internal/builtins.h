// The shared objects of SyncManager (Python's list, dict, Namespace, Value,
// Array, queue.Queue and the threading primitives), held by a server.
#ifndef MULTIPROCESSING_MANAGERS_INTERNAL_BUILTINS_H_
#define MULTIPROCESSING_MANAGERS_INTERNAL_BUILTINS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "managers/referent.h"
#include "reduction/object.h"

namespace multiprocessing::managers::internal {

// Turns an argument value into an item: a pickled proxy of the server
// serving the current request becomes its referent. Installed by the server
// for the duration of each request.
using Resolver = std::function<Item(const reduction::Object&)>;
void SetResolver(const Resolver* resolver);
Item Resolve(const reduction::Object& o);

// The creators of SyncManager's typeids, and the exposed methods of each.
struct Builtin {
  const char* type_id;
  Callable callable;
  std::vector<std::string> exposed;
  std::map<std::string, std::string> method_to_typeid = {};
  bool create_method = true;
};
const std::vector<Builtin>& Builtins();

// Python's ordering of values (for list.sort()); TypeError for values that
// do not compare.
bool Less(const reduction::Object& a, const reduction::Object& b);

}  // namespace multiprocessing::managers::internal

#endif  // MULTIPROCESSING_MANAGERS_INTERNAL_BUILTINS_H_
