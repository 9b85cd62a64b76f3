#include "connection/listener.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connection/connection_internal.h"
#include "connection/handshake_queue.h"
#include "connection/listener_internal.h"
#include "errors/errors.h"
#include "process/process.h"

namespace multiprocessing::connection {
namespace {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const {
    return reinterpret_cast<const sockaddr*>(&storage);
  }
};

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

SocketAddress UnixSocketAddress(const std::string& path) {
  SocketAddress out;
  auto* un = reinterpret_cast<sockaddr_un*>(&out.storage);
  un->sun_family = AF_UNIX;
  if (path.empty()) throw ValueError("an 'AF_UNIX' address must not be empty");
  if (path.size() >= sizeof un->sun_path) {
    throw OSError(
        ENAMETOOLONG,
        absl::StrCat("AF_UNIX path too long (", path.size(), " bytes, at most ",
                     sizeof un->sun_path - 1, "): ", path));
  }
  std::memcpy(un->sun_path, path.data(), path.size());
  // An abstract name is exactly its bytes; a path is NUL-terminated.
  out.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                      path.size() + (path[0] == '\0' ? 0 : 1));
  return out;
}

// The socket addresses `host` stands for: IPv4 first (as Python's AF_INET
// sockets use), then IPv6.
std::vector<SocketAddress> InetSocketAddresses(const std::string& host,
                                               int port) {
  std::vector<SocketAddress> out;
  if (host.empty()) {
    SocketAddress any;
    auto* in = reinterpret_cast<sockaddr_in*>(&any.storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<std::uint16_t>(port));
    in->sin_addr.s_addr = htonl(INADDR_ANY);
    any.length = sizeof(sockaddr_in);
    out.push_back(any);
    return out;
  }
  int last_error = 0;
  for (int family : {AF_INET, AF_INET6}) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    const std::string service = std::to_string(port);
    const int rc =
        ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
    if (rc != 0) {
      last_error = rc;
      continue;
    }
    for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
      SocketAddress a;
      std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
      a.length = ai->ai_addrlen;
      out.push_back(a);
    }
    ::freeaddrinfo(result);
  }
  if (out.empty()) {
    throw OSError(0, absl::StrCat("cannot resolve host '", host,
                                  "': ", gai_strerror(last_error)));
  }
  return out;
}

Address ToAddress(const sockaddr_storage& storage, socklen_t length) {
  if (storage.ss_family == AF_INET || storage.ss_family == AF_INET6) {
    char host[INET6_ADDRSTRLEN] = {};
    int port;
    if (storage.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
      port = ntohs(in->sin_port);
    } else {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
      port = ntohs(in6->sin6_port);
    }
    return Address(std::string(host), port);
  }
  const auto* un = reinterpret_cast<const sockaddr_un*>(&storage);
  const std::size_t offset = offsetof(sockaddr_un, sun_path);
  if (length <= offset)
    return Address(std::string());  // an unnamed peer, as Python reports it
  std::size_t n = length - offset;
  if (un->sun_path[0] != '\0') n = strnlen(un->sun_path, n);
  return Address(std::string(un->sun_path, n));
}

Family ResolveFamily(std::optional<Family> given,
                     const std::optional<Address>& address) {
  if (given && address && *given != address->family()) {
    throw ValueError(
        absl::StrCat("family ", std::string(FamilyName(*given)),
                     " does not match the address ", address->repr(), " (",
                     std::string(FamilyName(address->family())), ")"));
  }
  if (given) return *given;
  if (address) return address->family();
  return Family::kUnix;
}

std::optional<std::string> ResolveAuthkey(
    bool authenticate, const std::optional<std::string>& authkey) {
  if (authkey) return authkey;
  if (authenticate) return current_process().authkey();
  return std::nullopt;
}

void SetNoDelay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Runs the handshake under a deadline; any failure is an AuthenticationError.
template <class F>
void Handshake(Connection& conn, Timeout timeout, F&& steps) {
  if (timeout) {
    const double seconds = std::max(0.0, std::min(timeout->count(), 1e9));
    internal::ConnectionAccess::SetReadDeadline(
        conn,
        std::chrono::steady_clock::now() +
            std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                std::chrono::duration<double>(seconds)));
  }
  try {
    steps();
  } catch (const AuthenticationError&) {
    throw;
  } catch (const Exception& e) {
    throw AuthenticationError(
        absl::StrCat("authentication handshake failed: ", e.what()));
  }
  internal::ConnectionAccess::SetReadDeadline(conn, std::nullopt);
}

constexpr char kPrivateDirPrefix[] = "pymp-";
constexpr char kPrivateSocketName[] = "listener.sock";

