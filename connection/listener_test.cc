// Listener, Client and the authentication handshake, between processes of this
// library and against CPython's multiprocessing.connection.
#include "connection/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "connection/test_util.h"
#include "connection/wait.h"
#include "errors/errors.h"
#include "gtest/gtest.h"
#include "process/process.h"
#include "reduction/pickle.h"

namespace multiprocessing::connection {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ExitedOk;
using testing::ForkChild;
using testing::JoinChild;
using testing::PythonPeer;
using testing::RecvBytes;
using testing::TempDir;

// accept() once the listener has a pending connection (failing after 60 s
// instead of hanging).
Connection AcceptWithin(Listener& listener) {
  if (wait(std::vector<int>{listener.fileno()}, seconds(60)).empty()) {
    throw TimeoutError("no connection within 60 s");
  }
  return listener.accept();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

TEST(AddressTest, ReprAndStrAreLikePythons) {
  EXPECT_EQ(Address("localhost", 6000).repr(), "('localhost', 6000)");
  EXPECT_EQ(Address("localhost", 6000).str(), "('localhost', 6000)");
  EXPECT_EQ(Address("/tmp/a b").repr(), "'/tmp/a b'");
  EXPECT_EQ(Address("/tmp/a b").str(), "/tmp/a b");
  EXPECT_EQ(Address(std::string("\0name", 5)).repr(), "b'\\x00name'");
  EXPECT_EQ(Address("localhost", 1).family(), Family::kInet);
  EXPECT_EQ(Address("/x").family(), Family::kUnix);
  EXPECT_EQ(FamilyName(Family::kUnix), "AF_UNIX");
  EXPECT_EQ(ParseFamily("AF_INET"), Family::kInet);
  EXPECT_THROW(ParseFamily("AF_PIPE"), ValueError);
  EXPECT_THROW(Address("localhost", 70000), OverflowError);
}

// Serves one connection: echoes each bytes message until end of file.
void EchoServe(Connection conn) {
  for (;;) {
    std::string m;
    try {
      m = RecvBytes(conn);
    } catch (const EOFError&) {
      return;
    }
    conn.send_bytes(m);
  }
}

TEST(ListenerTest, UnixListenerWithoutAddressUsesAPrivateSocketRemovedOnClose) {
  Listener listener;
  const Address address = listener.address();
  ASSERT_EQ(address.family(), Family::kUnix);
  EXPECT_TRUE(PathExists(address.path()));
  const pid_t pid = ForkChild([&] {
    Connection c = Client(address);
    c.send_bytes("over AF_UNIX");
    if (RecvBytes(c) != "over AF_UNIX") throw ValueError("bad echo");
  });
  EchoServe(AcceptWithin(listener));
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  EXPECT_TRUE(listener.last_accepted().has_value());
  listener.close();
  listener.close();
  EXPECT_FALSE(PathExists(address.path()));
  const std::string dir = address.path().substr(0, address.path().rfind('/'));
  EXPECT_FALSE(PathExists(dir));
  EXPECT_THROW(listener.accept(), OSError);
}

TEST(ListenerTest, UnixPathAndAbstractNamespace) {
  TempDir dir;
  const std::string path = dir.path() + "/s";
  const std::string abstract =
      std::string("\0mp-conn-test-", 14) + std::to_string(::getpid());
  for (const Address& address : {Address(path), Address(abstract)}) {
    Listener listener(address, {.authkey = "k"});
    EXPECT_EQ(listener.address(), address);
    const pid_t pid = ForkChild([&] {
      Connection c = Client(address, {.authkey = "k"});
      c.send_bytes("hi");
      if (RecvBytes(c) != "hi") throw ValueError("bad echo");
    });
    EchoServe(AcceptWithin(listener));
    EXPECT_TRUE(ExitedOk(JoinChild(pid)));
  }
  EXPECT_FALSE(PathExists(path));
}

TEST(ListenerTest, InetEphemeralPortIPv4AndIPv6) {
  for (const std::string host : {"localhost", "127.0.0.1", "::1"}) {
    std::optional<Listener> listener;
    try {
      listener.emplace(Address(host, 0),
                       ListenerOptions{.backlog = 4, .authkey = "secret"});
    } catch (const OSError& e) {
      if (host == "::1") GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
      throw;
    }
    const Address bound = listener->address();
    EXPECT_EQ(bound.family(), Family::kInet);
    EXPECT_NE(bound.port(), 0);
    EXPECT_EQ(bound.host(), host == "::1" ? "::1" : "127.0.0.1");
    const pid_t pid = ForkChild([&] {
      Connection c = Client(Address(host, bound.port()), {.authkey = "secret"});
      c.send_bytes("tcp");
      if (RecvBytes(c) != "tcp") throw ValueError("bad echo");
    });
    EchoServe(AcceptWithin(*listener));
    EXPECT_TRUE(ExitedOk(JoinChild(pid)));
    ASSERT_TRUE(listener->last_accepted().has_value());
    EXPECT_EQ(listener->last_accepted()->host(), bound.host());
  }
}

TEST(ListenerTest, FamilyMustMatchTheAddress) {
  EXPECT_THROW(Listener(Address("localhost", 0), {.family = Family::kUnix}),
               ValueError);
  Listener inet(std::nullopt, {.family = Family::kInet});
  EXPECT_EQ(inet.address().family(), Family::kInet);
  EXPECT_EQ(inet.address().host(), "127.0.0.1");
}

TEST(ListenerTest, WrongKeyFailsOnBothSidesAndTheListenerCarriesOn) {
  Listener listener(std::nullopt, {.authkey = "right"});
  const pid_t pid = ForkChild([&] {
    try {
      Client(listener.address(), {.authkey = "wrong"});
    } catch (const AuthenticationError&) {
      ::_exit(7);
    }
  });
  EXPECT_THROW(AcceptWithin(listener), AuthenticationError);
  const int status = JoinChild(pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7) << status;

  const pid_t ok = ForkChild([&] {
    Client(listener.address(), {.authkey = "right"}).send_bytes("in");
  });
  Connection c = AcceptWithin(listener);
  EXPECT_EQ(RecvBytes(c), "in");
  EXPECT_TRUE(ExitedOk(JoinChild(ok)));
}

TEST(ListenerTest, DefaultKeyIsTheCurrentProcessAuthkey) {
  Listener listener(std::nullopt, {.authenticate = true});
  const pid_t pid = ForkChild([&] {
    Client(listener.address(), {.authenticate = true}).send_bytes("same key");
  });
  Connection c = AcceptWithin(listener);
  EXPECT_EQ(RecvBytes(c), "same key");
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

// A raw socket client, to play a hostile or broken peer.
int RawConnect(const Address& address) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, address.path().c_str(), address.path().size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof un) != 0)
    std::abort();
  return fd;
}

