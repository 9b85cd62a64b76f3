// Descriptor-level helpers shared by the socket and shared-memory transports
// of Connection: waiting with a deadline and collecting SCM_RIGHTS descriptors.
#ifndef MULTIPROCESSING_CONNECTION_SOCKET_IO_H_
#define MULTIPROCESSING_CONNECTION_SOCKET_IO_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

namespace multiprocessing::connection::internal {

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

// Linux's limit of descriptors in one SCM_RIGHTS message.
inline constexpr std::size_t kMaxFdsPerMessage = 253;

// Milliseconds for poll(2) until `deadline`, rounded up so that a wait never
// ends early and spins; -1 without a deadline.
int PollMillis(Deadline deadline);

// Waits until `fd` has `events` or `deadline` passes (false). Retries on
// EINTR; raises OSError on a closed descriptor.
bool WaitFor(int fd, short events, Deadline deadline);

// Room for the control message of kMaxFdsPerMessage descriptors.
inline constexpr std::size_t kFdControlSpace =
    CMSG_SPACE(kMaxFdsPerMessage * sizeof(int));

// Attaches `count` (<= kMaxFdsPerMessage) descriptors to `msg` as SCM_RIGHTS,
// using `control` (kFdControlSpace bytes, aligned for cmsghdr).
void AttachFds(msghdr& msg, char* control, const int* fds, std::size_t count);

// One recvmsg(2) of at most `n` bytes with `flags`; the descriptors that come
// with them are appended to `fds` (or closed if it is null). Returns what
// recvmsg returns (errno set on -1).
ssize_t RecvWithFds(int fd, char* dst, std::size_t n, int flags,
                    std::vector<int>* fds);

// Appends the descriptors a recvmsg(2) received in `msg` to `fds`, or closes
// them if `fds` is null.
void CollectFds(msghdr& msg, std::vector<int>* fds);

}  // namespace multiprocessing::connection::internal

#endif  // MULTIPROCESSING_CONNECTION_SOCKET_IO_H_
