// Fault injection against the manager's server: silent, trickling and
// flooding clients, a thousand silent connections against a server at its
// descriptor limit, running out of descriptors in accept(2), the server killed
// while clients call, and the socket directory a killed server leaves behind.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "connection/chaos_test_util.h"
#include "connection/connection.h"
#include "connection/listener.h"
#include "connection/test_util.h"
#include "errors/errors.h"
#include "gtest/gtest.h"
#include "logging/logging.h"
#include "managers/managers.h"
#include "reduction/object.h"

namespace multiprocessing::managers {
namespace {

using connection::Address;
using connection::Connection;
using connection::testing::ChildGuard;
using connection::testing::Clock;
using connection::testing::ForkChild;
using connection::testing::kChaosSeed;
using connection::testing::SecondsSince;
using reduction::Object;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kKey[] = "manager chaos key";

// The registrations of SyncManager, made once in the parent.
const Registry& SyncRegistry() {
  static const Registry registry = SyncManager().registry();
  return registry;
}

// A manager server in a child process, killed and reaped with the guard.
struct ServerChild {
  std::unique_ptr<ChildGuard> guard;
  Address address{"", 0};
};

// Starts a server on `address` (127.0.0.1 and a free port by default) in a
// child. `before` runs in the child before the server is made (e.g. to lower
// its descriptor limit), `serving` just before it serves.
ServerChild StartServer(
    std::optional<Address> address = Address("127.0.0.1", 0),
    connection::Timeout handshake_timeout =
        connection::kDefaultHandshakeTimeout,
    const std::function<void()>& before = [] {},
    const std::function<void(Server&)>& serving = [](Server&) {}) {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const pid_t pid = ForkChild([&] {
    ::close(p[0]);
    before();
    Server server(SyncRegistry(), address, kKey, handshake_timeout);
    const Address& a = server.address();
    const std::string where = a.family() == connection::Family::kInet
                                  ? std::to_string(a.port())
                                  : a.path();
    if (::write(p[1], where.data(), where.size()) < 0) ::_exit(3);
    ::close(p[1]);
    serving(server);
    server.serve_until_shutdown();
  });
  ::close(p[1]);
  ServerChild out{std::make_unique<ChildGuard>(pid)};
  std::string where;
  char buf[256];
  pollfd pf{p[0], POLLIN, 0};
  while (::poll(&pf, 1, 30000) > 0) {
    const ssize_t k = ::read(p[0], buf, sizeof buf);
    if (k <= 0) break;
    where.append(buf, static_cast<std::size_t>(k));
  }
  ::close(p[0]);
  EXPECT_FALSE(where.empty()) << "the server child reported no address";
  if (!address || address->family() == connection::Family::kUnix) {
    out.address = Address(where);
  } else {
    out.address = Address("127.0.0.1", where.empty() ? 0 : std::stoi(where));
  }
  return out;
}

// Connects with the key, makes one request of the server and waits for its
// answer; the seconds it took.
double TimeGoodClient(const Address& address) {
  const auto start = Clock::now();
  Connection c = connection::Client(
      address, {.authkey = kKey, .handshake_timeout = seconds(10)});
  c.send(Object::tuple(
      {Object(), Object("dummy"), Object::tuple(), Object::dict()}));
  if (!c.poll(seconds(10))) throw TimeoutError("no answer within 10 s");
  EXPECT_EQ(reduction::repr(c.recv()), "('#RETURN', None)");
  return SecondsSince(start);
}

TEST(ServerChaosTest, AThousandSilentConnectionsAgainstAServerAtItsFdLimit) {
  SCOPED_TRACE(::testing::Message() << "seed " << kChaosSeed);
  if (connection::testing::RaiseFdLimit(4096) < 2048) {
    GTEST_SKIP() << "needs at least 2048 descriptors for the silent clients";
  }
  ServerChild server = StartServer(Address("127.0.0.1", 0),
                                   connection::kDefaultHandshakeTimeout, [] {
                                     rlimit r{1024, 1024};
                                     if (::setrlimit(RLIMIT_NOFILE, &r) != 0)
                                       ::_exit(4);
                                   });
  const int port = server.address.port();
  connection::testing::SilentPeers silent;
  silent.Open(port, 1100);
  const connection::testing::AcceptedCount held = silent.Wait(seconds(1));
  double worst = 0;
  for (int round = 0; round < 5; ++round) {
    const double took = TimeGoodClient(server.address);
    worst = std::max(worst, took);
    std::printf("good client %d served in %.3f s\n", round, took);
  }
  const pid_t pid = server.guard->pid();
  const long threads = connection::testing::ProcStatus(pid, "Threads");
  const int fds = connection::testing::OpenFds(pid);
  std::printf(
      "RLIMIT_NOFILE 1024, silent connections held open: %zu (in a handshake: "
      "%d, closed by the server to make room: %d, not taken: %d); server "
      "threads: %ld, open descriptors: %d; slowest good client: %.3f s\n",
      silent.size(), held.greeted, held.closed, held.waiting, threads, fds,
      worst);
  EXPECT_LT(worst, 2.0);
  EXPECT_LT(threads, 16) << "a thread per unauthenticated connection?";
  EXPECT_LE(fds,
            static_cast<int>(connection::kDefaultMaxPendingHandshakes) + 32);
}

TEST(ServerChaosTest, SilentTricklingAndFloodingClients) {
  SCOPED_TRACE(::testing::Message() << "seed " << kChaosSeed);
  ServerChild server = StartServer(Address("127.0.0.1", 0), seconds(1));
  const int port = server.address.port();
  connection::testing::SilentPeers silent;
  silent.Open(port, 3);
  ChildGuard flooder(connection::testing::StartFlooder(port, kChaosSeed));
  const int trickling = connection::testing::RawTcpConnect(port);
  // A byte of a plausible answer every 100 ms: each read makes progress, but
  // the handshake never ends.
  const std::string answer = std::string("\0\0\0\x28", 4) + "{sha256}";
  std::size_t sent = 0;
  const std::optional<double> trickler_closed = connection::testing::WaitClosed(
      trickling, seconds(10), milliseconds(100), [&] {
        (void)::send(trickling, &answer[sent++ % answer.size()], 1,
                     MSG_NOSIGNAL);
      });
  ::close(trickling);
  const connection::testing::AcceptedCount after = silent.Wait(milliseconds(0));
  double worst = 0;
  for (int round = 0; round < 5; ++round) {
    worst = std::max(worst, TimeGoodClient(server.address));
  }
  std::printf(
      "handshake deadline 1 s, with a flooder: trickler (%zu bytes sent) "
      "closed after %.3f s; silent clients closed by then: %d of 3; slowest of "
      "5 good clients: %.3f s\n",
      sent, trickler_closed.value_or(-1), after.closed, worst);
  ASSERT_TRUE(trickler_closed) << "a trickling client outlived its deadline";
  EXPECT_GE(*trickler_closed, 0.9);
  EXPECT_LT(*trickler_closed, 5.0);
  EXPECT_EQ(after.closed, 3) << "silent clients outlived their deadline";
  EXPECT_LT(worst, 2.0);
}

TEST(ServerChaosTest, OutOfDescriptorsInAcceptBacksOffAndRecovers) {
  SCOPED_TRACE(::testing::Message() << "seed " << kChaosSeed);
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "AddressSanitizer's runtime needs descriptors of its own and "
                  "aborts a process that has none left";
#endif
#endif
  connection::testing::TempDir dir;
  const std::string log_path = dir.path() + "/server.log";
  int release[2];
  ASSERT_EQ(::pipe2(release, O_CLOEXEC), 0);
  ServerChild server = StartServer(
      Address("127.0.0.1", 0), connection::kDefaultHandshakeTimeout, [] {},
      [&](Server&) {
        // Warnings to a file, then every descriptor taken until the parent
        // says to give them back.
        const int log = ::open(log_path.c_str(),
                               O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ::dup2(log, 2);
        ::close(log);
        log_to_stderr(logging::WARNING);
        // The thread that gives them back starts first: making a thread may
        // need descriptors (sanitizers' runtimes read /proc).
        auto* fillers = new std::vector<int>;
        std::promise<void> filled;
        std::thread([fillers, done = filled.get_future(), fd = release[0]] {
          done.wait();
          char c;
          while (::read(fd, &c, 1) < 0 && errno == EINTR) {
          }
          for (int f : *fillers) ::close(f);
        }).detach();
        const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0) fillers->push_back(null);
        for (int fd; null >= 0 && (fd = ::dup(null)) >= 0;) {
          fillers->push_back(fd);
        }
        filled.set_value();
      });
  ::close(release[0]);
  const pid_t pid = server.guard->pid();
  // Clients whose connections the server cannot take.
  connection::testing::FdSet waiting;
  for (int i = 0; i < 5; ++i) {
    waiting.Add(connection::testing::RawTcpConnect(server.address.port()));
  }
  // Wait (at most 10 s) for the server to meet EMFILE, then measure its CPU
  // over a window.
  const auto logged = [&] {
    std::ifstream in(log_path);
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    int n = 0;
    for (std::size_t at = 0;
         (at = text.find("accept failed", at)) != std::string::npos; ++at) {
      ++n;
    }
    return n;
  };
  const auto wait_start = Clock::now();
  while (logged() == 0 && SecondsSince(wait_start) < 10) {
    pollfd none{-1, 0, 0};
    ::poll(&none, 1, 20);
  }
  const double window = 1.5;
  const double cpu_before = connection::testing::CpuSeconds(pid);
  {
    pollfd none{-1, 0, 0};
    ::poll(&none, 1, static_cast<int>(window * 1000));  // the window measured
  }
  const double cpu = connection::testing::CpuSeconds(pid) - cpu_before;
  const int warnings = logged();
  // Give the descriptors back: the server accepts again. (A server that died
  // must fail the test, not kill it with SIGPIPE.)
  const sighandler_t old_sigpipe = ::signal(SIGPIPE, SIG_IGN);
  const ssize_t released = ::write(release[1], "x", 1);
  ::signal(SIGPIPE, old_sigpipe);
  ASSERT_EQ(released, 1) << "the server died";
  ::close(release[1]);
  const double took = TimeGoodClient(server.address);
  std::printf(
      "out of descriptors with 5 clients waiting: server CPU %.3f s over a "
      "%.1f s window (%.0f%%), warnings logged: %d; after descriptors were "
      "freed, a good client was served in %.3f s\n",
      cpu, window, 100 * cpu / window, warnings, took);
  EXPECT_LT(cpu, 0.2 * window) << "accept spins on EMFILE";
  EXPECT_EQ(warnings, 1);
  EXPECT_LT(took, 3.0);
}

TEST(ServerChaosTest, KilledServerGivesCallersAClearErrorQuickly) {
  SCOPED_TRACE(::testing::Message() << "seed " << kChaosSeed);
  ServerChild server = StartServer();
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  constexpr int kClients = 4;
  std::vector<std::unique_ptr<ChildGuard>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<ChildGuard>(ForkChild([&] {
      ::close(ready[0]);
      SyncManager m(server.address, std::string(kKey));
      m.connect();
      ListProxy l = m.list();
      l.append(0);
      if (::write(ready[1], "r", 1) != 1) ::_exit(5);
      try {
        for (int n = 1;; ++n) l.append(n);
      } catch (const EOFError& e) {
        std::fprintf(stderr, "client: EOFError: %s\n", e.what());
        ::_exit(3);
      } catch (const OSError& e) {
        std::fprintf(stderr, "client: OSError: %s\n", e.what());
        ::_exit(3);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "client: unexpected error: %s\n", e.what());
        ::_exit(4);
      }
    })));
  }
  ::close(ready[1]);
  for (int i = 0; i < kClients; ++i) {
    pollfd p{ready[0], POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30000), 1) << "clients did not start calling";
    char c;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
  }
  ::close(ready[0]);
  const auto killed = Clock::now();
  server.guard->Kill();
  int clear = 0;
  for (auto& c : clients) {
    const int status = c->Join(seconds(10));
    clear += WIFEXITED(status) && WEXITSTATUS(status) == 3;
  }
  const double took = SecondsSince(killed);
  std::printf(
      "server killed (SIGKILL) while %d clients called: %d got EOFError / "
      "OSError, all done within %.3f s\n",
      kClients, clear, took);
  EXPECT_EQ(clear, kClients);
  EXPECT_LT(took, 5.0);
}

