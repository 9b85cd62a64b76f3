#include "process/internal/target.h"

#include <utility>

#include "errors/errors.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace multiprocessing::internal {

void CallRegisteredTarget(const std::string& function, const std::string& args,
                          std::vector<int> fds) {
  reduction::OutOfBand oob;
  oob.fds = std::move(fds);
  const reduction::RegisteredFunction* registered =
      reduction::FindFunction(function);
  if (registered == nullptr) {
    throw PicklingError(
        "function '" + function +
        "' is not registered in this program; the parent found it, so the "
        "program run as the child (set_executable()) differs from the "
        "parent's: run the same program, or register the function in both "
        "with MP_REGISTER_FUNCTION(" +
        function + ")");
  }
  reduction::OutOfBand result;
  registered->call_pickled(args, &oob, &result);
}

}  // namespace multiprocessing::internal
