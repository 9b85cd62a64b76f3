// The bytes layer of Connection: framing, buffering, limits and errors, across
// real processes.
#include "connection/connection.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "connection/test_util.h"
#include "errors/errors.h"
#include "gtest/gtest.h"

namespace multiprocessing::connection {
namespace {

using std::chrono::seconds;
using testing::ExitedOk;
using testing::ForkChild;
using testing::JoinChild;
using testing::RecvBytes;

std::string ReadRaw(int fd, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const ssize_t k = ::read(fd, out.data() + got, n - got);
    if (k <= 0) break;
    got += static_cast<std::size_t>(k);
  }
  out.resize(got);
  return out;
}

void WriteRaw(int fd, std::string_view bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()),
            static_cast<ssize_t>(bytes.size()));
}

TEST(ConnectionTest, DuplexPipeCarriesBytesBothWaysBetweenProcesses) {
  auto [a, b] = Pipe();
  const pid_t pid = ForkChild([&, b = b] {
    Connection child = b;
    std::string got = RecvBytes(child);
    child.send_bytes("echo:" + got);
  });
  b.close();
  a.send_bytes("ping");
  EXPECT_EQ(RecvBytes(a), "echo:ping");
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

TEST(ConnectionTest, FramingIsCPythons) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Connection c(fds[0]);
  c.send_bytes("abc");
  c.send_bytes("");
  EXPECT_EQ(ReadRaw(fds[1], 11), std::string("\0\0\0\3abc\0\0\0\0", 11));
  // The 8-byte form (CPython's for 2 GiB and more) is accepted for any size.
  WriteRaw(fds[1], std::string("\xff\xff\xff\xff\0\0\0\0\0\0\0\5hello", 17));
  EXPECT_EQ(RecvBytes(c), "hello");
  ::close(fds[1]);
}

TEST(ConnectionTest, OneWayPipeEndsRefuseTheWrongDirection) {
  auto [r, w] = Pipe(false);
  EXPECT_TRUE(r.readable());
  EXPECT_FALSE(r.writable());
  EXPECT_FALSE(w.readable());
  EXPECT_TRUE(w.writable());
  EXPECT_THROW(r.send_bytes("x"), OSError);
  EXPECT_THROW(w.recv_bytes(), OSError);
  EXPECT_THROW(w.poll(), OSError);
  w.send_bytes("ok");
  EXPECT_EQ(RecvBytes(r), "ok");
}

TEST(ConnectionTest, SendBytesOffsetAndSize) {
  auto [a, b] = Pipe();
  a.send_bytes("0123456789", 3);
  a.send_bytes("0123456789", 2, 4);
  a.send_bytes("0123456789", 10);
  const std::vector<std::int32_t> ints = {1, 2};
  a.send_bytes(ints, 4);
  EXPECT_EQ(RecvBytes(b), "3456789");
  EXPECT_EQ(RecvBytes(b), "2345");
  EXPECT_EQ(RecvBytes(b), "");
  const std::string two = RecvBytes(b);
  ASSERT_EQ(two.size(), 4u);
  std::int32_t v;
  std::memcpy(&v, two.data(), 4);
  EXPECT_EQ(v, 2);
  EXPECT_THROW(a.send_bytes("abc", 4), ValueError);
  EXPECT_THROW(a.send_bytes("abc", 1, 3), ValueError);
  EXPECT_FALSE(b.poll());  // nothing was sent by the failed calls
}

TEST(ConnectionTest, MaxlengthExceededRaisesAndStopsReading) {
  auto [a, b] = Pipe();
  a.send_bytes(std::string(100, 'x'));
  EXPECT_THROW(RecvBytes(b, 99), OSError);
  EXPECT_FALSE(b.readable());
  EXPECT_TRUE(b.writable());
  EXPECT_THROW(b.recv_bytes(), OSError);
  b.send_bytes("still writable");
  EXPECT_EQ(RecvBytes(a), "still writable");

  // A read-only end is closed instead.
  auto [r, w] = Pipe(false);
  w.send_bytes(std::string(10, 'y'));
  EXPECT_THROW(RecvBytes(r, 9), OSError);
  EXPECT_TRUE(r.closed());

  auto [c, d] = Pipe();
  c.send_bytes(std::string(10, 'z'));
  EXPECT_EQ(RecvBytes(d, 10), std::string(10, 'z'));
}

