// Process behaviour under each start method: exit codes, joins, sentinels,
// repr, misuse, reaping, fd hygiene.
#include "process/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "connection/connection.h"
#include "gtest/gtest.h"
#include "process/context.h"
#include "process/util.h"
#include "reduction/registry.h"

namespace multiprocessing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kDeadline = seconds(60);

void Noop() {}
void ExitWith(int code) { multiprocessing::exit(code); }
void ExitWithMessage(std::string message) { multiprocessing::exit(message); }
void Throw(std::string message) { throw ValueError(message); }
void SleepForever() {
  for (;;) ::pause();
}
void CheckName(std::string expected) {
  multiprocessing::exit(current_process().name() == expected ? 0 : 1);
}
// The authkey is raw bytes: it travels as Python bytes, not str.
void CheckAuthkey(reduction::Bytes expected) {
  multiprocessing::exit(current_process().authkey() == expected.data ? 0 : 1);
}
void CheckParent(int parent_pid, std::string parent_name) {
  std::optional<Process> parent = parent_process();
  if (!parent) multiprocessing::exit(2);
  if (parent->pid() != parent_pid) multiprocessing::exit(3);
  if (parent->name() != parent_name) multiprocessing::exit(4);
  if (!parent->is_alive()) multiprocessing::exit(5);
  multiprocessing::exit(0);
}
// Starts a fork child that checks its generational name.
void StartGrandchild() {
  Process p =
      get_context("fork").Process(CheckName, current_process().name() + ":1");
  p.start();
  p.join(kDeadline);
  multiprocessing::exit(p.exitcode().value_or(99));
}
void TryToStartChild() {
  try {
    Process p(Noop);
    p.start();
    p.join(kDeadline);
  } catch (const AssertionError&) {
    multiprocessing::exit(5);
  }
  multiprocessing::exit(0);
}
void CheckDaemonFlag(bool expected) {
  multiprocessing::exit(current_process().daemon() == expected ? 0 : 1);
}

// A Connection argument carries an fd: inherited under fork, passed beside
// the pickle under spawn and forkserver.
void SendDouble(connection::Connection conn, int value) {
  conn.send(value * 2);
}

MP_REGISTER_FUNCTION(SendDouble);
MP_REGISTER_FUNCTION(Noop);
MP_REGISTER_FUNCTION(ExitWith);
MP_REGISTER_FUNCTION(ExitWithMessage);
MP_REGISTER_FUNCTION(Throw);
MP_REGISTER_FUNCTION(SleepForever);
MP_REGISTER_FUNCTION(CheckName);
MP_REGISTER_FUNCTION(CheckAuthkey);
MP_REGISTER_FUNCTION(CheckParent);
MP_REGISTER_FUNCTION(StartGrandchild);
MP_REGISTER_FUNCTION(TryToStartChild);
MP_REGISTER_FUNCTION(CheckDaemonFlag);

int CountOpenFds() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// Runs `body` with fd 2 redirected to a pipe; returns what was written.
template <class F>
std::string CaptureStderr(F body) {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  int saved = ::dup(2);
  ::dup2(fds[1], 2);
  ::close(fds[1]);
  body();
  ::dup2(saved, 2);
  ::close(saved);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, n);
  ::close(fds[0]);
  return out;
}

class ProcessTest : public ::testing::TestWithParam<std::string> {
 protected:
  const Context& ctx() const { return get_context(GetParam()); }

  // Starts f(args...) and joins it; returns its exit code.
  template <class F, class... Args>
  int RunToEnd(F f, Args... args) {
    Process p = ctx().Process(f, args...);
    p.start();
    p.join(kDeadline);
    EXPECT_TRUE(p.exitcode().has_value()) << "child did not end in time";
    return p.exitcode().value_or(-1000);
  }
};

TEST_P(ProcessTest, ExitCodes) {
  EXPECT_EQ(RunToEnd(Noop), 0);
  EXPECT_EQ(RunToEnd(ExitWith, 0), 0);
  EXPECT_EQ(RunToEnd(ExitWith, 7), 7);
  EXPECT_EQ(RunToEnd(ExitWith, 255), 255);
  Process p = ctx().Process();  // no target: run() does nothing
  p.start();
  p.join(kDeadline);
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessTest, ThrowingTargetReportsAndExitsOne) {
  int code = -1;
  std::string err = CaptureStderr([&] { code = RunToEnd(Throw, "it broke"); });
  EXPECT_EQ(code, 1);
  // A forkserver child writes to the server's stderr, the test's original
  // one, not to the redirection.
  if (GetParam() == "forkserver") return;
  EXPECT_NE(err.find("Process Process-"), std::string::npos) << err;
  EXPECT_NE(err.find("ValueError: it broke\n"), std::string::npos) << err;
}

