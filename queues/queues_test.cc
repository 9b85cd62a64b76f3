#include "queues/queues.h"

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connection/connection.h"
#include "gtest/gtest.h"
#include "process/context.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace multiprocessing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Waits for `p` with a deadline, so a bug fails the test instead of hanging it.
int JoinOrKill(Process& p, seconds limit = seconds(60)) {
  p.join(limit);
  if (!p.exitcode()) {
    p.kill();
    p.join();
    ADD_FAILURE() << p.repr() << " did not finish in time";
  }
  return *p.exitcode();
}

TEST(QueueTest, PutGetInOneProcess) {
  Queue q;
  EXPECT_TRUE(q.empty());
  q.put(std::make_tuple(42, std::nullopt, std::string("hello")));
  q.put(std::vector<int>{1, 4, 9});
  EXPECT_EQ(q.qsize(), 2);
  EXPECT_EQ(reduction::repr(q.get(true, seconds(5))), "(42, None, 'hello')");
  EXPECT_EQ(q.get<std::vector<int>>(true, seconds(5)),
            (std::vector<int>{1, 4, 9}));
  EXPECT_EQ(q.qsize(), 0);
  EXPECT_THROW(q.get_nowait(), queues::Empty);
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(q.get(true, milliseconds(50)), queues::Empty);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
  EXPECT_THROW(q.get(true, seconds(-1)), queues::Empty);  // negative is zero
}

TEST(QueueTest, MaxsizeBlocksAndFull) {
  Queue q(2);
  q.put(1);
  q.put_nowait(2);
  EXPECT_TRUE(q.full());
  EXPECT_THROW(q.put_nowait(3), queues::Full);
  EXPECT_THROW(q.put(3, true, milliseconds(30)), queues::Full);
  EXPECT_EQ(q.get<int>(true, seconds(5)), 1);
  q.put(3, true, seconds(5));
  EXPECT_EQ(q.get<int>(true, seconds(5)), 2);
  EXPECT_EQ(q.get<int>(true, seconds(5)), 3);
}

TEST(QueueTest, CloseAndJoinThread) {
  Queue q;
  EXPECT_THROW(q.join_thread(), AssertionError);
  q.put(std::string("x"));
  q.close();
  EXPECT_THROW(q.put(1), ValueError);
  EXPECT_THROW(q.get(), ValueError);
  q.join_thread();
}

struct Unpicklable {
  int value = 0;
};

}  // namespace
}  // namespace multiprocessing

namespace multiprocessing::reduction {
template <>
struct Pickler<multiprocessing::Unpicklable> {
  static void Save(Writer&, const multiprocessing::Unpicklable& u) {
    throw PicklingError(
        absl::StrCat("cannot pickle Unpicklable(", u.value, ")"));
  }
  static multiprocessing::Unpicklable Load(Reader&) {
    throw UnpicklingError("never pickled");
  }
};
}  // namespace multiprocessing::reduction