TEST(ListenerTest, JunkOrSilenceDuringTheHandshakeFailsWithinTheDeadline) {
  Listener listener(std::nullopt,
                    {.authkey = "k", .handshake_timeout = milliseconds(300)});
  // Junk in place of the answer: a negative length, a huge one, then a
  // wrong-sized digest.
  const std::vector<std::string> junks = {
      "\xff\xff\xff\xfe garbage", std::string("\x7f\xff\xff\xff", 4) + "x",
      std::string("\0\0\0\5hello", 9)};
  for (const std::string& junk : junks) {
    const int fd = RawConnect(listener.address());
    ASSERT_EQ(::write(fd, junk.data(), junk.size()),
              static_cast<ssize_t>(junk.size()));
    EXPECT_THROW(AcceptWithin(listener), AuthenticationError);
    ::close(fd);
  }
  // Silence.
  const int silent = RawConnect(listener.address());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(AcceptWithin(listener), AuthenticationError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(10));
  ::close(silent);
  // A peer that hangs up.
  ::close(RawConnect(listener.address()));
  EXPECT_THROW(AcceptWithin(listener), AuthenticationError);
}

TEST(ListenerTest, ClientFailsWithinTheDeadlineAgainstASilentOrJunkServer) {
  Listener raw(std::nullopt);  // no key: accepts without a handshake
  const pid_t pid = ForkChild([&] {
    Connection server_side = AcceptWithin(raw);
    Connection junk_side = AcceptWithin(raw);
    junk_side.send_bytes("#NOT A CHALLENGE#");
    // Hold both open until the client gives up.
    RecvBytes(server_side);
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(Client(raw.address(),
                      {.authkey = "k", .handshake_timeout = milliseconds(300)}),
               AuthenticationError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(10));
  EXPECT_THROW(
      Client(raw.address(), {.authkey = "k", .handshake_timeout = seconds(30)}),
      AuthenticationError);
  ::kill(pid, SIGKILL);
  JoinChild(pid);
}

TEST(ChallengeTest, Sha256IsNegotiatedBetweenUs) {
  auto [a, b] = Pipe();
  const pid_t pid = ForkChild([b = b]() mutable {
    const std::string challenge = RecvBytes(b);
    if (challenge.rfind("#CHALLENGE#{sha256}", 0) != 0 ||
        challenge.size() != 11 + 8 + 40) {
      throw ValueError("not a sha256 challenge");
    }
    // Hand the challenge on to answer_challenge through a second pipe, checking
    // the answer's form.
    auto [x, y] = Pipe();
    x.send_bytes(challenge);
    x.send_bytes("#WELCOME#");
    answer_challenge(y, "key");
    const std::string answer = RecvBytes(x);
    if (answer.rfind("{sha256}", 0) != 0 || answer.size() != 8 + 32)
      throw ValueError("bad answer");
    b.send_bytes(answer);
    if (RecvBytes(b) != "#WELCOME#") throw ValueError("not welcomed");
  });
  deliver_challenge(a, "key");
  EXPECT_TRUE(ExitedOk(JoinChild(pid)));
}

// ---- Interop with CPython
// -------------------------------------------------------------------

constexpr char kPythonClient[] = R"PY(
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
kind, where, port, key, mode = sys.argv[1:6]
address = (where, int(port)) if kind == 'inet' else where
try:
    c = Client(address, authkey=key.encode())
except AuthenticationError:
    print('AuthenticationError', flush=True)
    sys.exit(0)
with c:
    print('connected', flush=True)
    data = c.recv_bytes()
    c.send_bytes(data[::-1])
    big = c.recv_bytes()
    c.send_bytes(b'%d %d' % (len(big), sum(big[::4099])))
    c.send_bytes(big)
    if mode == 'objects':
        obj = c.recv()
        print(repr(obj), flush=True)
        c.send(obj)
        c.send([1, 'two', 3.5, None, (True, b'x'), {'k': [2**70]}])
)PY";

constexpr char kPythonListener[] = R"PY(
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener
key, mode = sys.argv[1:3]
with Listener(('127.0.0.1', 0), authkey=key.encode()) as l:
    print(l.address[1], flush=True)
    try:
        c = l.accept()
    except AuthenticationError:
        print('AuthenticationError', flush=True)
        sys.exit(0)
    with c:
        print('accepted', flush=True)
        c.send_bytes(b'hello from python')
        data = c.recv_bytes()
        c.send_bytes(data.upper())
        big = c.recv_bytes()
        c.send_bytes(big)
        if mode == 'objects':
            c.send({'list': [1, 2.5, 'x'], 'none': None, 'tuple': (1, b'b')})
            print(repr(c.recv()), flush=True)
)PY";

