// Helpers for the connection tests: forked children with deadlines, and CPython
// peers.
#ifndef MULTIPROCESSING_CONNECTION_TEST_UTIL_H_
#define MULTIPROCESSING_CONNECTION_TEST_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "errors/errors.h"
#include "gtest/gtest.h"

extern char** environ;

namespace multiprocessing::connection::testing {

// A child process that runs `body` and exits 0, or 1 when it throws (printing
// the error). It dies by SIGALRM after 60 s so a bug cannot hang the test.
inline pid_t ForkChild(const std::function<void()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);
    int code = 0;
    try {
      body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child failed: %s\n", e.what());
      code = 1;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  return pid;
}

// Waits at most `timeout` for `pid` to exit and returns its wait status
// (killing it on timeout and failing the test).
inline int JoinChild(pid_t pid,
                     std::chrono::seconds timeout = std::chrono::seconds(60)) {
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int r;
    while ((r = ::poll(&p, 1, static_cast<int>(timeout.count() * 1000))) < 0 &&
           errno == EINTR) {
    }
    ::close(pidfd);
    if (r == 0) {
      ADD_FAILURE() << "child " << pid << " did not finish within "
                    << timeout.count() << " s";
      ::kill(pid, SIGKILL);
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// recv_bytes() once a message is there, raising TimeoutError after 60 s instead
// of hanging.
template <class Conn>
std::string RecvBytes(Conn& c,
                      std::optional<std::size_t> maxlength = std::nullopt) {
  if (!c.poll(std::chrono::seconds(60)))
    throw TimeoutError("no message within 60 s");
  return c.recv_bytes(maxlength);
}

inline bool ExitedOk(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A private temporary directory, removed (with its files) at destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string templ =
        std::string(base != nullptr && std::string(base).size() < 60 ? base
                                                                     : "/tmp") +
        "/conn-XXXXXX";
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() {
    const std::string cmd = "rm -rf '" + path_ + "'";
    if (std::system(cmd.c_str()) != 0)
      std::fprintf(stderr, "could not remove %s\n", path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A python3 process running `script` with `args`; its stdout is captured.
class PythonPeer {
 public:
  PythonPeer(const TempDir& dir, const std::string& script,
             const std::vector<std::string>& args) {
    static int counter = 0;
    const std::string file =
        dir.path() + "/peer" + std::to_string(counter++) + ".py";
    std::ofstream(file) << script;
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) std::abort();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> argv_strings = {"python3", file};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(),
                       environ) != 0) {
      ADD_FAILURE() << "cannot start python3";
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    out_ = out[0];
  }
  ~PythonPeer() {
    if (pid_ > 0) Finish();
    if (out_ >= 0) ::close(out_);
  }

  // The next line python prints (without the newline), waiting at most 60 s.
  std::string ReadLine() {
    std::string line;
    char c;
    for (;;) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 60000) <= 0) {
        ADD_FAILURE() << "python peer printed no line within 60 s";
        return line;
      }
      if (::read(out_, &c, 1) != 1 || c == '\n') return line;
      line += c;
    }
  }

  // Waits (at most 60 s) for python to exit; returns the rest of its stdout and
  // its exit status.
  std::string Finish(int* status_out = nullptr) {
    std::string output;
    char buf[4096];
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{out_, POLLIN, 0};
      if (left.count() <= 0 ||
          ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
        ADD_FAILURE() << "python peer did not finish within 60 s";
        ::kill(pid_, SIGKILL);
        break;
      }
      const ssize_t k = ::read(out_, buf, sizeof buf);
      if (k <= 0) break;
      output.append(buf, static_cast<std::size_t>(k));
    }
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    if (status_out != nullptr) *status_out = status;
    return output;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

}  // namespace multiprocessing::connection::testing

#endif  // MULTIPROCESSING_CONNECTION_TEST_UTIL_H_