TEST_P(ProcessTest, ExitWithMessage) {
  int code = -1;
  std::string err =
      CaptureStderr([&] { code = RunToEnd(ExitWithMessage, "goodbye"); });
  EXPECT_EQ(code, 1);
  if (GetParam() != "forkserver") EXPECT_EQ(err, "goodbye\n");
}

TEST_P(ProcessTest, TerminateAndKill) {
  Process t = ctx().Process(SleepForever);
  t.start();
  EXPECT_TRUE(t.is_alive());
  t.terminate();
  t.join(kDeadline);
  EXPECT_EQ(t.exitcode(), -SIGTERM);
  EXPECT_FALSE(t.is_alive());
  EXPECT_EQ(t.repr(), "<Process(" + t.name() + ", stopped[SIGTERM])>");

  Process k = ctx().Process(SleepForever);
  k.start();
  k.kill();
  k.join(kDeadline);
  EXPECT_EQ(k.exitcode(), -SIGKILL);
  k.terminate();  // already ended: nothing happens
}

TEST_P(ProcessTest, JoinTimeout) {
  Process p = ctx().Process(SleepForever);
  p.start();
  auto t0 = std::chrono::steady_clock::now();
  p.join(milliseconds(100));
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, milliseconds(95));
  EXPECT_FALSE(p.exitcode().has_value());
  EXPECT_TRUE(p.is_alive());
  p.join(std::chrono::duration<double>(0));
  EXPECT_TRUE(p.is_alive());
  p.terminate();
  p.join(kDeadline);
  EXPECT_EQ(p.exitcode(), -SIGTERM);
  p.join();  // joining again returns at once
}

TEST_P(ProcessTest, SentinelBecomesReadable) {
  Process p = ctx().Process(SleepForever);
  EXPECT_THROW(p.sentinel(), ValueError);
  p.start();
  pollfd fd{p.sentinel(), POLLIN, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 0);
  p.terminate();
  ASSERT_EQ(::poll(&fd, 1, 60000), 1);
  EXPECT_EQ(p.exitcode(), -SIGTERM);
}

TEST_P(ProcessTest, ReprInEveryState) {
  Process p = ctx().Process(ExitWith, 3);
  const std::string name = p.name();
  EXPECT_EQ(p.repr(), "<Process(" + name + ", initial)>");
  p.start();
  p.join(kDeadline);
  EXPECT_EQ(p.repr(), "<Process(" + name + ", stopped[exitcode=3])>");
  p.close();
  EXPECT_EQ(p.repr(), "<Process(" + name + ", closed)>");

  Process d = ctx().Process({.name = "d", .daemon = true}, SleepForever);
  EXPECT_EQ(d.repr(), "<Process(d, initial daemon)>");
  d.start();
  EXPECT_EQ(d.repr(), "<Process(d, started daemon)>");
  d.kill();
  d.join(kDeadline);
  EXPECT_EQ(d.repr(), "<Process(d, stopped[SIGKILL] daemon)>");

  Process ok = ctx().Process(Noop);
  ok.start();
  ok.join(kDeadline);
  EXPECT_EQ(ok.repr(), "<Process(" + ok.name() + ", stopped)>");
}

TEST_P(ProcessTest, Misuse) {
  Process p = ctx().Process(SleepForever);
  EXPECT_THROW(p.join(), AssertionError);  // before start
  EXPECT_THROW(p.terminate(), ValueError);
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.pid(), std::nullopt);
  EXPECT_EQ(p.exitcode(), std::nullopt);
  p.start();
  EXPECT_THROW(p.start(), AssertionError);  // twice
  EXPECT_THROW(p.set_daemon(true), AssertionError);
  EXPECT_THROW(p.close(), ValueError);  // running
  EXPECT_THROW(current_process().join(), AssertionError);
  EXPECT_THROW(current_process().start(), AssertionError);
  p.terminate();
  p.join(kDeadline);
  p.close();
  p.close();  // twice is fine
  EXPECT_THROW(p.join(), ValueError);
  EXPECT_THROW(p.is_alive(), ValueError);
  EXPECT_THROW(p.sentinel(), ValueError);
}

TEST_P(ProcessTest, DaemonCannotHaveChildren) {
  EXPECT_EQ(RunToEnd(TryToStartChild), 0);
  Process d = ctx().Process({.daemon = true}, TryToStartChild);
  d.start();
  d.join(kDeadline);
  EXPECT_EQ(d.exitcode(), 5);
}

