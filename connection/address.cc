#include "connection/address.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"

namespace multiprocessing::connection {
namespace {

// Python's repr() of a str holding `s` (treated as Latin-1 bytes beyond ASCII
// is good enough for addresses, which are ASCII in practice).
std::string PyStrRepr(std::string_view s, bool as_bytes) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out = as_bytes ? "b" : "";
  out += quote;
  for (unsigned char c : s) {
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (as_bytes && c >= 0x80)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

}  // namespace

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
    return absl::StrCat("(", PyStrRepr(host_, false), ", ", port_, ")");
  }
  // Python reports abstract-namespace names as bytes.
  return PyStrRepr(host_, is_abstract());
}

std::string Address::str() const {
  if (family_ == Family::kInet || is_abstract()) return repr();
  return host_;
}

}  // namespace multiprocessing::connection
