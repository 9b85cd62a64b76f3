// The resource tracker: names registered and unregistered, and the cleanup
// after the program is killed.
#include "synchronize/internal/resource_tracker.h"

#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "errors/errors.h"
#include "gtest/gtest.h"
#include "synchronize/internal/test_util.h"

namespace multiprocessing::internal {
namespace {

std::string g_victim;  // path of tracker_victim

// The /dev/shm entry of a semaphore ("/mp-x") or a block ("shm:psm_x").
std::string SemFile(const std::string& name) {
  if (name.rfind("shm:", 0) == 0) return name.substr(4);
  return "sem." + name.substr(1);
}

TEST(ResourceTrackerTest, RejectsBadNames) {
  EXPECT_THROW(resource_tracker::register_resource("/a:b", "semaphore"),
               ValueError);
  EXPECT_THROW(resource_tracker::register_resource("", "semaphore"),
               ValueError);
  EXPECT_THROW(
      resource_tracker::register_resource(std::string(300, 'x'), "semaphore"),
      ValueError);
}

TEST(ResourceTrackerTest, SigkillOfTheProgramUnlinksEverything) {
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  int in[2];
  ASSERT_EQ(pipe(in), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(in[0], 0);
    close(out[0]);
    close(in[1]);
    execl(g_victim.c_str(), g_victim.c_str(), nullptr);
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  FILE* f = fdopen(out[0], "r");
  char line[4096] = {};
  ASSERT_NE(fgets(line, sizeof line, f), nullptr);
  fclose(f);
  std::istringstream words(line);
  pid_t tracker = 0;
  words >> tracker;
  std::vector<std::string> names;
  for (std::string name; words >> name;) names.push_back(name);
  ASSERT_GT(tracker, 0);
  ASSERT_EQ(names.size(), 5u);
  for (const auto& name : names) {
    EXPECT_TRUE(testing::ShmExists(SemFile(name))) << name;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(in[1]);
  ASSERT_TRUE(testing::WaitForeignExit(tracker, 30));
  for (const auto& name : names) {
    EXPECT_FALSE(testing::ShmExists(SemFile(name))) << name;
  }
}

TEST(ResourceTrackerTest, TrackerOutlivesForkedChildrenThenCleans) {
  // A forked child shares the tracker; its registrations are cleaned when
  // the last process holding the connection ends, not before.
  std::string name = "/mp-trackertest" + std::to_string(getpid());
  resource_tracker::ensure_running();
  int rc = testing::RunChild([&] {
    sem_t* sem = sem_open(name.c_str(), O_CREAT | O_EXCL, 0600, 0);
    if (sem == SEM_FAILED) return 2;
    resource_tracker::register_resource(name, resource_tracker::kSemaphore);
    return 0;  // exits without unlinking
  });
  ASSERT_EQ(rc, 0);
  // This process still holds the connection: the name survives.
  EXPECT_TRUE(testing::ShmExists(SemFile(name)));
  sem_unlink(name.c_str());
  resource_tracker::unregister_resource(name, resource_tracker::kSemaphore);
}

}  // namespace
}  // namespace multiprocessing::internal

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: resource_tracker_test PATH_TO_tracker_victim\n");
    return 2;
  }
  multiprocessing::internal::g_victim = argv[1];
  return RUN_ALL_TESTS();
}