TEST(ConnectionTest, RecvBytesIntoWithOffsetAndBufferTooShort) {
  auto [a, b] = Pipe();
  const std::array<std::int32_t, 5> arr1 = {0, 1, 2, 3, 4};
  std::array<std::int32_t, 10> arr2 = {};
  a.send_bytes(arr1);
  ASSERT_TRUE(b.poll(seconds(30)));
  EXPECT_EQ(b.recv_bytes_into(arr2), 20u);
  EXPECT_EQ(arr2, (std::array<std::int32_t, 10>{0, 1, 2, 3, 4, 0, 0, 0, 0, 0}));

  char buf[8] = {};
  a.send_bytes("abcd");
  ASSERT_TRUE(b.poll(seconds(30)));
  EXPECT_EQ(b.recv_bytes_into(std::span(buf), 4), 4u);
  EXPECT_EQ(std::string(buf + 4, 4), "abcd");

  a.send_bytes("too long for it");
  ASSERT_TRUE(b.poll(seconds(30)));
  try {
    b.recv_bytes_into(std::span(buf), 2);
    ADD_FAILURE() << "expected BufferTooShort";
  } catch (const BufferTooShort& e) {
    EXPECT_EQ(e.message(), "too long for it");
  }
  EXPECT_THROW(b.recv_bytes_into(std::span(buf), 9), ValueError);
  // The stream is still in step.
  a.send_bytes("next");
  EXPECT_EQ(RecvBytes(b), "next");
}

TEST(ConnectionTest, PollEofAndClose) {
  auto [a, b] = Pipe();
  EXPECT_FALSE(b.poll());
  EXPECT_FALSE(b.poll(std::chrono::milliseconds(20)));
  EXPECT_FALSE(b.poll(std::chrono::duration<double>(-1)));
  a.send_bytes("x");
  EXPECT_TRUE(b.poll(seconds(30)));
  EXPECT_TRUE(b.poll());  // polling consumes nothing
  EXPECT_EQ(b.recv_bytes(), "x");
  const int fd = a.fileno();
  EXPECT_GE(fd, 0);
  a.close();
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_THROW(a.fileno(), OSError);
  EXPECT_THROW(a.send_bytes("x"), OSError);
  EXPECT_TRUE(b.poll(seconds(30)));  // end of file is ready
  EXPECT_THROW(b.recv_bytes(), EOFError);
  EXPECT_THROW(b.recv_bytes(), EOFError);
  Connection none;
  EXPECT_TRUE(none.closed());
  EXPECT_THROW(Connection(-1), ValueError);
}

TEST(ConnectionTest, HandlesShareOneConnectionAndTheLastOneCloses) {
  auto [a, b] = Pipe();
  {
    Connection copy = a;
    EXPECT_TRUE(copy == a);
    EXPECT_FALSE(copy == b);
  }
  EXPECT_FALSE(a.closed());
  Connection moved = std::move(a);
  moved.send_bytes("m");
  EXPECT_EQ(RecvBytes(b), "m");
  { Connection gone = std::move(moved); }
  ASSERT_TRUE(b.poll(seconds(30)));
  EXPECT_THROW(b.recv_bytes(), EOFError);
}

TEST(ConnectionTest, StreamOfSmallMessagesKeepsOrderAcrossProcesses) {
  constexpr int kCount = 200000;
  auto [r, w] = Pipe(false);
  const pid_t pid = ForkChild([w = w] {
    Connection out = w;
    for (int i = 0; i < kCount; ++i) out.send_bytes(std::to_string(i));
  });
  w.close();
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(RecvBytes(r), std::to_string(i));
  }
  ASSERT_TRUE(r.poll(seconds(30)));
  EXPECT_THROW(r.recv_bytes(), EOFError);
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

TEST(ConnectionTest, LargeMessagesArriveWhole) {
  auto [r, w] = Pipe(false);
  const std::size_t sizes[] = {16 * 1024 - 1, 16 * 1024, 64 * 1024 + 3,
                               (64u << 20) + 5};
  const pid_t pid = ForkChild([&, w = w] {
    Connection out = w;
    for (std::size_t size : sizes) {
      std::string message(size, '\0');
      for (std::size_t i = 0; i < size; ++i)
        message[i] = static_cast<char>(i * 7 + size);
      out.send_bytes(message);
      out.send_bytes("after");
    }
  });
  w.close();
  for (std::size_t size : sizes) {
    const std::string got = RecvBytes(r);
    ASSERT_EQ(got.size(), size);
    for (std::size_t i = 0; i < size; i += 4093) {
      ASSERT_EQ(got[i], static_cast<char>(i * 7 + size))
          << "size " << size << " at " << i;
    }
    ASSERT_EQ(got.back(), static_cast<char>((size - 1) * 7 + size));
    EXPECT_EQ(RecvBytes(r), "after");
  }
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

TEST(ConnectionTest, GarbageInsteadOfAHeaderRaises) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Connection c(fds[0]);
  WriteRaw(fds[1], "\x80junk that is not a frame");  // a negative length
  EXPECT_THROW(RecvBytes(c), OSError);
  EXPECT_FALSE(c.readable());
  ::close(fds[1]);
}

