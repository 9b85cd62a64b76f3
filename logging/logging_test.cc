#include "logging/logging.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_split.h"
#include "errors/errors.h"
#include "gtest/gtest.h"

namespace multiprocessing {
namespace {

// Collects what a handler writes through a pipe.
class Capture {
 public:
  Capture() {
    EXPECT_EQ(::pipe2(fds_, O_CLOEXEC | O_NONBLOCK), 0);
    handler_ = std::make_shared<logging::StreamHandler>(fds_[1]);
    handler_->setFormatter(logging::Formatter(logging::kDefaultFormat));
  }
  ~Capture() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  const std::shared_ptr<logging::StreamHandler>& handler() { return handler_; }
  std::string Read() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds_[0], buf, sizeof(buf))) > 0) out.append(buf, n);
    return out;
  }

 private:
  int fds_[2];
  std::shared_ptr<logging::StreamHandler> handler_;
};

TEST(LoggingTest, NewLoggerIsNotsetWithoutHandlers) {
  logging::Logger logger("fresh");
  EXPECT_EQ(logger.level(), logging::NOTSET);
  EXPECT_TRUE(logger.handlers().empty());
  EXPECT_EQ(logger.getEffectiveLevel(), logging::WARNING);
  EXPECT_EQ(get_logger().name(), "multiprocessing");
}

TEST(LoggingTest, LevelNames) {
  EXPECT_EQ(logging::getLevelName(logging::SUBDEBUG), "SUBDEBUG");
  EXPECT_EQ(logging::getLevelName(5), "SUBDEBUG");
  EXPECT_EQ(logging::getLevelName(25), "SUBWARNING");
  EXPECT_EQ(logging::getLevelName(50), "CRITICAL");
  EXPECT_EQ(logging::getLevelName(17), "Level 17");
  EXPECT_EQ(logging::SUBDEBUG, 5);
  EXPECT_EQ(logging::DEBUG, 10);
  EXPECT_EQ(logging::INFO, 20);
  EXPECT_EQ(logging::SUBWARNING, 25);
  EXPECT_EQ(logging::WARNING, 30);
  EXPECT_EQ(logging::ERROR, 40);
  EXPECT_EQ(logging::CRITICAL, 50);
}

TEST(LoggingTest, DefaultFormatAndLevels) {
  Capture capture;
  logging::Logger logger("multiprocessing-test");
  logger.addHandler(capture.handler());
  logger.addHandler(capture.handler());  // added once only, as in Python
  logger.warning("doomed");
  logger.info("not shown at the default level");
  logger.setLevel(logging::INFO);
  logger.info("value ", 42);
  logger.subwarning("sub");
  logger.debug("hidden");
  EXPECT_EQ(capture.Read(),
            "[WARNING/MainProcess] doomed\n"
            "[INFO/MainProcess] value 42\n"
            "[SUBWARNING/MainProcess] sub\n");
  capture.handler()->setLevel(logging::WARNING);
  logger.info("filtered by the handler");
  logger.error("kept");
  EXPECT_EQ(capture.Read(), "[ERROR/MainProcess] kept\n");
  logger.removeHandler(capture.handler());
  EXPECT_TRUE(logger.handlers().empty());
}

std::string FakeName() { return "Process-7:2"; }

TEST(LoggingTest, ProcessNameComesFromTheProvider) {
  Capture capture;
  logging::Logger logger("named");
  logger.addHandler(capture.handler());
  logging::SetProcessNameProvider(&FakeName);
  logger.error("x");
  logging::SetProcessNameProvider(nullptr);
  logger.error("y");
  EXPECT_EQ(capture.Read(), "[ERROR/Process-7:2] x\n[ERROR/MainProcess] y\n");
}

TEST(LoggingTest, FormatterFields) {
  logging::LogRecord r;
  r.name = "multiprocessing";
  r.levelno = 20;
  r.levelname = "INFO";
  r.message = "m";
  r.processName = "P";
  r.process = 123;
  EXPECT_EQ(
      logging::Formatter("%(name)s:%(levelno)d:%(process)d:%(message)s 100%%")
          .format(r),
      "multiprocessing:20:123:m 100%");
  EXPECT_THROW(logging::Formatter("%(nope)s").format(r), KeyError);
  EXPECT_THROW(logging::Formatter("%(message").format(r), ValueError);
}

TEST(LoggingTest, LogToStderrAddsOneHandlerAndSetsLevel) {
  logging::Logger& logger = log_to_stderr(logging::INFO);
  EXPECT_EQ(&logger, &get_logger());
  EXPECT_EQ(logger.level(), logging::INFO);
  EXPECT_EQ(logger.handlers().size(), 1u);
  log_to_stderr();
  EXPECT_EQ(logger.handlers().size(), 1u);
  EXPECT_EQ(logger.level(), logging::INFO);
  logger.removeHandler(logger.handlers()[0]);
  logger.setLevel(logging::NOTSET);
}

TEST(LoggingTest, LastResortWritesWarningsToStderr) {
  int saved = ::dup(2);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_NONBLOCK), 0);
  ::dup2(fds[1], 2);
  logging::Logger logger("bare");
  logger.info("quiet");
  logger.warning("loud");
  ::dup2(saved, 2);
  ::close(saved);
  char buf[64] = {};
  ssize_t n = ::read(fds[0], buf, sizeof(buf));
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "loud\n");
}

// Records from concurrent processes appending to one file come out as whole
// lines.
TEST(LoggingTest, ConcurrentProcessesNeverInterleave) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string path = std::string(tmp ? tmp : "/tmp") + "/interleave.log";
  ::unlink(path.c_str());
  constexpr int kChildren = 4;
  constexpr int kLines = 2000;
  const std::string payload(300, 'x');
  pid_t pids[kChildren];
  for (int c = 0; c < kChildren; ++c) {
    pids[c] = ::fork();
    ASSERT_GE(pids[c], 0);
    if (pids[c] == 0) {
      ::alarm(60);  // a hung child dies instead of hanging the test
      logging::Logger logger("child");
      auto handler = std::make_shared<logging::FileHandler>(path);
      handler->setFormatter(logging::Formatter("%(process)d %(message)s"));
      logger.addHandler(handler);
      for (int i = 0; i < kLines; ++i) logger.error(c, ":", i, ":", payload);
      ::_exit(0);
    }
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  int counts[kChildren] = {};
  int next[kChildren] = {};
  for (absl::string_view line :
       absl::StrSplit(contents.str(), '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, ':');
    ASSERT_EQ(parts.size(), 3u) << line;
    int child = parts[0].back() - '0';
    ASSERT_GE(child, 0);
    ASSERT_LT(child, kChildren);
    EXPECT_EQ(parts[1], std::to_string(next[child]++));
    EXPECT_EQ(parts[2], payload);
    ++counts[child];
  }
  for (int count : counts) EXPECT_EQ(count, kLines);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace multiprocessing