TEST_P(ProcessTest, DaemonFlagIsInheritedByDefault) {
  Process d = ctx().Process({.daemon = true}, CheckDaemonFlag, true);
  d.start();
  d.join(kDeadline);
  EXPECT_EQ(d.exitcode(), 0);
  EXPECT_EQ(RunToEnd(CheckDaemonFlag, false), 0);
}

TEST_P(ProcessTest, NamesAuthkeyAndParent) {
  Process a = ctx().Process(Noop);
  Process b = ctx().Process(Noop);
  ASSERT_EQ(a.name().rfind("Process-", 0), 0u);
  const int n = std::stoi(a.name().substr(8));
  EXPECT_EQ(b.name(), "Process-" + std::to_string(n + 1));
  Process c =
      ctx().Process({.name = "worker"}, CheckName, std::string("worker"));
  c.start();
  c.join(kDeadline);
  EXPECT_EQ(c.exitcode(), 0);
  // In a child, the first child is "<child's name>:1".
  EXPECT_EQ(RunToEnd(StartGrandchild), 0);

  EXPECT_EQ(
      RunToEnd(CheckAuthkey, reduction::Bytes{current_process().authkey()}), 0);
  Process k = ctx().Process({.authkey = std::string("secret")}, CheckAuthkey,
                            reduction::Bytes{"secret"});
  k.start();
  k.join(kDeadline);
  EXPECT_EQ(k.exitcode(), 0);
  EXPECT_EQ(RunToEnd(CheckParent, static_cast<int>(::getpid()),
                     std::string("MainProcess")),
            0);
}

TEST_P(ProcessTest, ActiveChildrenReapsAndLeavesNoZombie) {
  Process p = ctx().Process(Noop);
  p.start();
  const int pid = *p.pid();
  pollfd fd{p.sentinel(), POLLIN, 0};
  ASSERT_EQ(::poll(&fd, 1, 60000), 1);
  for (const Process& c : active_children()) EXPECT_NE(c.pid(), pid);
  if (GetParam() != "forkserver") {
    // Reaped: no zombie left for waitpid to find.
    EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
  }
  EXPECT_EQ(p.exitcode(), 0);
}

TEST_P(ProcessTest, DroppedHandleIsStillTracked) {
  int pid;
  {
    Process p = ctx().Process(SleepForever);
    p.start();
    pid = *p.pid();
  }
  std::vector<Process> children = active_children();
  ASSERT_EQ(children.size(), 1u);
  EXPECT_EQ(children[0].pid(), pid);
  children[0].terminate();
  children[0].join(kDeadline);
  EXPECT_EQ(children[0].exitcode(), -SIGTERM);
  EXPECT_TRUE(active_children().empty());
}

TEST_P(ProcessTest, FdArgumentsTravel) {
  auto [mine, theirs] = Pipe();
  Process p = ctx().Process(SendDouble, theirs, 21);
  p.start();
  ASSERT_TRUE(mine.poll(kDeadline));
  EXPECT_EQ(mine.recv<int>(), 42);
  p.join(kDeadline);
  EXPECT_EQ(p.exitcode(), 0);
}

TEST(SetExecutable, MissingProgramFailsAtStart) {
  set_executable("/nonexistent/program");
  Process p = get_context("spawn").Process(Noop);
  EXPECT_THROW(p.start(), OSError);
  EXPECT_FALSE(p.is_alive());
  set_executable("");
  EXPECT_EQ(get_executable(), "/proc/self/exe");
}