// CPython 3.12's handshake, written out here because the python3 of the tests
// is 3.11.
constexpr char kPython312Peer[] = R"PY(
import hmac, os, sys
from multiprocessing.connection import Client, Listener
def deliver(c, key):
    msg = b'{sha256}' + os.urandom(40)
    c.send_bytes(b'#CHALLENGE#' + msg)
    resp = c.recv_bytes(256)
    ok = resp.startswith(b'{sha256}') and hmac.compare_digest(
        resp[8:], hmac.new(key, msg, 'sha256').digest())
    c.send_bytes(b'#WELCOME#' if ok else b'#FAILURE#')
    return ok
def answer(c, key):
    m = c.recv_bytes(256)
    assert m.startswith(b'#CHALLENGE#{sha256}'), m
    m = m[len(b'#CHALLENGE#'):]
    c.send_bytes(b'{sha256}' + hmac.new(key, m, 'sha256').digest())
    return c.recv_bytes(256) == b'#WELCOME#'
role, key = sys.argv[1], sys.argv[2].encode()
if role == 'server':
    with Listener(('127.0.0.1', 0)) as l:
        print(l.address[1], flush=True)
        with l.accept() as c:
            ok = deliver(c, key) and answer(c, key)
            print('ok' if ok else 'failed', flush=True)
            if ok:
                c.send_bytes(b'sha256 welcome')