TEST(ServerChaosTest, SocketDirectoryOfAKilledServerIsRemovedAtNextStart) {
  connection::testing::TempDir dir;
  const char* old_tmpdir = ::getenv("TMPDIR");
  const std::string saved = old_tmpdir != nullptr ? old_tmpdir : "";
  ::setenv("TMPDIR", dir.path().c_str(), 1);
  // One server killed, one alive.
  ServerChild killed = StartServer(std::nullopt);
  ServerChild alive = StartServer(std::nullopt);
  killed.guard->Kill();
  const std::string stale = killed.address.path();
  struct stat st;
  EXPECT_EQ(::lstat(stale.c_str(), &st), 0) << "nothing left behind?";
  {
    Server next(SyncRegistry(), std::nullopt, kKey);
    EXPECT_NE(::lstat(stale.c_str(), &st), 0) << stale << " still there";
    const std::string parent = stale.substr(0, stale.rfind('/'));
    EXPECT_NE(::lstat(parent.c_str(), &st), 0) << parent << " still there";
    // The live server's socket is left alone and still serves.
    EXPECT_EQ(::lstat(alive.address.path().c_str(), &st), 0);
    EXPECT_LT(TimeGoodClient(alive.address), 5.0);
  }
  alive.guard->Kill();
  if (old_tmpdir != nullptr) {
    ::setenv("TMPDIR", saved.c_str(), 1);
  } else {
    ::unsetenv("TMPDIR");
  }
}

}  // namespace
}  // namespace multiprocessing::managers