// The paths of every Unix socket bound in this network namespace, listening or
// not.
std::unordered_set<std::string> BoundUnixPaths() {
  std::unordered_set<std::string> out;
  std::ifstream in("/proc/net/unix");
  std::string line;
  std::getline(in, line);  // the column names
  while (std::getline(in, line)) {
    // Num RefCount Protocol Flags Type St Inode Path: the path is the 8th
    // field, absent for unnamed sockets.
    std::size_t at = 0;
    for (int field = 0; field < 7 && at != std::string::npos; ++field) {
      at = line.find_first_not_of(' ', at);
      if (at != std::string::npos) at = line.find(' ', at);
    }
    if (at == std::string::npos) continue;
    at = line.find_first_not_of(' ', at);
    if (at != std::string::npos && line[at] == '/') out.insert(line.substr(at));
  }
  return out;
}

// Removes the private directories of default 'AF_UNIX' listeners of this user
// under `base` whose process died without closing them: a "listener.sock" that
// no socket is bound to any more. Only that socket file and then the (empty)
// directory are removed, so anything else is left alone.
void RemoveStalePrivateDirs(const std::string& base) {
  DIR* dir = ::opendir(base.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> candidates;
  const uid_t uid = ::geteuid();
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view name = e->d_name;
    if (name.size() != sizeof kPrivateDirPrefix - 1 + 6 ||
        name.substr(0, sizeof kPrivateDirPrefix - 1) != kPrivateDirPrefix) {
      continue;
    }
    const std::string sock =
        absl::StrCat(base, "/", std::string(name), "/", kPrivateSocketName);
    struct stat st;
    if (::lstat(sock.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_uid == uid) {
      candidates.push_back(sock);
    }
  }
  ::closedir(dir);
  if (candidates.empty()) return;
  const std::unordered_set<std::string> bound = BoundUnixPaths();
  for (const std::string& sock : candidates) {
    if (bound.contains(sock)) continue;
    if (::unlink(sock.c_str()) == 0) {
      ::rmdir(sock.substr(0, sock.size() - sizeof kPrivateSocketName).c_str());
    }
  }
}

}  // namespace

struct Listener::State {
  int fd = -1;
  Address address{std::string()};
  std::optional<Address> last_accepted;
  std::optional<std::string> authkey;
  Timeout handshake_timeout;
  std::string unlink_path;  // a socket file to remove on close
  std::string private_dir;  // our own temporary directory to remove on close
  // With a key: the connections in their handshake, driven by one accept()
  // at a time (others wait their turn).
  std::unique_ptr<internal::HandshakeQueue> handshakes;
  std::mutex accept_mu;

  // A listener with a key runs its handshakes side by side, which needs a
  // non-blocking listening socket; one without stays a plain blocking
  // accept(2).
  void SetUpHandshakes(const ListenerOptions& options) {
    if (!authkey) return;
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      RaiseOSError("fcntl(O_NONBLOCK)", errno);
    }
    handshakes = std::make_unique<internal::HandshakeQueue>(
        *authkey, handshake_timeout, options.max_pending_handshakes);
  }

  void Close() {
    if (handshakes) handshakes->Clear();
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
    if (!unlink_path.empty()) {
      ::unlink(unlink_path.c_str());
      unlink_path.clear();
    }
    if (!private_dir.empty()) {
      ::rmdir(private_dir.c_str());
      private_dir.clear();
    }
  }
  ~State() { Close(); }
};

Listener::Listener(std::optional<Address> address, ListenerOptions options)
    : state_(std::make_unique<State>()) {
  const Family family = ResolveFamily(options.family, address);
  state_->authkey = ResolveAuthkey(options.authenticate, options.authkey);
  state_->handshake_timeout = options.handshake_timeout;
  if (!address) {
    if (family == Family::kInet) {
      address = Address("localhost", 0);
    } else {
      // A private directory, so that nobody else can race us for the name.
      std::string base;
      if (const char* tmp = ::getenv("TMPDIR"); tmp != nullptr && *tmp != '\0')
        base = tmp;
      // Keep the path within sockaddr_un's 108 bytes even when TMPDIR is deep.
      if (base.empty() || base.size() > 60) base = "/tmp";
      RemoveStalePrivateDirs(base);
      std::string templ = absl::StrCat(base, "/", kPrivateDirPrefix, "XXXXXX");
      if (::mkdtemp(templ.data()) == nullptr) RaiseOSError("mkdtemp", errno);
      state_->private_dir = templ;
      address = Address(absl::StrCat(templ, "/", kPrivateSocketName));
    }
  }

  if (family == Family::kUnix) {
    const SocketAddress sa = UnixSocketAddress(address->path());
    ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) RaiseOSError("socket", errno);
    if (::bind(fd.get(), sa.get(), sa.length) != 0) {
      RaiseOSError(absl::StrCat("bind(", address->repr(), ")"), errno);
    }
    if (!address->is_abstract()) state_->unlink_path = address->path();
    if (::listen(fd.get(), options.backlog) != 0) RaiseOSError("listen", errno);
    state_->fd = fd.release();
    state_->address = *address;
    state_->SetUpHandshakes(options);
    return;
  }

  int last_errno = 0;
  for (const SocketAddress& sa :
       InetSocketAddresses(address->host(), address->port())) {
    ScopedFd fd(::socket(sa.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      last_errno = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), sa.get(), sa.length) != 0 ||
        ::listen(fd.get(), options.backlog) != 0) {
      last_errno = errno;
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length) !=
        0) {
      RaiseOSError("getsockname", errno);
    }
    state_->address = ToAddress(bound, length);
    state_->fd = fd.release();
    state_->SetUpHandshakes(options);
    return;
  }
  RaiseOSError(absl::StrCat("bind(", address->repr(), ")"), last_errno);
}

