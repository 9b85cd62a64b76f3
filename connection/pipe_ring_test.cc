// Pipe()'s shared-memory transport, across real processes: order across sizes
// and kinds of messages, fileno() readiness that is exact, ends passed to
// children under every start method, senders killed mid-message, and hostile
// bytes on the socket, in the ring and in a pickled end.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "connection/connection.h"
#include "connection/test_util.h"
#include "connection/wait.h"
#include "errors/errors.h"
#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/pickle.h"
#include "reduction/registry.h"

namespace multiprocessing::connection {

// Echoes byte messages from `in` to `out` until "end"; then receives a
// Connection on `in` and greets through it.
void EchoThenGreet(Connection in, Connection out) {
  for (;;) {
    std::string s = in.recv_bytes();
    if (s == "end") break;
    out.send_bytes(s);
  }
  auto end = in.recv<Connection>();
  end.send(std::string("hello from the child"));
}
MP_REGISTER_FUNCTION(EchoThenGreet);

namespace {

using std::chrono::seconds;
using testing::ExitedOk;
using testing::ForkChild;
using testing::JoinChild;
using testing::RecvBytes;

constexpr std::size_t kSizes[] = {
    0, 1, 7, 8, 9, 255, 4096, 65539, 300000, 1048571, (1 << 20) + 13, 3 << 20};

std::string Payload(int i) {
  std::string s(kSizes[i % std::size(kSizes)], '\0');
  for (std::size_t j = 0; j < s.size(); ++j)
    s[j] = static_cast<char>('a' + (i * 131 + j * 7) % 26);
  return s;
}

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// How many of {c} wait() reports ready within `seconds`.
std::size_t WaitReady(const Connection& c, double seconds) {
  return wait(std::vector<Connection>{c},
              std::chrono::duration<double>(seconds))
      .size();
}

template <class T = std::string>
T Recv(Connection& c) {
  if (!c.poll(seconds(60))) throw TimeoutError("no message within 60 s");
  return c.recv<T>();
}

TEST(PipeRingTest, MixedSizesAndKindsKeepTheirOrderBothWays) {
  constexpr int kCount = 48;
  auto [a, b] = Pipe();
  // The child echoes each message the way it came.
  const pid_t pid = ForkChild([b = b]() mutable {
    for (int i = 0; i < kCount; ++i) {
      if (i % 3 == 0) {
        b.send(Recv<std::string>(b));
      } else {
        b.send_bytes(RecvBytes(b));
      }
    }
  });
  b.close();
  std::thread sender([a = a]() mutable {
    for (int i = 0; i < kCount; ++i) {
      if (i % 3 == 0) {
        a.send(Payload(i));
      } else {
        a.send_bytes(Payload(i));
      }
    }
  });
  for (int i = 0; i < kCount; ++i) {
    const std::string want = Payload(i);
    if (i % 3 == 0) {
      ASSERT_EQ(Recv<std::string>(a), want) << i;
    } else if (i % 3 == 1) {
      ASSERT_EQ(RecvBytes(a), want) << i;
    } else {
      std::vector<char> buf(want.size() + 5, 'z');
      ASSERT_TRUE(a.poll(seconds(60)));
      ASSERT_EQ(a.recv_bytes_into(buf, 5), want.size());
      ASSERT_EQ(std::string(buf.begin() + 5, buf.end()), want) << i;
      ASSERT_EQ(std::string(buf.begin(), buf.begin() + 5), "zzzzz");
    }
  }
  sender.join();
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  ASSERT_TRUE(a.poll(seconds(30)));
  EXPECT_THROW(a.recv_bytes(), EOFError);
}

TEST(PipeRingTest, FilenoIsReadableExactlyWhileMessagesArePending) {
  auto [r, w] = Pipe(false);
  EXPECT_FALSE(Readable(r.fileno()));
  EXPECT_EQ(WaitReady(r, 0), 0u);
  w.send_bytes("1");
  w.send(std::string("2"));
  w.send_bytes(std::string(100000, '3'));
  EXPECT_TRUE(Readable(r.fileno()));
  EXPECT_EQ(WaitReady(r, 0), 1u);
  EXPECT_EQ(r.recv_bytes(), "1");
  EXPECT_TRUE(Readable(r.fileno()));
  EXPECT_EQ(r.recv<std::string>(), "2");
  EXPECT_TRUE(Readable(r.fileno()));
  EXPECT_TRUE(r.poll());
  EXPECT_EQ(r.recv_bytes().size(), 100000u);
  EXPECT_FALSE(Readable(r.fileno()));
  EXPECT_FALSE(r.poll());
  EXPECT_EQ(WaitReady(r, 0), 0u);
  for (int i = 0; i < 2000; ++i) {
    w.send_bytes(std::to_string(i));
    ASSERT_TRUE(Readable(r.fileno())) << i;
    ASSERT_EQ(r.recv_bytes(), std::to_string(i));
    ASSERT_FALSE(Readable(r.fileno())) << i;
  }
  w.close();
  EXPECT_TRUE(Readable(r.fileno()));  // end of file
  EXPECT_THROW(r.recv_bytes(), EOFError);
}

TEST(PipeRingTest, ASenderThatBlocksAfterSendingIsHeardThroughWait) {
  constexpr int kRounds = 300;
  auto [r, w] = Pipe(false);
  auto [ack_r, ack_w] = Pipe(false);
  const pid_t pid = ForkChild([w = w, ack_r = ack_r]() mutable {
    for (int i = 0; i < kRounds; ++i) {
      w.send(i);
      // Blocks on something else: the message must get through regardless.
      if (Recv<int>(ack_r) != i) throw ValueError("out of step");
    }
  });
  w.close();
  ack_r.close();
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_EQ(WaitReady(r, 60), 1u) << i;
    ASSERT_EQ(r.recv<int>(), i);
    ASSERT_FALSE(Readable(r.fileno())) << i;
    ack_w.send(i);
  }
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

TEST(PipeRingTest, AStreamReadThroughWaitArrivesWholeAndInOrder) {
  constexpr int kCount = 100000;
  auto [r, w] = Pipe(false);
  const pid_t pid = ForkChild([w = w]() mutable {
    for (int i = 0; i < kCount; ++i) {
      if (i % 10000 == 0) {
        w.send_bytes(std::string(200000, static_cast<char>('a' + i / 10000)));
      }
      w.send(i);
    }
  });
  w.close();
  for (int i = 0; i < kCount; ++i) {
    if (i % 10000 == 0) {
      ASSERT_EQ(RecvBytes(r),
                std::string(200000, static_cast<char>('a' + i / 10000)));
    }
    ASSERT_EQ(WaitReady(r, 60), 1u) << i;
    ASSERT_EQ(r.recv<int>(), i);
  }
  ASSERT_TRUE(r.poll(seconds(30)));
  EXPECT_THROW(r.recv_bytes(), EOFError);
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

TEST(PipeRingTest, SeveralSendingProcessesInterleaveWholeMessages) {
  constexpr int kChildren = 4;
  constexpr int kEach = 5000;
  auto [r, w] = Pipe(false);
  std::vector<pid_t> pids;
  for (int c = 0; c < kChildren; ++c) {
    pids.push_back(ForkChild([w = w, c]() mutable {
      for (int i = 0; i < kEach; ++i) {
        const std::size_t size = i % 500 == 0 ? 300000 : i % 50;
        w.send(std::make_tuple(c, i, std::string(size, static_cast<char>(c))));
      }
    }));
  }
  w.close();
  std::vector<int> next(kChildren, 0);
  for (int n = 0; n < kChildren * kEach; ++n) {
    const auto [c, i, s] = Recv<std::tuple<int, int, std::string>>(r);
    ASSERT_GE(c, 0);
    ASSERT_LT(c, kChildren);
    ASSERT_EQ(i, next[c]++);
    ASSERT_EQ(
        s, std::string(i % 500 == 0 ? 300000 : i % 50, static_cast<char>(c)));
  }
  for (pid_t pid : pids) EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  ASSERT_TRUE(r.poll(seconds(30)));
  EXPECT_THROW(r.recv_bytes(), EOFError);
}

TEST(PipeRingTest, DescriptorsAmongSmallAndLargeMessagesKeepTheirPlace) {
  auto [a, b] = Pipe();
  std::vector<Connection> mine;
  const pid_t pid = ForkChild([b = b]() mutable {
    for (int i = 0; i < 30; ++i) {
      if (i % 2 == 0) {
        auto conn = Recv<Connection>(b);
        conn.send(i);
      } else {
        if (RecvBytes(b) != Payload(i)) throw ValueError("wrong payload");
      }
    }
  });
  b.close();
  for (int i = 0; i < 30; ++i) {
    if (i % 2 == 0) {
      auto [x, y] = Pipe();
      a.send(y);
      y.close();
      mine.push_back(x);
    } else {
      a.send_bytes(Payload(i));
    }
  }
  for (int i = 0; i < 30; i += 2) {
    EXPECT_EQ(Recv<int>(mine[i / 2]), i);
  }
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  ASSERT_TRUE(a.poll(seconds(30)));
  EXPECT_THROW(a.recv_bytes(), EOFError);
}

TEST(PipeRingTest, TheLastSenderKilledMidMessageIsAnErrorNotAHang) {
  auto [r, w] = Pipe(false);
  const pid_t pid =
      ForkChild([w = w]() mutable { w.send_bytes(std::string(8 << 20, 'x')); });
  w.close();
  ASSERT_TRUE(r.poll(seconds(60)));  // the message has begun
  ::kill(pid, SIGKILL);
  JoinChild(pid);
  try {
    r.recv_bytes();
    ADD_FAILURE() << "expected OSError";
  } catch (const EOFError&) {
    ADD_FAILURE() << "a truncated message is not a clean end of file";
  } catch (const OSError& e) {
    EXPECT_NE(std::string(e.what()).find("end of file during message"),
              std::string::npos)
        << e.what();
  }
}

TEST(PipeRingTest, ASenderKilledMidMessageLeavesTheOthersAClearError) {
  auto [r, w] = Pipe(false);
  const pid_t pid =
      ForkChild([w = w]() mutable { w.send_bytes(std::string(8 << 20, 'x')); });
  ASSERT_TRUE(r.poll(seconds(60)));
  ::kill(pid, SIGKILL);
  JoinChild(pid);
  // This process still holds a sending end: the next send learns that the
  // stream is corrupt, and so does the receiver.
  EXPECT_THROW(w.send_bytes("after"), OSError);
  EXPECT_THROW(r.recv_bytes(), OSError);
  EXPECT_THROW(r.recv_bytes(), OSError);
}

TEST(PipeRingTest, StrayBytesOnTheSocketRaiseInsteadOfHanging) {
  auto [r, w] = Pipe(false);
  ASSERT_EQ(::send(w.fileno(), "junk", 4, MSG_NOSIGNAL), 4);
  ASSERT_TRUE(r.poll(seconds(30)));
  EXPECT_THROW(r.recv_bytes(), OSError);
}

// The descriptor of the most recently created Pipe() ring in this process.
int NewestRingFd() {
  int newest = -1;
  DIR* dir = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(dir)) {
    char target[256] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    if (::readlink(link.c_str(), target, sizeof target - 1) > 0 &&
        std::string(target).find("memfd:multiprocessing-pipe") !=
            std::string::npos) {
      newest = std::max(newest, std::atoi(e->d_name));
    }
  }
  ::closedir(dir);
  return newest;
}

TEST(PipeRingTest, CorruptRingMemoryRaisesInsteadOfCrashing) {
  auto [r, w] = Pipe(false);
  w.send_bytes("hello");
  const int fd = NewestRingFd();
  ASSERT_GE(fd, 0);
  const std::size_t size = 4096 + 64;
  void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(m, MAP_FAILED);
  // The first frame's header (the data begins on the second page): a length
  // of 2^60 bytes.
  const std::uint64_t huge = std::uint64_t{1} << 61;
  std::memcpy(static_cast<char*>(m) + 4096, &huge, sizeof huge);
  ::munmap(m, size);
  EXPECT_THROW(RecvBytes(r), OSError);
  EXPECT_THROW(r.recv_bytes(), OSError);
}

TEST(PipeRingTest, APickledEndWithABogusRingIsRefused) {
  auto [x, y] = Pipe();
  reduction::OutOfBand oob;
  oob.fds.push_back(::dup(x.fileno()));
  oob.fds.push_back(::memfd_create("not-a-ring", MFD_CLOEXEC));
  const std::string bytes = reduction::dumps(std::make_tuple(
      std::uint64_t{0}, true, true, std::int64_t{1}, std::int64_t{0}));
  EXPECT_THROW(reduction::loads<Connection>(bytes, &oob), ValueError);
  const std::string bad_side = reduction::dumps(std::make_tuple(
      std::uint64_t{0}, true, true, std::int64_t{1}, std::int64_t{7}));
  EXPECT_THROW(reduction::loads<Connection>(bad_side, &oob), Exception);
}

class PipeRingStartTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PipeRingStartTest, PipeEndsWorkInAChild) {
  auto [to_child_r, to_child_w] = Pipe(false);
  auto [from_child_r, from_child_w] = Pipe(false);
  Process p =
      get_context(GetParam()).Process(EchoThenGreet, to_child_r, from_child_w);
  p.start();
  to_child_r.close();
  from_child_w.close();
  for (int i = 0; i < 14; ++i) {
    to_child_w.send_bytes(Payload(i));
    ASSERT_EQ(RecvBytes(from_child_r), Payload(i)) << i;
  }
  to_child_w.send_bytes("end");
  auto [mine, theirs] = Pipe();
  to_child_w.send(theirs);
  theirs.close();
  EXPECT_EQ(Recv<std::string>(mine), "hello from the child");
  p.join(seconds(60));
  EXPECT_EQ(p.exitcode(), 0);
  ASSERT_TRUE(from_child_r.poll(seconds(30)));
  EXPECT_THROW(from_child_r.recv_bytes(), EOFError);
  ASSERT_TRUE(mine.poll(seconds(30)));
  EXPECT_THROW(mine.recv_bytes(), EOFError);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, PipeRingStartTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace multiprocessing::connection

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
