#include "connection/wait.h"

#include <errno.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "errors/errors.h"

namespace multiprocessing::connection::internal {

std::vector<std::size_t> WaitReady(std::span<const int> fds,
                                   const std::vector<bool>& ready_now,
                                   Timeout timeout) {
  using Clock = std::chrono::steady_clock;
  std::vector<pollfd> polled(fds.size());
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (fds[i] < 0)
      throw ValueError("wait(): a negative file descriptor was given");
    polled[i] = pollfd{fds[i], POLLIN, 0};
  }
  const bool any_ready_now =
      std::find(ready_now.begin(), ready_now.end(), true) != ready_now.end();
  std::optional<Clock::time_point> deadline;
  if (any_ready_now) {
    deadline = Clock::now();
  } else if (timeout) {
    const double seconds = std::clamp(timeout->count(), 0.0, 1e9);
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(seconds));
  }
  int r;
  for (;;) {
    int millis = -1;
    if (deadline) {
      const auto left = *deadline - Clock::now();
      millis =
          left <= Clock::duration::zero()
              ? 0
              : static_cast<int>(std::min<std::int64_t>(
                    std::chrono::ceil<std::chrono::milliseconds>(left).count(),
                    std::numeric_limits<int>::max()));
    }
    r = ::poll(polled.data(), polled.size(), millis);
    if (r >= 0) {
      if (r == 0 && deadline && Clock::now() < *deadline) continue;
      break;
    }
    if (errno != EINTR) RaiseOSError("poll", errno);
  }
  std::vector<std::size_t> ready;
  for (std::size_t i = 0; i < polled.size(); ++i) {
    if (polled[i].revents & POLLNVAL) {
      throw OSError(EBADF, "wait(): file descriptor " + std::to_string(fds[i]) +
                               " is not open");
    }
    if (ready_now[i] || polled[i].revents != 0) ready.push_back(i);
  }
  return ready;
}

}  // namespace multiprocessing::connection::internal
