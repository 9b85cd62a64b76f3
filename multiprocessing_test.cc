// The umbrella header used as a whole: several packages in one program under
// the mp:: names.
#include "multiprocessing.h"

#include <chrono>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace {

using std::chrono::seconds;

int square(int x) { return x * x; }
MP_REGISTER_FUNCTION(square);

void Work(mp::Queue q, mp::Lock lock, mp::Connection conn) {
  std::lock_guard<mp::Lock> guard(lock);
  q.put(std::string("queued"));
  conn.send(std::vector<int>{1, 2, 3});
}
MP_REGISTER_FUNCTION(Work);

class UmbrellaTest : public ::testing::TestWithParam<const char*> {};

TEST_P(UmbrellaTest, PackagesWorkTogether) {
  const mp::Context& ctx = mp::get_context(GetParam());
  mp::Queue q;
  mp::Lock lock;
  auto [parent, child] = mp::Pipe();
  mp::Process p = ctx.Process(Work, q, lock, child);
  p.start();
  EXPECT_EQ(q.get<std::string>(true, seconds(30)), "queued");
  ASSERT_TRUE(parent.poll(seconds(30)));
  EXPECT_EQ(mp::repr(parent.recv()), "[1, 2, 3]");
  p.join(seconds(30));
  EXPECT_EQ(p.exitcode(), 0);

  mp::Pool pool({.processes = 2, .context = &ctx});
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}),
            (std::vector<int>{1, 4, 9}));

  mp::futures::ProcessPoolExecutor executor(
      {.max_workers = 2, .mp_context = &ctx});
  EXPECT_EQ(executor.submit(square, 4).result(seconds(30)), 16);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, UmbrellaTest,
                         ::testing::Values("fork", "spawn", "forkserver"));

// The same program over threads: only the namespace alias changes.
TEST(UmbrellaDummyTest, PackagesWorkTogetherOverThreads) {
  namespace ns = mp::dummy;
  ns::Queue q;
  ns::Lock lock;
  auto pipe = ns::Pipe();
  ns::Connection parent = pipe.first;
  ns::Connection child = pipe.second;
  ns::Process p([q, lock, child]() mutable {
    std::lock_guard<ns::Lock> guard(lock);
    q.put(std::string("queued"));
    child.send(std::vector<int>{1, 2, 3});
  });
  p.start();
  EXPECT_EQ(q.get<std::string>(true, seconds(30)), "queued");
  ASSERT_TRUE(parent.poll(seconds(30)));
  EXPECT_EQ(mp::repr(parent.recv()), "[1, 2, 3]");
  p.join(seconds(30));
  EXPECT_EQ(p.exitcode(), 0);

  ns::Pool pool(2);
  EXPECT_EQ(pool.map(square, std::vector<int>{1, 2, 3}),
            (std::vector<int>{1, 4, 9}));
  EXPECT_EQ(ns::Manager().Namespace().repr(), "Namespace()");
}

}  // namespace

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
