// Listener and Client: connections between processes that did not create them
// together, over TCP ('AF_INET', IPv4 or IPv6) or Unix domain sockets
// ('AF_UNIX'), with HMAC challenge authentication.
//
//   Listener listener({"localhost", 6000}, {.authkey = "secret password"});
//   Connection conn = listener.accept();   // authenticated both ways
//   std::cout << "connection accepted from " << *listener.last_accepted()
//             << "\n";
//
//   Connection c = Client({"localhost", 6000}, {.authkey = "secret password"});
//
// Both talk to Python's multiprocessing.connection.Listener / Client: the
// handshake is CPython's byte for byte (3.12's "{sha256}" digest negotiation,
// and the HMAC-MD5 of CPython 3.11 and older). No message from the peer is
// decoded before it has proved it knows the key. A wrong key raises
// AuthenticationError on both sides; a peer that stalls during the handshake
// fails it after `handshake_timeout`.
#ifndef MULTIPROCESSING_CONNECTION_LISTENER_H_
#define MULTIPROCESSING_CONNECTION_LISTENER_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "connection/address.h"
#include "connection/connection.h"

namespace multiprocessing::connection {

// How long a handshake may take by default (CPython's CONNECTION_TIMEOUT).
inline constexpr std::chrono::seconds kDefaultHandshakeTimeout{20};
// How many accepted connections may be in their handshake at once by default.
inline constexpr std::size_t kDefaultMaxPendingHandshakes = 256;

class Listener;
namespace internal {
struct ListenerAccess;
}  // namespace internal

struct ListenerOptions {
  // Inferred from the address when unset; 'AF_UNIX' when there is no address
  // either.
  std::optional<Family> family;
  int backlog = 1;
  // Authenticate with current_process().authkey() when no authkey is given.
  bool authenticate = false;
  // Raw bytes. When set, every accepted connection is authenticated with it.
  std::optional<std::string> authkey;
  // Bounds the whole authentication handshake of each connection (both
  // challenges, every read and write); std::nullopt waits for ever.
  Timeout handshake_timeout = kDefaultHandshakeTimeout;
  // With a key: how many connections may be in their handshake at once.
  // Beyond it, a new connection evicts the oldest one that has not yet proved
  // it knows the key (see accept()).
  std::size_t max_pending_handshakes = kDefaultMaxPendingHandshakes;
};

struct ClientOptions {
  std::optional<Family> family;
  bool authenticate = false;
  std::optional<std::string> authkey;
  Timeout handshake_timeout = kDefaultHandshakeTimeout;
};

class Listener {
 public:
  // Binds and listens. With no address: an 'AF_INET' listener on ("localhost",
  // 0), or an 'AF_UNIX' socket "listener.sock" in a private temporary
  // directory (pymp-XXXXXX under $TMPDIR or /tmp) that close() removes. A
  // process killed before close() leaves that directory behind, so making one
  // first removes those of this user whose socket no process has bound any
  // more (per /proc/net/unix, which also lists sockets bound but not yet
  // listening, so a listener being set up is never taken for a dead one; it
  // covers this network namespace, where the server's clients are). Port
  // 0 picks a free port (see address()). A path given for 'AF_UNIX' is
  // unlinked by close(); abstract names need no cleanup.
  explicit Listener(std::optional<Address> address = std::nullopt,
                    ListenerOptions options = {});
  ~Listener();
  Listener(Listener&& other) noexcept;
  Listener& operator=(Listener&& other) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Waits for a connection and, when a key is set, returns the first one that
  // authenticates. The handshakes of all pending connections proceed side by
  // side in the calling thread (non-blocking sockets and one poll(2), no
  // thread per peer), each bounded by handshake_timeout, so silent or slow
  // peers do not delay a client that knows the key. A pending connection that
  // fails its handshake (wrong key, junk, hang-up, or past its deadline) is
  // closed and raises AuthenticationError from this call, as in Python; the
  // listener goes on accepting and the other handshakes stay pending for the
  // next call (between calls they wait, but their deadlines run). At most
  // max_pending_handshakes are pending: beyond it a new connection evicts the
  // OLDEST pending one that has not yet answered our challenge correctly
  // (closed without an error here), so a flood of connections cannot lock a
  // newcomer with the key out. When accept(2) runs out of descriptors (EMFILE,
  // ENFILE) it backs off instead of spinning and logs a warning once. Threads
  // calling accept() at once take turns. Without a key, accept() is a plain
  // accept(2). OSError once closed.
  Connection accept();
  // Closes the listening socket (and removes its socket file). Harmless twice.
  void close();
  // The listening socket, e.g. for wait() before accept(); OSError once closed.
  int fileno() const;

  // The bound address (with the chosen port, and the numeric host:
  // ('127.0.0.1', 6000)).
  const Address& address() const;
  // The peer of the last accepted connection; std::nullopt before the first.
  const std::optional<Address>& last_accepted() const;

 private:
  friend struct internal::ListenerAccess;
  struct State;
  std::unique_ptr<State> state_;
};

// Connects to a Listener at `address` and, when a key is set, authenticates
// (answering first, then challenging, the mirror image of Listener::accept).
Connection Client(const Address& address, ClientOptions options = {});

// The handshake itself, for connections made some other way. Malformed,
// over-long or missing replies (the peer closed, or it stalled past a deadline
// the caller set) raise AuthenticationError too.
//
// Sends a random challenge ("{digest_name}" followed by 40 random bytes) and
// checks the peer's HMAC of it, accepting the peer's choice of md5 (CPython
// <= 3.11), sha256 or sha384. Sends #WELCOME# or #FAILURE#; raises
// AuthenticationError on failure.
void deliver_challenge(Connection& connection, std::string_view authkey,
                       std::string_view digest_name = "sha256");
// Answers a challenge from deliver_challenge (of this library or of any
// CPython) and raises AuthenticationError unless the peer welcomes the answer.
void answer_challenge(Connection& connection, std::string_view authkey);

}  // namespace multiprocessing::connection

#endif  // MULTIPROCESSING_CONNECTION_LISTENER_H_
