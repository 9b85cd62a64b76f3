#include "process/internal/target.h"

#include <unistd.h>

#include "errors/errors.h"

namespace multiprocessing::internal {

void CallRegisteredTarget(const std::string& function, const std::string& args,
                          std::vector<int> fds) {
  (void)args;
  for (int fd : fds) ::close(fd);
  throw PicklingError("function '" + function + "' is not registered");
}

}  // namespace multiprocessing::internal