else:
    with Client(('127.0.0.1', int(sys.argv[3]))) as c:
        ok = answer(c, key) and deliver(c, key)
        print('ok' if ok else 'failed', flush=True)
        if ok:
            c.send_bytes(b'sha256 hello')
)PY";

std::string BigMessage() {
  std::string big((64u << 20) + 17, '\0');
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>((i * 31) >> 3);
  return big;
}

std::string Checksum(const std::string& big) {
  unsigned long long sum = 0;
  for (std::size_t i = 0; i < big.size(); i += 4099)
    sum += static_cast<unsigned char>(big[i]);
  return std::to_string(big.size()) + " " + std::to_string(sum);
}

TEST(InteropTest, CppListenerWithPythonClient) {
  TempDir dir;
  const std::string big = BigMessage();
  for (const bool inet : {true, false}) {
    Listener listener(
        inet ? std::optional<Address>(Address("localhost", 0)) : std::nullopt,
        {.authkey = "secret password"});
    const Address& a = listener.address();
    PythonPeer py(
        dir, kPythonClient,
        {inet ? "inet" : "unix", inet ? a.host() : a.path(),
         std::to_string(inet ? a.port() : 0), "secret password", "objects"});
    Connection c = AcceptWithin(listener);
    EXPECT_EQ(py.ReadLine(), "connected");
    c.send_bytes("abc");
    EXPECT_EQ(RecvBytes(c), "cba");
    c.send_bytes(big);
    EXPECT_EQ(RecvBytes(c), Checksum(big));
    EXPECT_TRUE(RecvBytes(c) == big);
    // Objects both ways: C++ -> Python -> C++ (typed), and Python's own -> C++
    // (dynamic).
    const auto sent =
        std::make_tuple(42, std::string("hello"), 2.5, std::optional<int>(),
                        std::vector<int>{1, 2, 3});
    c.send(sent);
    EXPECT_EQ(py.ReadLine(), "(42, 'hello', 2.5, None, [1, 2, 3])");
    ASSERT_TRUE(c.poll(seconds(60)));
    EXPECT_TRUE(c.recv<std::remove_const_t<decltype(sent)>>() == sent);
    ASSERT_TRUE(c.poll(seconds(60)));
    EXPECT_EQ(reduction::repr(c.recv()),
              "[1, 'two', 3.5, None, (True, b'x'), {'k': "
              "[1180591620717411303424]}]");
    int status;
    py.Finish(&status);
    EXPECT_TRUE(ExitedOk(status));
  }
}

TEST(InteropTest, CppListenerRejectsPythonClientWithWrongKey) {
  TempDir dir;
  Listener listener(Address("127.0.0.1", 0), {.authkey = "right"});
  PythonPeer py(dir, kPythonClient,
                {"inet", "127.0.0.1", std::to_string(listener.address().port()),
                 "wrong", "bytes"});
  EXPECT_THROW(AcceptWithin(listener), AuthenticationError);
  EXPECT_EQ(py.ReadLine(), "AuthenticationError");
}

TEST(InteropTest, PythonListenerWithCppClient) {
  TempDir dir;
  const std::string big = BigMessage();
  PythonPeer py(dir, kPythonListener, {"secret password", "objects"});
  const int port = std::stoi(py.ReadLine());
  Connection c =
      Client(Address("127.0.0.1", port), {.authkey = "secret password"});
  EXPECT_EQ(py.ReadLine(), "accepted");
  EXPECT_EQ(RecvBytes(c), "hello from python");
  c.send_bytes("shout");
  EXPECT_EQ(RecvBytes(c), "SHOUT");
  c.send_bytes(big);
  EXPECT_TRUE(RecvBytes(c) == big);
  ASSERT_TRUE(c.poll(seconds(60)));
  EXPECT_EQ(reduction::repr(c.recv()),
            "{'list': [1, 2.5, 'x'], 'none': None, 'tuple': (1, b'b')}");
  c.send(std::map<std::string, std::vector<double>>{{"a", {1.5}}, {"b", {}}});
  EXPECT_EQ(py.ReadLine(), "{'a': [1.5], 'b': []}");
  int status;
  py.Finish(&status);
  EXPECT_TRUE(ExitedOk(status));
}

