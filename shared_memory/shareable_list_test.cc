// ShareableList: Python's API and layout, across processes, with CPython both
// ways, and damaged blocks.
#include "shared_memory/shareable_list.h"

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "errors/errors.h"
#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"
#include "synchronize/internal/test_util.h"

namespace multiprocessing::shareable_list_test {

using namespace std::chrono_literals;
using reduction::Object;
using shared_memory::ShareableList;
using shared_memory::SharedMemory;

// The values of the Python documentation's example, plus a non-ASCII str.
std::vector<Object> Sample() {
  return {1, 2.5, "howdy", Object::bytes("xy"), nullptr, true, "h\xc3\xa9llo"};
}

void Release(ShareableList& l) {
  l.shm().close();
  l.shm().unlink();
}

TEST(ShareableListTest, ReadWriteAsPython) {
  ShareableList l(Sample());
  auto cleanup = absl::MakeCleanup([&] { Release(l); });
  ASSERT_EQ(l.size(), 7u);
  EXPECT_EQ(l.len(), 7u);
  EXPECT_EQ(l.format(), "qd8s8sxxxxxx?xxxxxxxx?8s");
  // 8 + 8 * 8 offsets + 56 data + 7 * 8 formats + 7 codes, as CPython's.
  EXPECT_EQ(l.shm().size(), 8u + 64u + 56u + 56u + 7u);
  EXPECT_EQ(l.get(0), Object(1));
  EXPECT_EQ(l[1], Object(2.5));
  EXPECT_EQ(l[2], Object("howdy"));
  EXPECT_EQ(l[3], Object::bytes("xy"));
  EXPECT_TRUE(l.get(4).is_none());
  EXPECT_TRUE(l.get(5).is_bool());
  EXPECT_EQ(l[-1], Object("h\xc3\xa9llo"));
  EXPECT_THROW(l.get(7), IndexError);
  EXPECT_THROW(l.get(-8), IndexError);
  EXPECT_THROW(l[9] = 1, IndexError);
  EXPECT_EQ(l.repr(),
            "ShareableList([1, 2.5, 'howdy', b'xy', None, True, "
            "'h\xc3\xa9llo'], name='" +
                l.shm().name() + "')");

  // Types may change; str and bytes may not outgrow the slot.
  l[2] = "12345678";
  EXPECT_EQ(l[2], Object("12345678"));
  EXPECT_THROW(l[2] = "123456789", ValueError);
  EXPECT_THROW(l[3] = Object::bytes("123456789"), ValueError);
  l[2] = 42;
  EXPECT_EQ(l.get(2), Object(42));
  l[0] = "abc";  // an 8-byte number slot takes up to 8 bytes of text
  EXPECT_EQ(l[0], Object("abc"));
  l[0] = Object::bytes(std::string("a\0b\0\0", 5));  // trailing NULs go
  EXPECT_EQ(l[0], Object::bytes(std::string("a\0b", 3)));
  l[1] = nullptr;
  EXPECT_TRUE(l.get(1).is_none());
  l[4] = false;
  EXPECT_EQ(l.format(), "8sxxxxxx?xq8sxxxxxxx?xxxxxxx?8s");
  l[4] = -7.25;
  EXPECT_EQ(l[4], Object(-7.25));
  EXPECT_THROW(l[0] = Object::list({1}), TypeError);
  EXPECT_THROW(l[0] = Object(absl::int128(1) << 70), OverflowError);

  // count and index use Python's ==.
  l[5] = 1;
  l[6] = 1.0;
  EXPECT_EQ(l.count(1), 2u);
  EXPECT_EQ(l.index(1.0), 5u);
  EXPECT_EQ(l.index(42), 2u);
  EXPECT_THROW(l.index("nope"), ValueError);

  std::vector<Object> seen;
  for (Object v : l) seen.push_back(v);
  EXPECT_EQ(Object::list(seen), l.list());
  EXPECT_EQ(seen.size(), 7u);
}

TEST(ShareableListTest, AttachByNameAndEmpty) {
  ShareableList a({10, "x"}, {.name = "psm_sl_" + std::to_string(getpid())});
  auto cleanup = absl::MakeCleanup([&] { Release(a); });
  ShareableList b({.name = a.shm().name()});
  EXPECT_EQ(b.list(), a.list());
  b[0] = 11;
  EXPECT_EQ(a[0], Object(11));
  b.shm().close();

  ShareableList empty;
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.format(), "");
  EXPECT_EQ(empty.shm().size(), 16u);
  EXPECT_EQ(empty.begin(), empty.end());
  EXPECT_EQ(empty.repr(),
            "ShareableList([], name='" + empty.shm().name() + "')");
  Release(empty);
  EXPECT_THROW(ShareableList({Object::set({1})}), TypeError);
  EXPECT_THROW(ShareableList({.name = "psm_sl_no_such_list"}), OSError);
}