Listener::~Listener() = default;
Listener::Listener(Listener&& other) noexcept = default;
Listener& Listener::operator=(Listener&& other) noexcept = default;

Connection Listener::accept() {
  if (!state_ || state_->fd < 0) throw OSError(EBADF, "listener is closed");
  if (state_->handshakes) {
    return *internal::ListenerAccess::AcceptOrWake(*this, -1);
  }
  sockaddr_storage peer{};
  socklen_t length;
  int fd;
  for (;;) {
    length = sizeof peer;
    fd = ::accept4(state_->fd, reinterpret_cast<sockaddr*>(&peer), &length,
                   SOCK_CLOEXEC);
    if (fd >= 0) break;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    RaiseOSError("accept", errno);
  }
  state_->last_accepted = ToAddress(peer, length);
  if (peer.ss_family != AF_UNIX) SetNoDelay(fd);
  return Connection(fd);
}

std::optional<Connection> internal::ListenerAccess::AcceptOrWake(
    Listener& listener, int wake_fd) {
  Listener::State* state = listener.state_.get();
  if (state == nullptr || state->fd < 0) {
    throw OSError(EBADF, "listener is closed");
  }
  if (!state->handshakes) {
    throw ValueError("AcceptOrWake needs a listener with an authkey");
  }
  std::lock_guard<std::mutex> lock(state->accept_mu);
  const std::optional<HandshakeQueue::Accepted> a =
      state->handshakes->Next(state->fd, wake_fd);
  if (!a) return std::nullopt;
  state->last_accepted = ToAddress(a->peer, a->peer_length);
  return Connection(a->fd);
}

void Listener::close() {
  if (state_) state_->Close();
}

int Listener::fileno() const {
  if (!state_ || state_->fd < 0) throw OSError(EBADF, "listener is closed");
  return state_->fd;
}

const Address& Listener::address() const {
  if (!state_) throw ValueError("the listener was moved from");
  return state_->address;
}

const std::optional<Address>& Listener::last_accepted() const {
  if (!state_) throw ValueError("the listener was moved from");
  return state_->last_accepted;
}

Connection Client(const Address& address, ClientOptions options) {
  const Family family = ResolveFamily(options.family, address);
  const std::optional<std::string> authkey =
      ResolveAuthkey(options.authenticate, options.authkey);
  std::optional<Connection> conn;
  if (family == Family::kUnix) {
    const SocketAddress sa = UnixSocketAddress(address.path());
    ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) RaiseOSError("socket", errno);
    while (::connect(fd.get(), sa.get(), sa.length) != 0) {
      if (errno != EINTR)
        RaiseOSError(absl::StrCat("connect(", address.repr(), ")"), errno);
    }
    conn.emplace(fd.release());
  } else {
    int last_errno = ECONNREFUSED;
    for (const SocketAddress& sa :
         InetSocketAddresses(address.host(), address.port())) {
      ScopedFd fd(::socket(sa.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (fd.get() < 0) {
        last_errno = errno;
        continue;
      }
      int rc;
      while ((rc = ::connect(fd.get(), sa.get(), sa.length)) != 0 &&
             errno == EINTR) {
      }
      if (rc != 0) {
        last_errno = errno;
        continue;
      }
      SetNoDelay(fd.get());
      conn.emplace(fd.release());
      break;
    }
    if (!conn)
      RaiseOSError(absl::StrCat("connect(", address.repr(), ")"), last_errno);
  }
  if (authkey) {
    Handshake(*conn, options.handshake_timeout, [&] {
      answer_challenge(*conn, *authkey);
      deliver_challenge(*conn, *authkey);
    });
  }
  return std::move(*conn);
}

}  // namespace multiprocessing::connection
