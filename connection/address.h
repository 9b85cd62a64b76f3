// Addresses for Listener and Client, modelled on Python's address formats:
//
//   Address a{"localhost", 6000};         // 'AF_INET': ("host", port);
//                                         // IPv4 or IPv6 ("::1");
//                                         // port 0 = any free port
//   Address u{"/tmp/app.sock"};           // 'AF_UNIX': a filesystem path
//   Address v{std::string("\0app", 4)};   // 'AF_UNIX' in Linux's abstract
//                                         // namespace (leading NUL)
//
// repr() is what Python's repr() shows for the same address (`('127.0.0.1',
// 6000)`, `'/tmp/app.sock'`, `b'\x00app'`); operator<< prints what print()
// shows (str()).
#ifndef MULTIPROCESSING_CONNECTION_ADDRESS_H_
#define MULTIPROCESSING_CONNECTION_ADDRESS_H_

#include <ostream>
#include <string>
#include <string_view>

namespace multiprocessing::connection {

// The socket family of a Listener or Client; Python spells them 'AF_INET' and
// 'AF_UNIX'.
enum class Family { kInet, kUnix };

// "AF_INET" or "AF_UNIX".
std::string_view FamilyName(Family family);
// Parses "AF_INET" / "AF_UNIX" (ValueError otherwise, e.g. for Windows'
// "AF_PIPE").
Family ParseFamily(std::string_view name);

class Address {
 public:
  // An 'AF_INET' address. `host` is a name or a numeric IPv4 / IPv6 address; ""
  // means every interface.
  Address(std::string host, int port);
  // An 'AF_UNIX' address: a path, or a name in the abstract namespace when it
  // starts with '\0'.
  Address(std::string path);  // NOLINT(google-explicit-constructor): Python
                              // passes a bare str
  Address(const char* path);  // NOLINT(google-explicit-constructor)

  Family family() const { return family_; }
  // For 'AF_INET' addresses.
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  // For 'AF_UNIX' addresses.
  const std::string& path() const { return host_; }
  bool is_abstract() const {
    return family_ == Family::kUnix && !host_.empty() && host_[0] == '\0';
  }

  std::string repr() const;
  std::string str() const;

  friend bool operator==(const Address& a, const Address& b) {
    return a.family_ == b.family_ && a.host_ == b.host_ && a.port_ == b.port_;
  }
  friend std::ostream& operator<<(std::ostream& os, const Address& a) {
    return os << a.str();
  }

 private:
  Family family_;
  std::string host_;  // the host for kInet, the path for kUnix
  int port_ = 0;
};

}  // namespace multiprocessing::connection

#endif  // MULTIPROCESSING_CONNECTION_ADDRESS_H_
