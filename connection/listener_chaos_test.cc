// Fault injection against Listener::accept(): silent, trickling and flooding
// peers, and more connections than may be in a handshake at once. A client
// with the key must still be served within a small constant time, and every
// unauthenticated peer must be dropped by its one handshake deadline.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "connection/chaos_test_util.h"
#include "connection/listener.h"
#include "connection/test_util.h"
#include "errors/errors.h"
#include "gtest/gtest.h"

namespace multiprocessing::connection {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ChildGuard;
using testing::FdSet;
using testing::ForkChild;
using testing::kChaosSeed;
using testing::RawTcpConnect;
using testing::RecvBytes;
using testing::SecondsSince;

constexpr char kKey[] = "chaos key";

// A child serving `listener` for ever: every authenticated connection is told
// "served" and kept open; failed handshakes are ignored, as a server would.
pid_t ServeForever(Listener& listener) {
  const pid_t pid = ForkChild([&] {
    std::vector<Connection> served;
    for (;;) {
      try {
        Connection c = listener.accept();
        c.send_bytes("served");
        served.push_back(std::move(c));
      } catch (const AuthenticationError&) {
      }
    }
  });
  listener.close();  // the child's copy serves
  return pid;
}

// Connects with the key and waits for "served"; the seconds it took.
double TimeGoodClient(int port) {
  const auto start = testing::Clock::now();
  Connection c = Client(Address("127.0.0.1", port),
                        {.authkey = kKey, .handshake_timeout = seconds(10)});
  EXPECT_EQ(RecvBytes(c), "served");
  return SecondsSince(start);
}

// A backlog that lets a burst of connections queue instead of being dropped
// (and retried a second later by TCP).
constexpr int kBacklog = 128;

// The slowest of five good clients, printed.
double SlowestOfFiveGoodClients(int port) {
  double worst = 0;
  for (int round = 0; round < 5; ++round) {
    const double took = TimeGoodClient(port);
    worst = std::max(worst, took);
    std::printf("good client %d served in %.3f s\n", round, took);
  }
  return worst;
}

TEST(ListenerChaosTest, SilentTricklingAndFloodingPeersDoNotDelayAGoodClient) {
  SCOPED_TRACE(::testing::Message() << "seed " << kChaosSeed);
  Listener listener(
      Address("127.0.0.1", 0),
      {.backlog = kBacklog, .authkey = kKey, .handshake_timeout = seconds(3)});
  const int port = listener.address().port();
  ChildGuard server(ServeForever(listener));

  // Three silent peers first in line, a trickler and a flooder.
  testing::SilentPeers silent;
  silent.Open(port, 3);
  ChildGuard trickler(testing::StartTrickler(port, milliseconds(100)));
  ChildGuard flooder(testing::StartFlooder(port, kChaosSeed));

  const double worst = SlowestOfFiveGoodClients(port);
  std::printf(
      "3 silent peers, a trickler and a flooder: slowest good client %.3f s "
      "(handshake deadline 3 s)\n",
      worst);
  EXPECT_LT(worst, 2.0);
}

TEST(ListenerChaosTest, MoreSilentPeersThanTheHandshakeTableHolds) {
  SCOPED_TRACE(::testing::Message() << "seed " << kChaosSeed);
  testing::RaiseFdLimit(4096);
  Listener listener(Address("127.0.0.1", 0),
                    {.backlog = kBacklog, .authkey = kKey});
  const int port = listener.address().port();
  ChildGuard server(ServeForever(listener));

  testing::SilentPeers silent;
  silent.Open(port, static_cast<int>(kDefaultMaxPendingHandshakes) + 344);
  const testing::AcceptedCount held = silent.Wait(seconds(1));
  const double worst = SlowestOfFiveGoodClients(port);
  const int server_fds = testing::OpenFds(server.pid());
  std::printf(
      "silent connections held open: %zu (in a handshake: %d, closed by the "
      "listener to make room: %d, not taken yet: %d); listener's open "
      "descriptors: %d; slowest good client: %.3f s\n",
      silent.size(), held.greeted, held.closed, held.waiting, server_fds,
      worst);
  EXPECT_LT(worst, 2.0);
  // Every silent peer was taken, and at most the handshake table (and the
  // served clients) is held: the oldest made room for the newer.
  EXPECT_EQ(held.waiting, 0);
  EXPECT_LE(server_fds, static_cast<int>(kDefaultMaxPendingHandshakes) + 32);
  EXPECT_GE(held.closed,
            static_cast<int>(silent.size() - kDefaultMaxPendingHandshakes));
}

TEST(ListenerChaosTest, SilentAndTricklingPeersAreDroppedAtTheOneDeadline) {
  SCOPED_TRACE(::testing::Message() << "seed " << kChaosSeed);
  Listener listener(Address("127.0.0.1", 0),
                    {.authkey = kKey, .handshake_timeout = seconds(1)});
  const int port = listener.address().port();
  ChildGuard server(ServeForever(listener));

  FdSet peers;
  const int silent = RawTcpConnect(port);
  const int trickling = RawTcpConnect(port);
  peers.Add(silent);
  peers.Add(trickling);
  // The trickler sends a byte of a plausible answer every 100 ms: each read
  // makes progress, but the whole handshake never ends.
  const std::string answer = std::string("\0\0\0\x28", 4) + "{sha256}";
  std::size_t sent = 0;
  const std::optional<double> trickler_closed =
      testing::WaitClosed(trickling, seconds(10), milliseconds(100), [&] {
        (void)::send(trickling, &answer[sent++ % answer.size()], 1,
                     MSG_NOSIGNAL);
      });
  const std::optional<double> silent_closed =
      testing::WaitClosed(silent, seconds(10), milliseconds(100), [] {});
  std::printf(
      "handshake deadline 1 s: trickler (%zu bytes sent) closed after "
      "%.3f s, silent peer closed by then: %s\n",
      sent, trickler_closed.value_or(-1), silent_closed ? "yes" : "no");
  ASSERT_TRUE(trickler_closed) << "a trickling peer outlived its deadline";
  EXPECT_GE(*trickler_closed, 0.9);
  EXPECT_LT(*trickler_closed, 5.0);
  ASSERT_TRUE(silent_closed) << "a silent peer outlived its deadline";
  // And the listener still serves.
  EXPECT_LT(TimeGoodClient(port), 2.0);
}

}  // namespace
}  // namespace multiprocessing::connection
