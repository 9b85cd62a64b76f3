// Connection objects and Pipe(): message-oriented, connected sockets between
// processes, as in Python's multiprocessing.connection.
//
//   auto [a, b] = multiprocessing::Pipe();
//   a.send(std::vector<int>{1, 2});          // pickled through //reduction
//   auto v = b.recv<std::vector<int>>();     // or b.recv() for a dynamic
//                                            // reduction::Object
//   b.send_bytes("thank you");
//   std::string s = a.recv_bytes();
//
// The wire format is CPython's: each message is a 4-byte big-endian signed
// length (or -1 followed by an 8-byte length for messages of 2 GiB and more)
// and the bytes, so a Connection talks to Python's Connection over a socket.
// Objects sent with send() that carry file descriptors (Connections among them)
// pass those descriptors beside the bytes with SCM_RIGHTS, which needs an
// AF_UNIX socket.
//
// A Connection is a handle: copies share one underlying connection (like Python
// references), and the descriptor is closed by close() or when the last handle
// goes away. One connection is meant for one reader and one writer at a time (a
// thread may send while another receives).
#ifndef MULTIPROCESSING_CONNECTION_CONNECTION_H_
#define MULTIPROCESSING_CONNECTION_CONNECTION_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "errors/errors.h"
#include "reduction/pickle.h"

namespace multiprocessing::connection {

// A timeout in seconds; std::nullopt blocks forever.
using Timeout = std::optional<std::chrono::duration<double>>;

class Connection;

namespace internal {
struct ConnectionAccess;
// True when `conn` holds received bytes not yet returned, so wait() reports it
// ready at once.
bool HasBufferedInput(const Connection& conn);
}  // namespace internal

class Connection {
 public:
  // A closed connection.
  Connection() = default;
  // Takes ownership of `fd` (a socket or a pipe end). At least one of readable
  // / writable must hold.
  explicit Connection(int fd, bool readable = true, bool writable = true);

  // Sends a picklable object; the peer reads it with recv(). An object that
  // cannot be pickled raises PicklingError here and nothing is sent.
  template <class T>
  void send(const T& obj);

  // Receives an object sent with send() (by this library or by Python). Raises
  // EOFError when the peer has closed and nothing is left, UnpicklingError /
  // TypeError when the bytes do not decode as T.
  template <class T = reduction::Object>
  T recv();

  // Sends `size` bytes of `buf` from `offset` (all that follows `offset` by
  // default) as one message.
  void send_bytes(std::span<const std::byte> buf, std::size_t offset = 0,
                  std::optional<std::size_t> size = std::nullopt);
  void send_bytes(std::string_view buf, std::size_t offset = 0,
                  std::optional<std::size_t> size = std::nullopt) {
    send_bytes(std::as_bytes(std::span(buf.data(), buf.size())), offset, size);
  }
  // Any contiguous range of trivially copyable values (std::vector<int>,
  // std::array<double, 4>, ...), as Python accepts any bytes-like object;
  // offset and size count bytes.
  template <class R>
  requires(std::ranges::contiguous_range<const R>&&
               std::ranges::sized_range<const R>&& std::is_trivially_copyable_v<
                   std::ranges::range_value_t<const R>> &&
           !std::is_convertible_v<
               const R&,
               std::string_view>) void send_bytes(const R& buf,
                                                  std::size_t offset = 0,
                                                  std::optional<std::size_t>
                                                      size = std::nullopt) {
    send_bytes(std::as_bytes(
                   std::span(std::ranges::data(buf), std::ranges::size(buf))),
               offset, size);
  }

  // Receives one message of bytes. A message longer than `maxlength` raises
  // OSError and leaves the connection no longer readable (its remaining bytes
  // cannot be skipped safely).
  std::string recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);

