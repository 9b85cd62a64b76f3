// Calls a registered function by name with pickled arguments, in a spawn or
// forkserver child. Internal to //process.
#ifndef MULTIPROCESSING_PROCESS_INTERNAL_TARGET_H_
#define MULTIPROCESSING_PROCESS_INTERNAL_TARGET_H_

#include <string>
#include <vector>

namespace multiprocessing::internal {

// Throws PicklingError when `function` is not registered in this program;
// takes ownership of `fds`.
void CallRegisteredTarget(const std::string& function, const std::string& args,
                          std::vector<int> fds);

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_PROCESS_INTERNAL_TARGET_H_