TEST_P(ProcessTest, ManyStartJoinCyclesLeakNoFd) {
  // Warm up lazily created state (fork server, temp dir, logger).
  EXPECT_EQ(RunToEnd(Noop), 0);
  const int before = CountOpenFds();
  // Re-executing a test binary costs tens of milliseconds under sanitizers.
  const int cycles = GetParam() == "spawn" ? 200 : 1000;
  for (int i = 0; i < cycles; ++i) {
    Process p = ctx().Process(Noop);
    p.start();
    p.join(kDeadline);
    ASSERT_EQ(p.exitcode(), 0);
  }
  EXPECT_EQ(CountOpenFds(), before);
  EXPECT_TRUE(active_children().empty());
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ProcessTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

TEST(CurrentProcess, MainProcess) {
  Process me = current_process();
  EXPECT_EQ(me.name(), "MainProcess");
  EXPECT_EQ(me.pid(), ::getpid());
  EXPECT_EQ(me.ident(), ::getpid());
  EXPECT_EQ(me.authkey().size(), 32u);
  EXPECT_EQ(me.repr(), "<Process(MainProcess, started)>");
  EXPECT_TRUE(me.is_alive());
  EXPECT_FALSE(me.daemon());
  EXPECT_FALSE(parent_process().has_value());
  EXPECT_EQ(current_process(), me);
}

TEST(CurrentProcess, AuthkeyIsInheritedAndSettable) {
  std::string key = current_process().authkey();
  Process p([] {});
  EXPECT_EQ(p.authkey(), key);
  current_process().set_authkey("abc");
  EXPECT_EQ(current_process().authkey(), "abc");
  Process q([] {});
  EXPECT_EQ(q.authkey(), "abc");
  current_process().set_authkey(key);
}

TEST(Fork, AnyCallableWorks) {
  int captured = 41;
  Process p([captured](int add) { multiprocessing::exit(captured + add); }, 1);
  p.start();
  p.join(kDeadline);
  EXPECT_EQ(p.exitcode(), 42);
}

int atexit_fd = -1;
void WriteAtExit() {
  if (atexit_fd >= 0) (void)!::write(atexit_fd, "x", 1);
}
struct WritesWhenDestroyed {
  ~WritesWhenDestroyed() { WriteAtExit(); }
} static_object;

TEST(Fork, ChildSkipsTheParentsAtexitHandlersAndStaticDestructors) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  atexit_fd = fds[1];
  std::atexit(WriteAtExit);
  Process p = get_context("fork").Process(Noop);
  p.start();
  p.join(kDeadline);
  EXPECT_EQ(p.exitcode(), 0);
  atexit_fd = -1;
  ::close(fds[1]);
  char c;
  EXPECT_EQ(::read(fds[0], &c, 1), 0) << "the child ran an exit handler";
  ::close(fds[0]);
}

TEST(Fork, ChildRunsItsOwnFinalizers) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  Finalize parents([] {}, 0);  // not run by the child
  const int w = fds[1];
  Process p = get_context("fork").Process([w] {
    Finalize late([w] { (void)!::write(w, "b", 1); }, -5);
    Finalize early([w] { (void)!::write(w, "a", 1); }, 10);
  });
  p.start();
  p.join(kDeadline);
  ::close(fds[1]);
  char buf[8];
  ssize_t n = ::read(fds[0], buf, sizeof buf);
  ::close(fds[0]);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "ab");
  EXPECT_TRUE(parents.still_active());
  parents.cancel();
}

class Worker : public Process {
 public:
  explicit Worker(int code) : Process({.name = "worker"}), code_(code) {}
  void run() override { multiprocessing::exit(code_); }

 private:
  int code_;
};

TEST(Fork, SubclassOverridesRun) {
  Worker w(9);
  w.start();
  w.join(kDeadline);
  EXPECT_EQ(w.exitcode(), 9);
  EXPECT_EQ(w.repr(), "<Process(worker, stopped[exitcode=9])>");
}

TEST(Spawn, SubclassNeedsFork) {
  class SpawnWorker : public Process {
   public:
    SpawnWorker() : Process({.context = &get_context("spawn")}) {}
    void run() override {}
  } w;
  EXPECT_THROW(w.start(), ValueError);
}

void Unregistered() {}

struct NotPicklable {
  int x;
};
void TakesNotPicklable(NotPicklable) {}

