// What the connection package's own files need from a Connection beyond its
// public API.
#ifndef MULTIPROCESSING_CONNECTION_CONNECTION_INTERNAL_H_
#define MULTIPROCESSING_CONNECTION_CONNECTION_INTERNAL_H_

#include <chrono>
#include <optional>

#include "connection/connection.h"

namespace multiprocessing::connection::internal {

struct ConnectionAccess {
  // Until cleared, every read on `conn` that would block past `deadline` raises
  // TimeoutError; the authentication handshake uses it so that a silent peer
  // cannot hold it for ever.
  static void SetReadDeadline(
      const Connection& conn,
      std::optional<std::chrono::steady_clock::time_point> deadline);

  // For pickling a Pipe() end: the descriptor of its shared-memory rings (-1
  // for other connections) and which end it is.
  static int RingFd(const Connection& conn);
  static int RingSide(const Connection& conn);
  // Rebuilds a Pipe() end from its socket and ring descriptors (both owned by
  // the result, also on error).
  static Connection FromRing(int sock, int memfd, bool readable, bool writable,
                             int side);
};

}  // namespace multiprocessing::connection::internal

#endif  // MULTIPROCESSING_CONNECTION_CONNECTION_INTERNAL_H_
