// What servers built on Listener (the manager's) need beyond its public API.
#ifndef MULTIPROCESSING_CONNECTION_LISTENER_INTERNAL_H_
#define MULTIPROCESSING_CONNECTION_LISTENER_INTERNAL_H_

#include <optional>

#include "connection/connection.h"
#include "connection/listener.h"

namespace multiprocessing::connection::internal {

struct ListenerAccess {
  // Listener::accept() (of a listener with a key) for a server's accept loop:
  // also returns std::nullopt as soon as `wake_fd` is readable, so that the
  // server can stop while handshakes are pending.
  static std::optional<Connection> AcceptOrWake(Listener& listener,
                                                int wake_fd);
};

}  // namespace multiprocessing::connection::internal

#endif  // MULTIPROCESSING_CONNECTION_LISTENER_INTERNAL_H_
