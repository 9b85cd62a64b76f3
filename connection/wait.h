// wait(): blocks until some of several connections, sockets, process sentinels
// or raw descriptors are ready to read (data or end of file), like Python's
// multiprocessing.connection.wait().
//
//   std::vector<Connection> readers = ...;
//   for (Connection& r : wait(readers)) {   // copies share the connection
//     ... r.recv() ...
//   }
//   std::vector<int> ready = wait(std::vector<int>{p.sentinel(), fd}, 1s);
//
// An element may be anything with fileno() (Connection, a socket wrapper), a
// pointer to such, or an integer descriptor. The result keeps the order of
// `object_list`. A timeout of std::nullopt blocks for ever; a negative timeout
// is zero. Signals (EINTR) do not end the wait early.
#ifndef MULTIPROCESSING_CONNECTION_WAIT_H_
#define MULTIPROCESSING_CONNECTION_WAIT_H_

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "connection/connection.h"

namespace multiprocessing::connection {

namespace internal {

template <class T>
int FileDescriptorOf(const T& object) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<int>(object);
  } else if constexpr (requires { object.fileno(); }) {
    return object.fileno();
  } else if constexpr (requires { object->fileno(); }) {
    return object->fileno();
  } else {
    static_assert(sizeof(T) == 0,
                  "wait() takes descriptors or objects with fileno()");
  }
}

template <class T>
bool ReadyWithoutPolling(const T& object) {
  if constexpr (std::is_convertible_v<const T&, const Connection&>) {
    return HasBufferedInput(object);
  } else if constexpr (requires {
                         { *object } -> std::convertible_to<const Connection&>;
                       }) {
    return object != nullptr && HasBufferedInput(*object);
  } else {
    return false;
  }
}

// Which of `fds` are ready, as indices; `ready_now[i]` marks those known ready
// already.
std::vector<std::size_t> WaitReady(std::span<const int> fds,
                                   const std::vector<bool>& ready_now,
                                   Timeout timeout);

}  // namespace internal

template <class T>
std::vector<T> wait(const std::vector<T>& object_list,
                    Timeout timeout = std::nullopt) {
  std::vector<int> fds;
  std::vector<bool> ready_now;
  fds.reserve(object_list.size());
  ready_now.reserve(object_list.size());
  for (const T& object : object_list) {
    fds.push_back(internal::FileDescriptorOf(object));
    ready_now.push_back(internal::ReadyWithoutPolling(object));
  }
  std::vector<T> ready;
  for (std::size_t i : internal::WaitReady(fds, ready_now, timeout))
    ready.push_back(object_list[i]);
  return ready;
}

}  // namespace multiprocessing::connection

#endif  // MULTIPROCESSING_CONNECTION_WAIT_H_
