// How a Connection crosses a process boundary: its descriptors travel out of
// band (SCM_RIGHTS over a Connection, inherited for spawned children) and the
// stream holds (fd index, readable, writable, ring fd index or -1, side): a
// Pipe() end also carries the memfd of its shared-memory rings.
#include <unistd.h>

#include <cstdint>
#include <tuple>

#include "connection/connection.h"
#include "connection/connection_internal.h"
#include "errors/errors.h"

namespace multiprocessing::reduction {

void Pickler<connection::Connection>::Save(Writer& w,
                                           const connection::Connection& conn) {
  if (conn.closed()) throw PicklingError("cannot pickle a closed Connection");
  using connection::internal::ConnectionAccess;
  const std::size_t index = w.add_fd(conn.fileno());
  const int ring_fd = ConnectionAccess::RingFd(conn);
  const std::int64_t ring_index =
      ring_fd < 0 ? -1 : static_cast<std::int64_t>(w.add_fd(ring_fd));
  w.save(std::make_tuple(
      static_cast<std::uint64_t>(index), conn.readable(), conn.writable(),
      ring_index, static_cast<std::int64_t>(ConnectionAccess::RingSide(conn))));
}

connection::Connection Pickler<connection::Connection>::Load(Reader& r) {
  const auto [index, readable, writable, ring_index, side] = r.load<
      std::tuple<std::uint64_t, bool, bool, std::int64_t, std::int64_t>>();
  if (!readable && !writable)
    throw UnpicklingError(
        "a pickled Connection is neither readable nor writable");
  if (ring_index < 0) {
    return connection::Connection(r.dup_fd(static_cast<std::size_t>(index)),
                                  readable, writable);
  }
  if (side != 0 && side != 1)
    throw UnpicklingError("a pickled Pipe() end names no valid side");
  const int memfd = r.dup_fd(static_cast<std::size_t>(ring_index));
  int sock;
  try {
    sock = r.dup_fd(static_cast<std::size_t>(index));
  } catch (...) {
    ::close(memfd);
    throw;
  }
  return connection::internal::ConnectionAccess::FromRing(
      sock, memfd, readable, writable, static_cast<int>(side));
}

}  // namespace multiprocessing::reduction