// The documentation's Listener example, unchanged but for an ephemeral port
// printed for the client, with a C++ client doing what the doc's Python client
// does. It sends a type object (float) among its values.
constexpr char kDocListener[] = R"PY(
from multiprocessing.connection import Listener
from array import array

address = ('localhost', 0)     # family is deduced to be 'AF_INET'

with Listener(address, authkey=b'secret password') as listener:
    print(listener.address[1], flush=True)
    with listener.accept() as conn:
        print('connection accepted from', listener.last_accepted[0], flush=True)

        conn.send([2.25, None, 'junk', float])

        conn.send_bytes(b'hello')

        conn.send_bytes(array('i', [42, 1729]))
)PY";

TEST(InteropTest, TheDocsPythonListenerWithACppClient) {
  TempDir dir;
  PythonPeer py(dir, kDocListener, {});
  const int port = std::stoi(py.ReadLine());
  Connection conn =
      Client(Address("localhost", port), {.authkey = "secret password"});
  EXPECT_EQ(py.ReadLine(), "connection accepted from 127.0.0.1");
  ASSERT_TRUE(conn.poll(seconds(60)));
  const reduction::Object obj = conn.recv();
  EXPECT_EQ(reduction::repr(obj), "[2.25, None, 'junk', <class 'float'>]");
  EXPECT_EQ(RecvBytes(conn), "hello");
  std::array<std::int32_t, 5> arr = {0, 0, 0, 0, 0};
  ASSERT_TRUE(conn.poll(seconds(60)));
  EXPECT_EQ(conn.recv_bytes_into(arr), 8u);
  EXPECT_EQ(arr, (std::array<std::int32_t, 5>{42, 1729, 0, 0, 0}));
  int status;
  py.Finish(&status);
  EXPECT_TRUE(ExitedOk(status));
}

TEST(InteropTest, PythonListenerRejectsCppClientWithWrongKey) {
  TempDir dir;
  PythonPeer py(dir, kPythonListener, {"right", "bytes"});
  const int port = std::stoi(py.ReadLine());
  EXPECT_THROW(Client(Address("127.0.0.1", port), {.authkey = "wrong"}),
               AuthenticationError);
  EXPECT_EQ(py.ReadLine(), "AuthenticationError");
}

TEST(InteropTest, Sha256HandshakeWithA312StylePythonPeer) {
  TempDir dir;
  {
    PythonPeer py(dir, kPython312Peer, {"server", "k312"});
    const int port = std::stoi(py.ReadLine());
    Connection c = Client(Address("127.0.0.1", port), {.authkey = "k312"});
    EXPECT_EQ(py.ReadLine(), "ok");
    EXPECT_EQ(RecvBytes(c), "sha256 welcome");
  }
  {
    Listener listener(Address("127.0.0.1", 0), {.authkey = "k312"});
    PythonPeer py(
        dir, kPython312Peer,
        {"client", "k312", std::to_string(listener.address().port())});
    Connection c = AcceptWithin(listener);
    EXPECT_EQ(RecvBytes(c), "sha256 hello");
    EXPECT_EQ(py.ReadLine(), "ok");
  }
  {
    Listener listener(Address("127.0.0.1", 0), {.authkey = "other"});
    PythonPeer py(
        dir, kPython312Peer,
        {"client", "k312", std::to_string(listener.address().port())});
    EXPECT_THROW(AcceptWithin(listener), AuthenticationError);
    EXPECT_EQ(py.ReadLine(), "failed");
  }
}

}  // namespace
}  // namespace multiprocessing::connection