TEST(ShareableListTest, DamagedBlocksGiveValueError) {
  SharedMemory shm({.create = true, .size = 64});
  auto cleanup = absl::MakeCleanup([&] {
    shm.close();
    shm.unlink();
  });
  std::byte* p = shm.buf().data();
  auto put = [&](size_t at, uint64_t v) { std::memcpy(p + at, &v, 8); };
  put(0, uint64_t{1} << 60);  // absurd count
  EXPECT_THROW(ShareableList({.name = shm.name()}), ValueError);
  put(0, 1);
  put(8, 0);
  put(16, 1000);  // slot beyond the block
  EXPECT_THROW(ShareableList({.name = shm.name()}), ValueError);
  put(16, 8);  // one 8-byte slot at 24; formats at 32; code at 40
  std::memcpy(p + 32, "zz\0\0\0\0\0\0", 8);
  {
    ShareableList l({.name = shm.name()});
    EXPECT_THROW(l.get(0), ValueError);
    std::memcpy(p + 32, "9999999s", 8);  // a slot far larger than the block
    p[40] = std::byte{1};
    EXPECT_THROW(l.get(0), ValueError);
    l[0] = "fits";  // rewrites the format to the real slot
    EXPECT_EQ(l.format(), "8s");
    EXPECT_EQ(l[0], Object("fits"));
    std::memcpy(p + 24, "\xff\xfe", 2);  // not UTF-8
    EXPECT_THROW(l.get(0), ValueError);
    p[40] = std::byte{9};  // unknown code
    EXPECT_THROW(l.get(0), ValueError);
    l.shm().close();
  }
}

void Append(ShareableList l) {
  l[0] = l[0].get().as_int() + 1;
  l[1] = "child";
  l.shm().close();
}
MP_REGISTER_FUNCTION(Append);

class ShareableListProcessTest : public ::testing::TestWithParam<std::string> {
};

TEST_P(ShareableListProcessTest, ChildWritesParentReads) {
  ShareableList l({41, "parent"});
  auto cleanup = absl::MakeCleanup([&] { Release(l); });
  Process p = get_context(GetParam()).Process(&Append, l);
  p.start();
  p.join(60s);
  ASSERT_EQ(p.exitcode(), 0);
  EXPECT_EQ(l[0], Object(42));
  EXPECT_EQ(l[1], Object("child"));
}

INSTANTIATE_TEST_SUITE_P(StartMethods, ShareableListProcessTest,
                         ::testing::Values("fork", "spawn", "forkserver"),
                         [](const auto& info) { return info.param; });

constexpr char kPythonSample[] =
    "[1, 2.5, 'howdy', b'xy', None, True, 'h\\u00e9llo']";

int RunPython(const std::string& code) {
  std::string cmd = "python3 -c \"" + code + "\"";
  return std::system(cmd.c_str());
}

TEST(ShareableListTest, CPythonAttachesToOurs) {
  ShareableList l(Sample());
  auto cleanup = absl::MakeCleanup([&] { Release(l); });
  // CPython reads the same values, and a list it makes itself from them
  // has the very same bytes.
  ASSERT_EQ(RunPython("from multiprocessing import shared_memory as s, "
                      "resource_tracker as r; "
                      "l = s.ShareableList(name='" +
                      l.shm().name() +
                      "'); r.unregister(l.shm._name, 'shared_memory'); "
                      "v = " +
                      kPythonSample +
                      "; assert list(l) == v, list(l); "
                      "m = s.ShareableList(v); "
                      "assert bytes(m.shm.buf) == bytes(l.shm.buf); "
                      "m.shm.close(); m.shm.unlink(); "
                      "l[0] = 'py'; l[1] = None; l[4] = -3; l.shm.close()"),
            0);
  EXPECT_EQ(l[0], Object("py"));
  EXPECT_TRUE(l.get(1).is_none());
  EXPECT_EQ(l[4], Object(-3));
}

TEST(ShareableListTest, WeAttachToCPythons) {
  std::string name = "psm_slpy_" + std::to_string(getpid());
  auto cleanup = absl::MakeCleanup([&] { shm_unlink(("/" + name).c_str()); });
  ASSERT_EQ(RunPython("from multiprocessing import shared_memory as s, "
                      "resource_tracker as r; "
                      "l = s.ShareableList(" +
                      std::string(kPythonSample) + ", name='" + name +
                      "'); r.unregister(l.shm._name, 'shared_memory'); "
                      "l.shm.close()"),
            0);
  {
    ShareableList l({.name = name});
    EXPECT_EQ(l.list(), Object::list(Sample()));
    EXPECT_EQ(l.format(), "qd8s8sxxxxxx?xxxxxxxx?8s");
    l[2] = Object::bytes("cxx");
    l[3] = 7.5;
    l.shm().close();
  }
  ASSERT_EQ(RunPython("from multiprocessing import shared_memory as s, "
                      "resource_tracker as r; "
                      "l = s.ShareableList(name='" +
                      name +
                      "'); r.unregister(l.shm._name, 'shared_memory'); "
                      "assert l[2] == b'cxx' and l[3] == 7.5, list(l); "
                      "l.shm.close()"),
            0);
}

TEST(ShareableListTest, NothingLeftInDevShm) {
  EXPECT_TRUE(testing::ShmEntries("psm_sl").empty());
}

}  // namespace multiprocessing::shareable_list_test

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
