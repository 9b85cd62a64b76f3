// The main process's exit under each start method: daemonic children are
// terminated, the others joined, temp dirs removed.
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace {

std::string Helper() {
  return absl::StrCat(std::getenv("TEST_SRCDIR"),
                      "/multiprocessing/process/process_exit_helper");
}

class ExitTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ExitTest, DaemonTerminatedOthersJoined) {
  const std::string tmp = std::getenv("TEST_TMPDIR");
  const std::string marker = absl::StrCat(tmp, "/marker-", GetParam());
  const std::string log = absl::StrCat(tmp, "/log-", GetParam());
  ::unlink(marker.c_str());
  // The helper runs under `timeout`, so a hang fails instead of blocking.
  const std::string command =
      absl::StrCat("TMPDIR=", tmp, " timeout 60 ", Helper(), " ", GetParam(),
                   " ", marker, " 2>", log);
  FILE* out = ::popen(command.c_str(), "r");
  ASSERT_NE(out, nullptr);
  int daemon_pid = 0, worker_pid = 0;
  ASSERT_EQ(std::fscanf(out, "%d %d", &daemon_pid, &worker_pid), 2);
  int status = ::pclose(out);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);

  // The worker finished its work before the helper exited...
  struct stat st;
  EXPECT_EQ(::stat(marker.c_str(), &st), 0) << "the worker was not joined";
  // ...and neither child is left (both were reaped by the helper).
  EXPECT_EQ(::kill(daemon_pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
  EXPECT_EQ(::kill(worker_pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);

  FILE* in = std::fopen(log.c_str(), "r");
  ASSERT_NE(in, nullptr);
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) text.append(buf, n);
  std::fclose(in);
  EXPECT_NE(text.find("[INFO/MainProcess] process shutting down"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[INFO/MainProcess] calling terminate() for daemon "
                      "Process-1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[INFO/MainProcess] calling join() for process "
                      "Process-2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[INFO/Process-2] child process calling self.run()"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("[INFO/Process-2] process exiting with exitcode 0"),
            std::string::npos)
      << text;

  // No temp dir (the forkserver's socket lives in one) is left.
  FILE* ls =
      ::popen(absl::StrCat("ls -d ", tmp, "/pymp-* 2>/dev/null").c_str(), "r");
  ASSERT_NE(ls, nullptr);
  char line[512];
  EXPECT_EQ(std::fgets(line, sizeof line, ls), nullptr) << line;
  ::pclose(ls);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ExitTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

}  // namespace
