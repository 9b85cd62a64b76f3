// SharedMemoryManager across processes of every start method: blocks made
// through it are shared with children and unlinked when it shuts down; a
// CPython client uses its server.
#include "managers/shared_memory_manager.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "errors/errors.h"
#include "gtest/gtest.h"
#include "managers/internal/python_client.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"
#include "shared_memory/shareable_list.h"
#include "shared_memory/shared_memory.h"

namespace mp = multiprocessing;
namespace managers = mp::managers;
namespace sm = mp::shared_memory;
using mp::reduction::Object;
using namespace std::chrono_literals;

namespace {

constexpr auto kDeadline = 20s;

bool Exists(const std::string& name) {
  return ::access(("/dev/shm/" + name).c_str(), F_OK) == 0;
}

}  // namespace

void ChildWrites(sm::SharedMemory shm, sm::ShareableList list) {
  std::memcpy(shm.buf().data(), "child", 5);
  list[0] = 42;
  list[2] = "y";
  shm.close();
  list.shm().close();
}
MP_REGISTER_FUNCTION(ChildWrites);

class StartMethods : public ::testing::TestWithParam<const char*> {};

TEST_P(StartMethods, BlocksAreSharedAndUnlinkedAtShutdown) {
  const mp::Context& ctx = mp::get_context(GetParam());
  managers::SharedMemoryManager smm(std::nullopt, std::nullopt, &ctx);
  smm.start();
  sm::SharedMemory shm = smm.SharedMemory(64);
  sm::ShareableList list = smm.ShareableList({1, 2.5, "x"});
  const std::string block = shm.name(), list_block = list.shm().name();
  ASSERT_TRUE(Exists(block));
  ASSERT_TRUE(Exists(list_block));

  mp::Process p = ctx.Process(ChildWrites, shm, list);
  p.start();
  p.join(kDeadline);
  ASSERT_FALSE(p.is_alive());
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(std::memcmp(shm.buf().data(), "child", 5), 0);
  EXPECT_EQ(repr(list[0].get()), "42");
  EXPECT_EQ(repr(list[2].get()), "'y'");

  // Shutting the manager down unlinks both; this process's mappings stay.
  smm.shutdown();
  EXPECT_FALSE(Exists(block));
  EXPECT_FALSE(Exists(list_block));
  EXPECT_EQ(std::memcmp(shm.buf().data(), "child", 5), 0);
  shm.close();
  list.shm().close();
}

INSTANTIATE_TEST_SUITE_P(SharedMemoryManager, StartMethods,
                         ::testing::Values("fork", "spawn", "forkserver"));

TEST(SharedMemoryManager, NotStartedIsAClearError) {
  managers::SharedMemoryManager smm;
  EXPECT_THROW(smm.SharedMemory(16), mp::ValueError);
}

// CPython's SharedMemoryManager client, against this server: its
// track_segment and list_segments requests are understood.
TEST(SharedMemoryManager, PythonClientUsesCppServer) {
  managers::SharedMemoryManager smm(mp::connection::Address("127.0.0.1", 0),
                                    "smm key");
  managers::Server server = smm.get_server();
  const std::string script = R"(
import sys
from multiprocessing.managers import SharedMemoryManager, dispatch
m = SharedMemoryManager(address=('127.0.0.1', int(sys.argv[1])), authkey=b'smm key')
m.connect()
s = m.SharedMemory(16)
l = m.ShareableList([1, 'a'])
c = m._Client(m._address, authkey=m._authkey)
print(sorted(dispatch(c, None, 'list_segments')) == sorted([s.name, l.shm.name]))
dispatch(m._Client(m._address, authkey=m._authkey), None, 'release_segment', (s.name,))
print(dispatch(m._Client(m._address, authkey=m._authkey), None, 'list_segments') == [l.shm.name])
s.close(); l.shm.close(); l.shm.unlink()
)";
  int status;
  std::string text =
      managers::testing::RunPythonClient(server, script, &status);
  EXPECT_EQ(status, 0) << text;
  EXPECT_EQ(text, "True\nTrue\n");
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
