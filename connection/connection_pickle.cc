// How a Connection crosses a process boundary: its descriptor travels out of
// band (SCM_RIGHTS over a Connection, inherited for spawned children) and the
// stream holds (fd index, readable, writable).
#include <tuple>

#include "connection/connection.h"
#include "errors/errors.h"

namespace multiprocessing::reduction {

void Pickler<connection::Connection>::Save(Writer& w,
                                           const connection::Connection& conn) {
  if (conn.closed()) throw PicklingError("cannot pickle a closed Connection");
  const std::size_t index = w.add_fd(conn.fileno());
  w.save(std::make_tuple(static_cast<std::uint64_t>(index), conn.readable(),
                         conn.writable()));
}

connection::Connection Pickler<connection::Connection>::Load(Reader& r) {
  const auto [index, readable, writable] =
      r.load<std::tuple<std::uint64_t, bool, bool>>();
  if (!readable && !writable)
    throw UnpicklingError(
        "a pickled Connection is neither readable nor writable");
  return connection::Connection(r.dup_fd(static_cast<std::size_t>(index)),
                                readable, writable);
}

}  // namespace multiprocessing::reduction