namespace multiprocessing {
namespace {

TEST(QueueTest, UnpicklableItemRaisesInPut) {
  Queue q;
  EXPECT_THROW(q.put(Unpicklable{7}), PicklingError);
  EXPECT_EQ(q.qsize(), 0);
  q.put(1);  // the queue is still usable
  EXPECT_EQ(q.get<int>(true, seconds(5)), 1);
}

TEST(QueueTest, OrderKeptAcrossTheFeederAndTheDirectPath) {
  // Puts go straight into the ring while it has room and the feeder holds
  // nothing, else through the feeder thread. With a consumer reading while
  // the ring fills and drains, one thread's items must still come out in
  // order, and qsize counts them all.
  constexpr int kItems = 300000;  // more than a ring of 64-byte frames holds
  Queue q;
  for (int i = 0; i < kItems; ++i) q.put(i);
  EXPECT_EQ(q.qsize(), kItems);
  int next = 0;
  bool in_order = true;
  std::thread consumer([&] {
    for (int i = 0; i < 2 * kItems && in_order; ++i) {
      in_order = q.get<int>(true, seconds(30)) == next++;
    }
  });
  for (int i = kItems; i < 2 * kItems; ++i) q.put(i);
  consumer.join();
  EXPECT_TRUE(in_order) << "item " << next - 1 << " out of order";
  EXPECT_EQ(q.qsize(), 0);
  EXPECT_TRUE(q.empty());
}

TEST(QueueTest, ChildPutsOneMegabyteAndExitsBeforeParentGets) {
  // The doc's guideline: the child's exit waits for its feeder to flush; the
  // parent gets before join. 1 MB fits in the ring; 16 MB does not, so the
  // feeder streams it through while the parent reads.
  for (size_t size : {size_t{1} << 20, size_t{16} << 20}) {
    Queue q;
    Process p([q, size]() mutable { q.put(std::string(size, 'x')); });
    p.start();
    EXPECT_EQ(q.get<std::string>(true, seconds(30)).size(), size);
    EXPECT_EQ(JoinOrKill(p), 0);
  }
}

TEST(QueueTest, ProducersAndConsumersEachItemOnceInProducerOrder) {
  constexpr int kProducers = 4, kConsumers = 3, kItems = 100000;
  Queue q;
  Queue results;
  std::vector<Process> procs;
  for (int p = 0; p < kProducers; ++p) {
    procs.emplace_back([q, p]() mutable {
      for (int i = 0; i < kItems; ++i) q.put(std::make_pair(p, i));
    });
  }
  for (int c = 0; c < kConsumers; ++c) {
    procs.emplace_back([q, results]() mutable {
      // Per producer: count, sum, sum of squares; and the order seen here must
      // increase.
      std::vector<int64_t> stats(3 * kProducers, 0);
      std::vector<int> last(kProducers, -1);
      while (true) {
        auto [p, i] = q.get<std::pair<int, int>>(true, seconds(60));
        if (p < 0) break;
        if (i <= last[p]) exit(3);
        last[p] = i;
        stats[3 * p] += 1;
        stats[3 * p + 1] += i;
        stats[3 * p + 2] += int64_t{i} * i;
      }
      results.put(stats);
    });
  }
  for (auto& proc : procs) proc.start();
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(JoinOrKill(procs[p]), 0);
  for (int c = 0; c < kConsumers; ++c) q.put(std::make_pair(-1, 0));
  std::vector<int64_t> total(3 * kProducers, 0);
  for (int c = 0; c < kConsumers; ++c) {
    auto stats = results.get<std::vector<int64_t>>(true, seconds(60));
    for (size_t k = 0; k < total.size(); ++k) total[k] += stats[k];
  }
  for (int c = 0; c < kConsumers; ++c) {
    EXPECT_EQ(JoinOrKill(procs[kProducers + c]), 0);
  }
  const int64_t n = kItems;
  for (int p = 0; p < kProducers; ++p) {
    EXPECT_EQ(total[3 * p], n);
    EXPECT_EQ(total[3 * p + 1], n * (n - 1) / 2);
    EXPECT_EQ(total[3 * p + 2], (n - 1) * n * (2 * n - 1) / 6);
  }
}

TEST(QueueTest, ConsumerKilledInGetDoesNotWedgeOthers) {
  Queue q;
  Queue ready;
  Process blocked([q, ready]() mutable {
    ready.put(1);
    q.get();  // blocks until killed
  });
  blocked.start();
  ready.get(true, seconds(30));
  blocked.kill();
  EXPECT_EQ(JoinOrKill(blocked), -SIGKILL);
  Process consumer(
      [q]() mutable { exit(q.get<int>(true, seconds(30)) == 5 ? 0 : 1); });
  consumer.start();
  q.put(5);
  EXPECT_EQ(JoinOrKill(consumer), 0);
}

TEST(QueueTest, ConnectionFromAChildThatExitedStillWorks) {
  // CPython lends such descriptors from a server thread in the putting
  // process, which must outlive the get; here they are in flight in the
  // kernel.
  Queue q;
  Process p([q]() mutable {
    auto [reader, writer] = Pipe(/*duplex=*/false);
    writer.send(std::string("from the child"));
    q.put(reader);
  });
  p.start();
  ASSERT_EQ(JoinOrKill(p), 0);
  Connection reader = q.get<Connection>(true, seconds(10));
  ASSERT_TRUE(reader.poll(seconds(10)));
  EXPECT_EQ(reader.recv<std::string>(), "from the child");
}

TEST(QueueTest, ManyConnectionsKeepTheirOrderThroughAFullChannel) {
  // More items with descriptors than the descriptor channel's socket holds:
  // puts go on through the feeder, which waits for consumers to drain it.
  constexpr int kItems = 300;
  Queue q;
  std::vector<Connection> kept;
  for (int i = 0; i < kItems; ++i) {
    auto [mine, theirs] = Pipe();
    q.put(std::make_tuple(i, theirs));
    kept.push_back(std::move(mine));
  }
  for (int i = 0; i < kItems; ++i) {
    auto [n, conn] = q.get<std::tuple<int, Connection>>(true, seconds(30));
    ASSERT_EQ(n, i);
    kept[static_cast<size_t>(i)].send(i);
    ASSERT_TRUE(conn.poll(seconds(5)));
    ASSERT_EQ(conn.recv<int>(), i);
  }
  EXPECT_TRUE(q.empty());
}

TEST(SimpleQueueTest, ConnectionsTravel) {
  SimpleQueue q;
  auto [mine, theirs] = Pipe();
  q.put(theirs);
  Connection got = q.get<Connection>();
  mine.send(std::string("ping"));
  ASSERT_TRUE(got.poll(seconds(5)));
  EXPECT_EQ(got.recv<std::string>(), "ping");
}

TEST(JoinableQueueTest, TaskDoneAndJoinAcrossProcesses) {
  JoinableQueue q;
  EXPECT_THROW(q.task_done(), ValueError);
  Process worker([q]() mutable {
    for (int i = 0; i < 3; ++i) {
      q.get(true, seconds(30));
      q.task_done();
    }
  });
  worker.start();
  for (int i = 0; i < 3; ++i) q.put(i);
  EXPECT_TRUE(q.join(seconds(30)));
  EXPECT_EQ(JoinOrKill(worker), 0);
  EXPECT_THROW(q.task_done(), ValueError);
  q.put(1);
  EXPECT_FALSE(q.join(milliseconds(20)));
  q.get(true, seconds(5));
  q.task_done();
  EXPECT_TRUE(q.join(seconds(5)));
}

TEST(SimpleQueueTest, PutGetAcrossProcesses) {
  SimpleQueue q;
  EXPECT_TRUE(q.empty());
  Process p([q]() mutable { q.put(std::string("from child")); });
  p.start();
  EXPECT_EQ(q.get<std::string>(), "from child");
  EXPECT_EQ(JoinOrKill(p), 0);
  EXPECT_TRUE(q.empty());
}

// Under spawn and forkserver the queue travels as a pickled argument (its
// ring's fd).
void PutSquares(Queue q, int n) {
  for (int i = 0; i < n; ++i) q.put(i * i);
}
MP_REGISTER_FUNCTION(PutSquares);

class QueueStartMethodTest : public ::testing::TestWithParam<const char*> {};

TEST_P(QueueStartMethodTest, QueuePassedToChild) {
  const Context& ctx = get_context(GetParam());
  Queue q;
  Process p = ctx.Process(PutSquares, q, 100);
  p.start();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(q.get<int>(true, seconds(30)), i * i);
  EXPECT_EQ(JoinOrKill(p), 0);
}

INSTANTIATE_TEST_SUITE_P(StartMethods, QueueStartMethodTest,
                         ::testing::Values("fork", "spawn", "forkserver"));

}  // namespace
}  // namespace multiprocessing

int main(int argc, char** argv) {
  multiprocessing::freeze_support(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