TEST(Spawn, UnregisteredOrUnpicklableTargetFailsAtStart) {
  for (const char* method : {"spawn", "forkserver"}) {
    Process a = get_context(method).Process(Unregistered);
    try {
      a.start();
      ADD_FAILURE() << "expected PicklingError";
    } catch (const PicklingError& e) {
      EXPECT_NE(std::string(e.what()).find("MP_REGISTER_FUNCTION"),
                std::string::npos)
          << e.what();
    }
    Process b = get_context(method).Process([] {});
    EXPECT_THROW(b.start(), PicklingError);
    Process c = get_context(method).Process(TakesNotPicklable, NotPicklable{1});
    try {
      c.start();
      ADD_FAILURE() << "expected PicklingError";
    } catch (const PicklingError& e) {
      EXPECT_NE(std::string(e.what()).find("NotPicklable"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(a.is_alive());
    EXPECT_TRUE(active_children().empty());
  }
}

TEST(Contexts, StartMethods) {
  EXPECT_EQ(get_all_start_methods(),
            (std::vector<std::string>{"fork", "spawn", "forkserver"}));
  EXPECT_THROW(get_context("threads"), ValueError);
  EXPECT_EQ(get_context("spawn").get_start_method(), "spawn");
  EXPECT_THROW(get_context("spawn").set_start_method("fork"), ValueError);
  EXPECT_EQ(&get_context("spawn").get_context(), &get_context("spawn"));
  set_start_method(std::nullopt, /*force=*/true);
  EXPECT_EQ(get_start_method(/*allow_none=*/true), std::nullopt);
  set_start_method("forkserver");
  EXPECT_THROW(set_start_method("spawn"), RuntimeError);
  EXPECT_EQ(get_start_method(), "forkserver");
  EXPECT_EQ(&get_context(), &get_context("forkserver"));
  set_start_method("fork", /*force=*/true);
  EXPECT_EQ(get_start_method(), "fork");
  EXPECT_GE(cpu_count(), 1);
}

TEST(Util, FinalizeRunsOnceInCreator) {
  int runs = 0;
  Finalize f([&] { ++runs; }, 0);
  EXPECT_TRUE(f.still_active());
  f();
  f();
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(f.still_active());
  Finalize g([&] { ++runs; });
  g.cancel();
  g();
  EXPECT_EQ(runs, 1);
}

int after_fork_marker = 0;
void CheckAfterFork() { multiprocessing::exit(after_fork_marker); }

TEST(Util, AfterForkHooksRunInForkedChildren) {
  int token = register_after_fork([] { after_fork_marker = 17; });
  Process p = get_context("fork").Process(CheckAfterFork);
  p.start();
  p.join(kDeadline);
  EXPECT_EQ(p.exitcode(), 17);
  EXPECT_EQ(after_fork_marker, 0);
  unregister_after_fork(token);
}

TEST(Util, TempDirIsPrivate) {
  std::string dir = get_temp_dir();
  EXPECT_EQ(get_temp_dir(), dir);
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

// The fork servers this process spawned, found through /proc.
std::vector<int> ForkserverPids() {
  std::vector<int> pids;
  DIR* dir = ::opendir("/proc");
  while (dirent* e = ::readdir(dir)) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2 ||
        ppid != ::getpid() || state == 'Z') {
      continue;
    }
    std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(cmd)),
                        std::istreambuf_iterator<char>());
    if (cmdline.find("--multiprocessing-forkserver") != std::string::npos) {
      pids.push_back(pid);
    }
  }
  ::closedir(dir);
  return pids;
}

TEST(Forkserver, ServerDeathNeitherHangsNorBreaksLaterStarts) {
  const Context& ctx = get_context("forkserver");
  Process warm = ctx.Process(Noop);
  warm.start();
  warm.join(kDeadline);
  ASSERT_EQ(warm.exitcode(), 0);
  std::vector<int> servers = ForkserverPids();
  ASSERT_EQ(servers.size(), 1u);

  Process orphan = ctx.Process(SleepForever);
  orphan.start();
  ASSERT_EQ(::kill(servers[0], SIGKILL), 0);
  // The server can no longer report; the child is still watched and can
  // still be stopped.
  orphan.join(milliseconds(200));
  EXPECT_TRUE(orphan.is_alive());
  orphan.terminate();
  orphan.join(kDeadline);
  EXPECT_EQ(orphan.exitcode(), 255);  // its real status went to init

  // The next start notices and starts a new server.
  Process after = ctx.Process(ExitWith, 3);
  after.start();
  after.join(kDeadline);
  EXPECT_EQ(after.exitcode(), 3);
  std::vector<int> now = ForkserverPids();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0], servers[0]);
}

void StartEarly() {}
MP_REGISTER_FUNCTION(StartEarly);

TEST(Spawn, ChildStartingBeforeFreezeSupportFailsClearly) {
  ::setenv("MP_TEST_START_BEFORE_FREEZE_SUPPORT", "1", 1);
  Process p = get_context("spawn").Process(Noop);
  int code = -1;
  std::string err = CaptureStderr([&] {
    p.start();
    p.join(kDeadline);
    code = p.exitcode().value_or(-1000);
  });
  ::unsetenv("MP_TEST_START_BEFORE_FREEZE_SUPPORT");
  EXPECT_EQ(code, 42);
  EXPECT_NE(err.find("freeze_support"), std::string::npos) << err;
}

}  // namespace
}  // namespace multiprocessing

int main(int argc, char** argv) {
  if (::getenv("MP_TEST_START_BEFORE_FREEZE_SUPPORT") != nullptr) {
    // In the spawned child of the test above: main() forgot to call
    // freeze_support() first.
    try {
      multiprocessing::Process p(multiprocessing::StartEarly);
      p.start();
    } catch (const multiprocessing::RuntimeError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::fflush(stderr);
      ::_exit(42);
    }
    ::_exit(43);
  }
  multiprocessing::freeze_support(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
