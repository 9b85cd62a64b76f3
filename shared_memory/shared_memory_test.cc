// SharedMemory: create, attach, close, unlink; across processes; with CPython.
#include "shared_memory/shared_memory.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "errors/errors.h"
#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"
#include "synchronize/internal/test_util.h"

namespace multiprocessing::shm_test {

using namespace std::chrono_literals;
using shared_memory::SharedMemory;

void WriteHello(SharedMemory shm) {
  std::memcpy(shm.buf().data(), "hello", 5);
  shm.close();
}
MP_REGISTER_FUNCTION(WriteHello);

TEST(SharedMemoryTest, CreateAttachCloseUnlink) {
  SharedMemory shm({.create = true, .size = 100});
  EXPECT_EQ(shm.name().rfind("psm_", 0), 0u);
  EXPECT_GE(shm.size(), 100u);
  EXPECT_TRUE(testing::ShmExists(shm.name()));
  EXPECT_EQ(shm.repr(), "SharedMemory('" + shm.name() + "', size=100)");
  std::memcpy(shm.buf().data(), "abc", 3);
  SharedMemory other({.name = shm.name()});
  EXPECT_EQ(std::memcmp(other.buf().data(), "abc", 3), 0);
  other.close();
  other.close();  // idempotent
  EXPECT_THROW(other.buf(), ValueError);
  EXPECT_THROW(SharedMemory({.name = shm.name(), .create = true, .size = 1}),
               OSError);
  shm.unlink();
  EXPECT_FALSE(testing::ShmExists(shm.name()));
  EXPECT_THROW(shm.unlink(), OSError);
  EXPECT_EQ(std::memcmp(shm.buf().data(), "abc", 3), 0);  // still mapped
  EXPECT_THROW(SharedMemory({.name = shm.name()}), OSError);
}

TEST(SharedMemoryTest, BadArguments) {
  EXPECT_THROW(SharedMemory({.create = true}), ValueError);
  EXPECT_THROW(SharedMemory({}), ValueError);
  EXPECT_THROW(SharedMemory({.name = "a/b"}), ValueError);
}

class SharedMemoryProcessTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SharedMemoryProcessTest, ChildWritesParentReads) {
  SharedMemory shm({.create = true, .size = 16});
  Process p = get_context(GetParam()).Process(&WriteHello, shm);
  p.start();
  p.join(60s);
  ASSERT_EQ(p.exitcode(), 0);
  EXPECT_EQ(std::memcmp(shm.buf().data(), "hello", 5), 0);
  shm.close();
  shm.unlink();
}

INSTANTIATE_TEST_SUITE_P(StartMethods, SharedMemoryProcessTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

TEST(SharedMemoryTest, CPythonSeesTheSameBytes) {
  SharedMemory shm({.create = true, .size = 8});
  std::memcpy(shm.buf().data(), "from c++", 8);
  std::string cmd =
      "python3 -c \"from multiprocessing import shared_memory, "
      "resource_tracker as r; s = shared_memory.SharedMemory('" +
      shm.name() +
      "'); r.unregister(s._name, 'shared_memory'); "
      "assert bytes(s.buf[:8]) == b'from c++', bytes(s.buf[:8]); "
      "s.buf[:4] = b'PY!!'; s.close()\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  EXPECT_EQ(std::memcmp(shm.buf().data(), "PY!!", 4), 0);
  shm.close();
  shm.unlink();
}

}  // namespace multiprocessing::shm_test

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