  // Receives one message into `buf` from byte `offset` and returns its length
  // in bytes. If it does not fit, raises BufferTooShort whose message() holds
  // the whole message.
  std::size_t recv_bytes_into(std::span<std::byte> buf, std::size_t offset = 0);
  template <class R>
  requires(std::ranges::contiguous_range<R>&& std::ranges::sized_range<R>&&
               std::is_trivially_copyable_v<std::ranges::range_value_t<R>> &&
           !std::is_const_v<
               std::remove_reference_t<std::ranges::range_reference_t<R>>>)
      std::size_t recv_bytes_into(R&& buf, std::size_t offset = 0) {
    return recv_bytes_into(std::as_writable_bytes(std::span(
                               std::ranges::data(buf), std::ranges::size(buf))),
                           offset);
  }

  // Whether data (or the peer's end of file) is ready to be read: immediately
  // by default, within `timeout`, or waiting for ever with std::nullopt.
  bool poll(Timeout timeout = std::chrono::duration<double>::zero());

  // The descriptor; OSError once closed.
  int fileno() const;
  // Closes the connection for every handle sharing it. Closing twice is
  // harmless.
  void close();
  bool closed() const;
  bool readable() const;
  bool writable() const;

  // Handles are equal when they share one underlying connection.
  friend bool operator==(const Connection& a, const Connection& b) {
    return a.impl_ == b.impl_;
  }

  struct Impl;

 private:
  friend struct internal::ConnectionAccess;
  friend bool internal::HasBufferedInput(const Connection& conn);
  friend std::pair<Connection, Connection> Pipe(bool duplex);

  Impl& CheckedImpl(bool for_reading) const;
  void SendMessage(std::string_view payload, reduction::OutOfBand* oob);
  // Receives one message and calls `decode` on a view of it that is valid
  // during the call; `oob` receives the descriptors sent with it.
  template <class F>
  void RecvMessage(F&& decode, reduction::OutOfBand* oob) {
    RecvMessageImpl(
        [](void* f, std::string_view bytes) {
          (*static_cast<std::remove_reference_t<F>*>(f))(bytes);
        },
        &decode, oob);
  }
  void RecvMessageImpl(void (*decode)(void*, std::string_view), void* context,
                       reduction::OutOfBand* oob);

  std::shared_ptr<Impl> impl_;
};

// Returns (conn1, conn2): with duplex (the default) both ends send and receive;
// otherwise conn1 only receives and conn2 only sends. Both are ends of an
// AF_UNIX socketpair, so they can carry descriptors; the messages themselves
// travel through shared memory beside it (no system call per message), while
// fileno() stays readable exactly when a message or end of file is pending.
std::pair<Connection, Connection> Pipe(bool duplex = true);

template <class T>
void Connection::send(const T& obj) {
  CheckedImpl(false);
  reduction::OutOfBand oob;
  const std::string payload = reduction::dumps(obj, &oob);
  SendMessage(payload, &oob);
}

template <class T>
T Connection::recv() {
  CheckedImpl(true);
  reduction::OutOfBand oob;
  std::optional<T> result;
  RecvMessage(
      [&](std::string_view bytes) {
        result.emplace(reduction::loads<T>(bytes, &oob));
      },
      &oob);
  return std::move(*result);
}

}  // namespace multiprocessing::connection

namespace multiprocessing {
using connection::Connection;
using connection::Pipe;

namespace internal {
// ctx.Pipe() (process/context.h).
struct ContextConnection {
  static std::pair<connection::Connection, connection::Connection> Pipe(
      bool duplex) {
    return connection::Pipe(duplex);
  }
};
}  // namespace internal
}  // namespace multiprocessing

namespace multiprocessing::reduction {
// A Connection travels as a duplicate of its descriptor (out of band,
// SCM_RIGHTS) with its readable / writable flags; the receiver gets a
// Connection of its own on the same channel.
template <>
struct Pickler<connection::Connection> {
  static void Save(Writer& w, const connection::Connection& conn);
  static connection::Connection Load(Reader& r);
};
}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_CONNECTION_CONNECTION_H_
