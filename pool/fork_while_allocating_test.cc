// Forks children while other threads allocate, as a pool does when it
// replaces a worker: every child must be able to allocate and exit. Under
// AddressSanitizer (whose runtime in clang 14 does not lock its allocator
// around fork()), a child forked while another thread held an allocator lock
// blocked for ever on its first allocation, unless the pool library's fork
// handlers hold those locks across fork().
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "pool/pool.h"

namespace {

// Waits at most `ms` for child `pid`; kills it on timeout. True if it exited
// with status 0 in time.
bool ExitsInTime(pid_t pid, int ms) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  bool in_time = true;
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    in_time = poll(&p, 1, ms) == 1;
    close(pidfd);
  }
  if (!in_time) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return in_time && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(ForkWhileAllocatingTest, ChildrenAllocateAndExit) {
  // A Pool object makes sure the pool library (and its fork handlers) is
  // initialised, as in a program that uses pools.
  multiprocessing::pool::ThreadPool keep(1);
  std::atomic<bool> stop{false};
  std::vector<std::thread> allocators;
  for (int t = 0; t < 3; ++t) {
    allocators.emplace_back([&, t] {
      std::vector<std::unique_ptr<std::string>> keep_some(64);
      for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        keep_some[i % 64] =
            std::make_unique<std::string>(16 + (i * 7 + t) % 4000, 'x');
      }
    });
  }
  int hung = 0;
  constexpr int kForks = 300;
  for (int i = 0; i < kForks; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      for (int j = 0; j < 100; ++j) {
        auto s = std::make_unique<std::string>(16 + j * 40, 'y');
        if (s->empty()) _exit(2);
      }
      _exit(0);
    }
    ASSERT_GT(pid, 0);
    if (!ExitsInTime(pid, 20000)) {
      ++hung;
      break;  // one is enough; do not wait for more
    }
  }
  stop = true;
  for (auto& t : allocators) t.join();
  std::printf("%d of %d children forked beside allocating threads hung\n", hung,
              kForks);
  EXPECT_EQ(hung, 0);
}

}  // namespace
