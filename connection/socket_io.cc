#include "connection/socket_io.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "errors/errors.h"

namespace multiprocessing::connection::internal {

using Clock = std::chrono::steady_clock;

int PollMillis(Deadline deadline) {
  if (!deadline) return -1;
  const auto left = *deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(
      std::min<std::int64_t>(ms, std::numeric_limits<int>::max()));
}

bool WaitFor(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, PollMillis(deadline));
    if (r > 0) {
      if (p.revents & POLLNVAL) RaiseOSError("poll", EBADF);
      return true;
    }
    if (r == 0) {
      if (!deadline || Clock::now() >= *deadline) return false;
      continue;
    }
    if (errno != EINTR) RaiseOSError("poll", errno);
  }
}

void AttachFds(msghdr& msg, char* control, const int* fds, std::size_t count) {
  const std::size_t bytes = count * sizeof(int);
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(bytes);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(bytes);
  std::memcpy(CMSG_DATA(c), fds, bytes);
}

ssize_t RecvWithFds(int fd, char* dst, std::size_t n, int flags,
                    std::vector<int>* fds) {
  alignas(cmsghdr) char control[kFdControlSpace];
  iovec iov{dst, n};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t k = ::recvmsg(fd, &msg, flags | MSG_CMSG_CLOEXEC);
  if (k >= 0) CollectFds(msg, fds);
  return k;
}

void CollectFds(msghdr& msg, std::vector<int>* fds) {
  if (msg.msg_controllen == 0) return;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr;
       c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const auto* data = reinterpret_cast<const unsigned char*>(CMSG_DATA(c));
    for (std::size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, data + i * sizeof(int), sizeof(int));
      if (fds != nullptr) {
        fds->push_back(received);
      } else {
        ::close(received);
      }
    }
  }
}

}  // namespace multiprocessing::connection::internal
