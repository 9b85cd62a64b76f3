// Objects over connections: send()/recv() through pickle, and descriptors
// passed with SCM_RIGHTS.
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "connection/connection.h"
#include "connection/listener.h"
#include "connection/test_util.h"
#include "errors/errors.h"
#include "gtest/gtest.h"
#include "reduction/pickle.h"

namespace multiprocessing::connection {
namespace {

using std::chrono::seconds;
using testing::ExitedOk;
using testing::ForkChild;
using testing::JoinChild;
using testing::RecvBytes;

template <class T = reduction::Object>
T Recv(Connection& c) {
  if (!c.poll(seconds(60))) throw TimeoutError("no message within 60 s");
  return c.recv<T>();
}

TEST(ConnectionPickleTest, ObjectsCrossProcesses) {
  auto [a, b] = Pipe();
  const pid_t pid = ForkChild([b = b]() mutable {
    auto v = Recv<std::vector<int>>(b);
    v.push_back(4);
    b.send(v);
    b.send(std::make_tuple(42, std::nullopt, std::string("hello")));
  });
  a.send(std::vector<int>{1, 2, 3});
  EXPECT_EQ(Recv<std::vector<int>>(a), (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(reduction::repr(Recv(a)), "(42, None, 'hello')");
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

TEST(ConnectionPickleTest, ABadMessageForTheTypeRaisesAndTheStreamGoesOn) {
  auto [a, b] = Pipe();
  a.send(std::string("not an int"));
  a.send(7);
  EXPECT_THROW(Recv<int>(b), TypeError);
  EXPECT_EQ(Recv<int>(b), 7);
  a.send_bytes("\x80\x04garbage");
  EXPECT_THROW(Recv(b), UnpicklingError);
  a.send(8);
  EXPECT_EQ(Recv<int>(b), 8);
}

struct Unpicklable {};

}  // namespace
}  // namespace multiprocessing::connection

template <>
struct multiprocessing::reduction::Pickler<
    multiprocessing::connection::Unpicklable> {
  static void Save(Writer&, const multiprocessing::connection::Unpicklable&) {
    throw PicklingError("Unpicklable cannot be pickled");
  }
  static multiprocessing::connection::Unpicklable Load(Reader&) { return {}; }
};

namespace multiprocessing::connection {
namespace {

TEST(ConnectionPickleTest,
     AnUnpicklableObjectRaisesInTheSenderAndNothingIsSent) {
  auto [a, b] = Pipe();
  EXPECT_THROW(a.send(std::make_pair(1, Unpicklable{})), PicklingError);
  auto [x, y] = Pipe();
  x.close();
  EXPECT_THROW(a.send(x), PicklingError);  // a closed Connection
  EXPECT_FALSE(b.poll());
  a.send(std::string("usable"));
  EXPECT_EQ(Recv<std::string>(b), "usable");
}

TEST(ConnectionPickleTest, ConnectionsTravelOverConnections) {
  auto [a, b] = Pipe();
  constexpr int kCount = 40;
  std::vector<Connection> kept;
  const pid_t pid = ForkChild([b = b]() mutable {
    // Each received Connection gets a message naming its position; plain
    // messages in between.
    for (int i = 0; i < kCount; ++i) {
      if (i % 3 == 0) {
        if (Recv<std::string>(b) != "plain " + std::to_string(i))
          throw ValueError("out of step");
      } else {
        auto [tag, conn] = Recv<std::pair<int, Connection>>(b);
        if (tag != i) throw ValueError("wrong tag");
        conn.send_bytes("through passed connection " + std::to_string(i));
      }
    }
    // A received read end works too.
    auto reader = Recv<Connection>(b);
    b.send_bytes(RecvBytes(reader));
  });
  // Send them all at once so that several messages (and their descriptors)
  // share one read.
  std::vector<Connection> readers;
  for (int i = 0; i < kCount; ++i) {
    if (i % 3 == 0) {
      a.send(std::string("plain ") + std::to_string(i));
    } else {
      auto [mine, theirs] = Pipe();
      a.send(std::make_pair(i, theirs));
      theirs.close();  // the child holds its own copy now
      readers.push_back(mine);
    }
  }
  auto [r, w] = Pipe(false);
  a.send(r);
  r.close();
  w.send_bytes("to the passed read end");
  int n = 0;
  for (int i = 0; i < kCount; ++i) {
    if (i % 3 == 0) continue;
    EXPECT_EQ(RecvBytes(readers[n++]),
              "through passed connection " + std::to_string(i));
  }
  EXPECT_EQ(RecvBytes(a), "to the passed read end");
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  // The children's ends are closed now: each reader sees end of file.
  for (Connection& reader : readers) {
    ASSERT_TRUE(reader.poll(seconds(30)));
    EXPECT_THROW(reader.recv_bytes(), EOFError);
  }
}

TEST(ConnectionPickleTest, DescriptorsNeedAnAfUnixSocket) {
  Listener listener(Address("127.0.0.1", 0));
  Connection client = Client(listener.address());
  Connection server = listener.accept();
  auto [x, y] = Pipe();
  try {
    client.send(x);
    ADD_FAILURE() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("AF_UNIX"), std::string::npos);
  }
  client.send(std::string("still fine"));
  EXPECT_EQ(Recv<std::string>(server), "still fine");
}

TEST(ConnectionPickleTest, DescriptorsSentWithRecvBytesAreClosedNotLeaked) {
  auto [a, b] = Pipe();
  auto [x, y] = Pipe();
  a.send(x);
  x.close();
  // Reading the message as bytes drops the descriptor, so y sees end of file.
  EXPECT_FALSE(RecvBytes(b).empty());
  ASSERT_TRUE(y.poll(seconds(30)));
  EXPECT_THROW(y.recv_bytes(), EOFError);
}

}  // namespace
}  // namespace multiprocessing::connection
