#include "process/internal/spawn.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "logging/logging.h"
#include "process/context.h"
#include "process/internal/bootstrap.pb.h"
#include "process/internal/state.h"
#include "process/internal/target.h"

extern char** environ;

namespace multiprocessing::internal {
namespace {

constexpr std::string_view kSpawnMarker = "--multiprocessing-spawn";
constexpr std::string_view kForkserverMarker = "--multiprocessing-forkserver";

bool LogsToStderr() {
  for (const auto& handler : get_logger().handlers()) {
    auto* stream = dynamic_cast<logging::StreamHandler*>(handler.get());
    if (stream != nullptr && stream->fd() == 2) return true;
  }
  return false;
}

void WriteAll(int fd, std::string_view data, const char* what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) RaiseOSError(what, errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

std::string ReadAllFrom(int fd) {
  std::string out;
  char buf[65536];
  off_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) RaiseOSError("pread(bootstrap fd)", errno);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    offset += n;
  }
}

[[noreturn]] void DieInChild(const std::string& message) {
  FlushStdStreams();
  WriteStderr(absl::StrCat("multiprocessing child: ", message, "\n"));
  ::_exit(1);
}

int ParseFdArg(const char* arg, std::string_view key) {
  std::string_view a = arg ? arg : "";
  int fd = -1;
  if (a.size() <= key.size() + 1 || a.substr(0, key.size()) != key ||
      a[key.size()] != '=' ||
      !absl::SimpleAtoi(absl::string_view(a.data() + key.size() + 1,
                                          a.size() - key.size() - 1),
                        &fd) ||
      fd < 0) {
    DieInChild(absl::StrCat("malformed argument '", std::string(a),
                            "', expected ", std::string(key), "=<fd>"));
  }
  return fd;
}

}  // namespace

PickledTarget::PickledTarget(PickledTarget&& other) noexcept
    : function(std::move(other.function)),
      args(std::move(other.args)),
      fds(std::move(other.fds)) {
  other.fds.clear();
}

PickledTarget::~PickledTarget() {
  for (int fd : fds) ::close(fd);
}

bool IsChildMarker(std::string_view arg) {
  return arg == kSpawnMarker || arg == kForkserverMarker;
}

int WritePreparation(const ChildSpec& spec, const PickledTarget& target) {
  Preparation prep;
  prep.set_name(spec.name);
  for (int i : spec.identity) prep.add_identity(i);
  prep.set_daemon(spec.daemon);
  prep.set_authkey(spec.authkey);
  prep.set_parent_pid(static_cast<int32_t>(::getpid()));
  prep.set_parent_name(spec.parent_name);
  prep.set_start_method(spec.start_method);
  prep.set_log_level(get_logger().level());
  prep.set_log_to_stderr(LogsToStderr());
  prep.set_target(target.function);
  prep.set_args(target.args);
  prep.set_num_fds(static_cast<int32_t>(target.fds.size()));
  std::string data = prep.SerializeAsString();
  int fd = ::memfd_create("multiprocessing-bootstrap", MFD_CLOEXEC);
  if (fd < 0) RaiseOSError("memfd_create", errno);
  try {
    WriteAll(fd, data, "write(bootstrap data)");
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

pid_t SpawnProgram(const std::vector<std::string>& args,
                   const std::vector<int>& fds) {
  const std::string exe = get_executable();
  std::string argv0 = ProgramArgv0();
  if (argv0.empty()) argv0 = exe;
  std::vector<char*> argv;
  argv.push_back(argv0.data());
  std::vector<std::string> copies = args;
  for (auto& a : copies) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Two rounds of dup2 put the fds at 3, 4, ... whatever their numbers: first
  // above every source and target, then down into place.
  const int n = static_cast<int>(fds.size());
  int high = 3 + n;
  for (int fd : fds) high = std::max(high, fd + 1);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (int i = 0; i < n; ++i) {
    posix_spawn_file_actions_adddup2(&actions, fds[i], high + i);
  }
  for (int i = 0; i < n; ++i) {
    posix_spawn_file_actions_adddup2(&actions, high + i, 3 + i);
  }
  posix_spawn_file_actions_addclosefrom_np(&actions, 3 + n);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  FlushStdStreams();
  pid_t pid = 0;
  int err =
      ::posix_spawn(&pid, exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    RaiseOSError(absl::StrCat("posix_spawn(", exe, ")"), err);
  }
  return pid;
}

std::shared_ptr<Popen> LaunchSpawn(const ChildSpec& spec,
                                   PickledTarget& target) {
  int data_fd = WritePreparation(spec, target);
  std::vector<int> fds = {data_fd};
  fds.insert(fds.end(), target.fds.begin(), target.fds.end());
  pid_t pid;
  try {
    pid = SpawnProgram({std::string(kSpawnMarker), "bootstrap_fd=3"}, fds);
  } catch (...) {
    ::close(data_fd);
    throw;
  }
  ::close(data_fd);
  return AdoptChild(pid);
}

void RunPreparedChild(int data_fd, std::vector<int> fds, bool from_forkserver) {
  Preparation prep;
  {
    std::string data;
    try {
      data = ReadAllFrom(data_fd);
    } catch (const std::exception& e) {
      DieInChild(e.what());
    }
    ::close(data_fd);
    if (!prep.ParseFromString(data)) {
      DieInChild("the bootstrap data from the parent is malformed");
    }
  }
  if (prep.num_fds() < 0 ||
      (from_forkserver && static_cast<size_t>(prep.num_fds()) != fds.size())) {
    DieInChild("the parent passed a different number of fds than announced");
  }
  if (!from_forkserver) {
    for (int i = 0; i < prep.num_fds(); ++i) fds.push_back(4 + i);
  }
  auto state = std::make_shared<ProcessState>();
  state->name = prep.name();
  state->identity.assign(prep.identity().begin(), prep.identity().end());
  state->daemon = prep.daemon();
  state->authkey = prep.authkey();
  state->parent_pid = prep.parent_pid();
  if (prep.log_to_stderr()) log_to_stderr();
  if (prep.log_level() != 0) get_logger().setLevel(prep.log_level());
  {
    ProcessGlobals& g = Globals();
    std::lock_guard<std::mutex> lock(g.mu);
    g.forkserver_child = from_forkserver;
  }
  BecomeChild(state, ParentInfo{prep.parent_name(), prep.parent_pid()},
              prep.start_method(), /*forked=*/false);
  if (!prep.target().empty()) {
    auto fd_holder = std::make_shared<std::vector<int>>(std::move(fds));
    state->target = [function = prep.target(), args = prep.args(),
                     fd_holder]() mutable {
      CallRegisteredTarget(function, args, std::move(*fd_holder));
    };
  } else {
    for (int fd : fds) ::close(fd);
  }
  Process self = ProcessAccess::Make(state);
  int code = RunChild(self);
  FlushStdStreams();
  ::_exit(code);
}

void RunChildProgram(int argc, char** argv) {
  std::string_view marker = argv[1];
  if (marker == kSpawnMarker) {
    if (argc < 3) DieInChild("missing bootstrap_fd argument");
    RunPreparedChild(ParseFdArg(argv[2], "bootstrap_fd"), {},
                     /*from_forkserver=*/false);
  }
  if (argc < 4) DieInChild("missing forkserver arguments");
  RunForkserver(ParseFdArg(argv[2], "listener_fd"),
                ParseFdArg(argv[3], "alive_fd"));
}

}  // namespace multiprocessing::internal
