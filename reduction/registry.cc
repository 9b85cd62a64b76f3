#include "reduction/registry.h"

#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/debugging/symbolize.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace multiprocessing::reduction {
namespace {

struct Registry {
  absl::Mutex mu;
  std::deque<RegisteredFunction> functions
      ABSL_GUARDED_BY(mu);  // stable addresses
  absl::flat_hash_map<std::string, const RegisteredFunction*> by_name
      ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<const void*, const RegisteredFunction*> by_address
      ABSL_GUARDED_BY(mu);
};

Registry& GetRegistry() {
  static Registry* registry =
      new Registry;  // never destroyed: lookups may run during exit
  return *registry;
}

}  // namespace

namespace internal {

bool RegisterFunction(RegisteredFunction fn) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto it = r.by_name.find(fn.name);
  if (it != r.by_name.end()) {
    if (it->second->address != fn.address) {
      std::fprintf(stderr,
                   "multiprocessing: MP_REGISTER_FUNCTION(%s) names a "
                   "different function than an earlier "
                   "registration of the same name; the first one is kept\n",
                   fn.name.c_str());
    }
    return false;
  }
  r.functions.push_back(std::move(fn));
  const RegisteredFunction* stored = &r.functions.back();
  r.by_name.emplace(stored->name, stored);
  r.by_address.emplace(stored->address, stored);
  return true;
}

void FunctionNotRegistered(const void* address) {
  // The function's name from the program's symbol table, when it has one.
  std::string name;
  char buf[1024];
  if (absl::Symbolize(address, buf, sizeof buf)) name = buf;
  if (name.empty()) {
    Dl_info info;
    if (dladdr(address, &info) != 0 && info.dli_sname != nullptr &&
        info.dli_saddr == address) {
      int status = 0;
      char* demangled =
          abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
      name = status == 0 && demangled != nullptr ? demangled : info.dli_sname;
      std::free(demangled);
    }
  }
  if (size_t paren = name.find('('); paren != std::string::npos)
    name.resize(paren);
  std::string shown = name.empty() ? absl::StrFormat("at %p", address) : name;
  throw PicklingError(absl::StrCat(
      "function '", shown, "' is not registered; add MP_REGISTER_FUNCTION(",
      name.empty() ? "<function>" : name,
      ") at namespace scope so that spawn/forkserver children can find it"));
}

}  // namespace internal

const RegisteredFunction* FindFunction(std::string_view name) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto it = r.by_name.find(std::string(name));
  return it == r.by_name.end() ? nullptr : it->second;
}

const RegisteredFunction* FindFunction(const void* address) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto it = r.by_address.find(address);
  return it == r.by_address.end() ? nullptr : it->second;
}

}  // namespace multiprocessing::reduction
