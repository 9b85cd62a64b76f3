// wait() over connections, raw descriptors and process sentinels.
#include "connection/wait.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "connection/test_util.h"
#include "errors/errors.h"
#include "gtest/gtest.h"

namespace multiprocessing::connection {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ExitedOk;
using testing::ForkChild;
using testing::JoinChild;

TEST(WaitTest, ReportsConnectionsWithDataOrEofInOrder) {
  auto [r1, w1] = Pipe(false);
  auto [r2, w2] = Pipe(false);
  auto [r3, w3] = Pipe(false);
  std::vector<Connection> readers = {r1, r2, r3};
  EXPECT_TRUE(wait(readers, milliseconds(10)).empty());
  w3.send_bytes("x");
  w1.close();
  const std::vector<Connection> ready = wait(readers, seconds(30));
  ASSERT_EQ(ready.size(), 2u);
  EXPECT_TRUE(ready[0] == r1);
  EXPECT_TRUE(ready[1] == r3);
  EXPECT_THROW(r1.recv_bytes(), EOFError);
}

TEST(WaitTest, NegativeTimeoutIsZeroAndEmptyListTimesOut) {
  auto [a, b] = Pipe();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(
      wait(std::vector<Connection>{a}, std::chrono::duration<double>(-5))
          .empty());
  EXPECT_TRUE(wait(std::vector<int>{}, milliseconds(1)).empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
}

TEST(WaitTest, BufferedMessagesCountAsReady) {
  auto [a, b] = Pipe();
  a.send_bytes("one");
  a.send_bytes("two");
  ASSERT_TRUE(b.poll(seconds(30)));
  EXPECT_EQ(b.recv_bytes(),
            "one");  // "two" may now sit in b's read buffer, not in the socket
  EXPECT_EQ(wait(std::vector<Connection>{b}, seconds(30)).size(), 1u);
  EXPECT_EQ(b.recv_bytes(), "two");
  EXPECT_TRUE(wait(std::vector<Connection>{b}, milliseconds(1)).empty());
}

TEST(WaitTest, RawDescriptorsPointersAndProcessSentinels) {
  auto [a, b] = Pipe();
  const pid_t pid = ForkChild([] {});
  const int sentinel = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  ASSERT_GE(sentinel, 0);
  const std::vector<int> ready =
      wait(std::vector<int>{b.fileno(), sentinel}, seconds(30));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0], sentinel);
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  ::close(sentinel);
  a.send_bytes("p");
  std::vector<Connection*> pointers = {&a, &b};
  const auto ready_pointers = wait(pointers, seconds(30));
  ASSERT_EQ(ready_pointers.size(), 1u);
  EXPECT_EQ(ready_pointers[0], &b);
  EXPECT_THROW(wait(std::vector<int>{-1}, milliseconds(1)), ValueError);
}

TEST(WaitTest, SignalsDoNotEndTheWaitEarly) {
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  struct sigaction old;
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  auto [r, w] = Pipe(false);
  const pid_t parent = ::getpid();
  const pid_t pid = ForkChild([&, w = w] {
    Connection out = w;
    ::kill(parent, SIGUSR1);
    ::kill(parent, SIGUSR1);
    out.send_bytes("after the signals");
  });
  w.close();
  const auto ready = wait(std::vector<Connection>{r}, seconds(30));
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(r.recv_bytes(), "after the signals");
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  ::sigaction(SIGUSR1, &old, nullptr);
}

}  // namespace
}  // namespace multiprocessing::connection