TEST(ConnectionTest, HugeAnnouncedLengthIsRefusedBeforeAllocating) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Connection c(fds[0]);
  // -1 then 2^62: refused at once, with or without maxlength.
  WriteRaw(fds[1], std::string("\xff\xff\xff\xff\x40\0\0\0\0\0\0\0", 12));
  try {
    RecvBytes(c);
    ADD_FAILURE() << "expected OSError";
  } catch (const OSError& e) {
    EXPECT_NE(std::string(e.what()).find("bad message length"),
              std::string::npos)
        << e.what();
  }
  ::close(fds[1]);

  // Under the hard limit, a lying header fails on the missing bytes, not on
  // memory.
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Connection d(fds[0]);
  WriteRaw(fds[1], std::string("\xff\xff\xff\xff\0\0\0\x40\0\0\0\0abc",
                               15));  // 256 GiB
  ::close(fds[1]);
  EXPECT_THROW(RecvBytes(d), OSError);
}

TEST(ConnectionTest, PeerClosingMidMessageRaisesOSError) {
  for (std::size_t announced : {10u, 100000u}) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    Connection c(fds[0]);
    std::string frame(4, '\0');
    frame[0] = static_cast<char>(announced >> 24);
    frame[1] = static_cast<char>(announced >> 16);
    frame[2] = static_cast<char>(announced >> 8);
    frame[3] = static_cast<char>(announced);
    WriteRaw(fds[1], frame + "part");
    ::close(fds[1]);
    try {
      RecvBytes(c);
      ADD_FAILURE() << "expected OSError";
    } catch (const EOFError&) {
      ADD_FAILURE() << "a truncated message is not a clean end of file";
    } catch (const OSError& e) {
      EXPECT_NE(std::string(e.what()).find("end of file during message"),
                std::string::npos);
    }
  }
  // And mid-header.
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  Connection c(fds[0]);
  WriteRaw(fds[1], std::string("\0\0", 2));
  ::close(fds[1]);
  EXPECT_THROW(RecvBytes(c), OSError);
}

TEST(ConnectionTest, WritingToAClosedPeerRaisesInsteadOfKilling) {
  auto [a, b] = Pipe();
  b.close();
  EXPECT_THROW(
      {
        for (int i = 0; i < 1000; ++i) a.send_bytes(std::string(1 << 16, 'x'));
      },
      OSError);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  Connection w(p[1], false, true);
  ::close(p[0]);
  EXPECT_THROW(w.send_bytes("x"), OSError);
}

// A socket whose SO_RCVTIMEO / SO_SNDTIMEO runs out makes the blocking call
// fail with EAGAIN: that is a timeout, never a reason to wait again without
// end. (The child is killed after 20 s, so a regression fails instead of
// hanging.)
TEST(ConnectionTest, SocketTimeoutsRaiseTimeoutErrorInsteadOfWaitingForEver) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  const pid_t pid = ForkChild([&] {
    const timeval tv{0, 200 * 1000};
    ::setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    Connection c(sv[0]);
    // A partial header, then silence: the read times out mid-message too.
    if (::write(sv[1], "\0\0", 2) != 2) ::_exit(4);
    try {
      c.recv_bytes();
      ::_exit(2);
    } catch (const TimeoutError&) {
    }
    // Fill the peer's buffer: the write times out.
    const std::string big(1 << 20, 'x');
    try {
      for (int i = 0; i < 64; ++i) c.send_bytes(big);
      ::_exit(3);
    } catch (const TimeoutError&) {
    }
  });
  const int status = JoinChild(pid, seconds(20));
  ::close(sv[0]);
  ::close(sv[1]);
  EXPECT_TRUE(ExitedOk(status)) << status;
}

TEST(ConnectionTest, PipeOverPlainPipeFds) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  Connection r(p[0], true, false);
  Connection w(p[1], false, true);
  w.send_bytes("through pipe(2)");
  EXPECT_EQ(RecvBytes(r), "through pipe(2)");
}

}  // namespace
}  // namespace multiprocessing::connection
