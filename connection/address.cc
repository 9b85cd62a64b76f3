#include "connection/address.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "reduction/pickle.h"

namespace multiprocessing::connection {

std::string_view FamilyName(Family family) {
  return family == Family::kInet ? "AF_INET" : "AF_UNIX";
}

Family ParseFamily(std::string_view name) {
  if (name == "AF_INET") return Family::kInet;
  if (name == "AF_UNIX") return Family::kUnix;
  throw ValueError(
      absl::StrCat("Family ", std::string(name),
                   " is not recognized; use 'AF_INET' or 'AF_UNIX'"));
}

Address::Address(std::string host, int port)
    : family_(Family::kInet), host_(std::move(host)), port_(port) {
  if (port < 0 || port > 65535) {
    throw OverflowError(absl::StrCat("port must be 0-65535, got ", port));
  }
}

Address::Address(std::string path)
    : family_(Family::kUnix), host_(std::move(path)) {}

Address::Address(const char* path) : Address(std::string(path)) {}

std::string Address::repr() const {
  if (family_ == Family::kInet) {
    return absl::StrCat("(", reduction::repr(host_), ", ", port_, ")");
  }
  // Python reports abstract-namespace names as bytes.
  return is_abstract() ? reduction::repr(reduction::Bytes{host_})
                       : reduction::repr(host_);
}

std::string Address::str() const {
  if (family_ == Family::kInet || is_abstract()) return repr();
  return host_;
}

}  // namespace multiprocessing::connection
