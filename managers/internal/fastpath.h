// Direct decoding of the most common manager messages: a method request whose
// arguments are scalars, and a "#RETURN" reply carrying a scalar. Both sides
// try these first and fall back to the general unpickler when the bytes take
// any other form, so the results are the same, only cheaper to get.
#ifndef MULTIPROCESSING_MANAGERS_INTERNAL_FASTPATH_H_
#define MULTIPROCESSING_MANAGERS_INTERNAL_FASTPATH_H_

#include <string_view>
#include <vector>

#include "reduction/object.h"

namespace multiprocessing::managers::internal {

// A request (id, methodname, args, kwds) with id a str or None, args a tuple
// of scalars (None, bool, int, float, ASCII str, bytes) and kwds an empty
// dict. `id` and `method` view `bytes`.
struct ScalarRequest {
  bool id_is_none = false;
  std::string_view id;
  std::string_view method;
  std::vector<reduction::Object> args;
};

// True when `bytes` is such a request, pickled as this library's clients or
// CPython's do (protocol 2 to 5, with or without memo entries); false for
// anything else, which the caller decodes the general way.
bool ParseScalarRequest(std::string_view bytes, ScalarRequest* out);

// True when `bytes` is ("#RETURN", value) with a scalar value (as above).
bool ParseScalarReturn(std::string_view bytes, reduction::Object* value);

}  // namespace multiprocessing::managers::internal

#endif  // MULTIPROCESSING_MANAGERS_INTERNAL_FASTPATH_H_
