#include "process/process.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "gtest/gtest.h"
#include "process/context.h"

namespace multiprocessing {
namespace {

using std::chrono::seconds;

TEST(CurrentProcess, MainProcess) {
  Process me = current_process();
  EXPECT_EQ(me.name(), "MainProcess");
  EXPECT_EQ(me.pid(), ::getpid());
  EXPECT_EQ(me.ident(), ::getpid());
  EXPECT_EQ(me.authkey().size(), 32u);
  EXPECT_EQ(me.repr(), "<Process(MainProcess, started)>");
  EXPECT_TRUE(me.is_alive());
  EXPECT_FALSE(parent_process().has_value());
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

TEST(Fork, ExitCodes) {
  Process ok([] {});
  ok.start();
  ok.join(seconds(30));
  EXPECT_EQ(ok.exitcode(), 0);
  Process seven([] { multiprocessing::exit(7); });
  seven.start();
  seven.join(seconds(30));
  EXPECT_EQ(seven.exitcode(), 7);
  Process thrower([] { throw ValueError("bad"); });
  thrower.start();
  thrower.join(seconds(30));
  EXPECT_EQ(thrower.exitcode(), 1);
}

}  // namespace
}  // namespace multiprocessing

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
