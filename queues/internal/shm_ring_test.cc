#include "queues/internal/shm_ring.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "gtest/gtest.h"

namespace multiprocessing::queues::internal {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Deadline In(std::chrono::steady_clock::duration d) {
  return std::chrono::steady_clock::now() + d;
}

// Forks a child that runs `body` and exits 0 (1 if it throws); an alarm kills
// it if it hangs.
template <class Body>
pid_t ForkChild(Body body) {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(60);
    int code = 0;
    try {
      body();
    } catch (...) {
      code = 1;
    }
    _exit(code);
  }
  return pid;
}

int WaitExit(pid_t pid) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return WEXITSTATUS(status);
}

TEST(ShmRingTest, FramesRoundTripInOrder) {
  auto ring = ShmRing::Create(4096);
  EXPECT_EQ(ring->capacity(), 4096u);
  EXPECT_TRUE(ring->Empty());
  std::vector<std::string> frames = {"", "a", std::string(1000, 'x'), "tail"};
  EXPECT_EQ(ring->Write(frames), frames.size());
  EXPECT_FALSE(ring->Empty());
  for (const auto& want : frames) {
    std::string got;
    ASSERT_TRUE(ring->Read(&got, In(seconds(5))));
    EXPECT_EQ(got, want);
  }
  EXPECT_TRUE(ring->Empty());
  std::string got;
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(ring->Read(&got, In(milliseconds(50))));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
  EXPECT_FALSE(ring->Poll(In(milliseconds(10))));
}

TEST(ShmRingTest, ProducerProcessToConsumer) {
  auto ring = ShmRing::Create(
      8192);  // small, so the producer wraps and waits for space often
  constexpr int kItems = 100000;
  pid_t child = ForkChild([&] {
    std::vector<std::string> batch;
    for (int i = 0; i < kItems; ++i) {
      batch.push_back(absl::StrCat(i, ":", std::string(i % 300, 'p')));
      if (batch.size() == 37) {
        ring->Write(batch);
        batch.clear();
      }
    }
    ring->Write(batch);
  });
  std::string got;
  for (int i = 0; i < kItems; ++i) {
    ASSERT_TRUE(ring->Read(&got, In(seconds(30))));
    ASSERT_EQ(got, absl::StrCat(i, ":", std::string(i % 300, 'p')));
  }
  EXPECT_EQ(WaitExit(child), 0);
}

TEST(ShmRingTest, FramesLargerThanTheRingStream) {
  auto ring = ShmRing::Create(4096);
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  pid_t child = ForkChild([&] {
    std::vector<std::string> frames = {"before", big, "after"};
    ring->Write(frames);
  });
  std::string got;
  ASSERT_TRUE(ring->Read(&got, In(seconds(30))));
  EXPECT_EQ(got, "before");
  ASSERT_TRUE(ring->Read(&got, In(seconds(30))));
  EXPECT_TRUE(got == big);
  ASSERT_TRUE(ring->Read(&got, In(seconds(30))));
  EXPECT_EQ(got, "after");
  EXPECT_EQ(WaitExit(child), 0);
}

TEST(ShmRingTest, ManyProducersManyConsumersEachFrameOnce) {
  auto ring = ShmRing::Create(16384);
  constexpr int kProducers = 3, kConsumers = 3, kItems = 20000;
  // Consumers report what they read through a second ring.
  auto results = ShmRing::Create(
      8 << 20);  // holds every result: nobody reads it until producers finish
  std::vector<pid_t> pids;
  for (int p = 0; p < kProducers; ++p) {
    pids.push_back(ForkChild([&, p] {
      for (int i = 0; i < kItems; ++i) {
        std::string frame = absl::StrCat(p, " ", i);
        ring->Write(std::span<const std::string>(&frame, 1));
      }
    }));
  }
  for (int c = 0; c < kConsumers; ++c) {
    pids.push_back(ForkChild([&] {
      std::string frame;
      std::vector<std::string> seen;
      while (ring->Read(&frame, In(seconds(30))) && frame != "STOP") {
        seen.push_back(frame);
        if (seen.size() == 256) {
          results->Write(seen);
          seen.clear();
        }
      }
      seen.push_back("DONE");
      results->Write(seen);
    }));
  }
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(WaitExit(pids[p]), 0);
  std::vector<std::string> stops(kConsumers, "STOP");
  ring->Write(stops);
  std::vector<int> counts(kProducers, 0);
  int done = 0;
  std::string frame;
  // Frames of one producer reach one consumer in order; across consumers, only
  // counts are checked.
  while (done < kConsumers) {
    ASSERT_TRUE(results->Read(&frame, In(seconds(60))));
    if (frame == "DONE") {
      ++done;
      continue;
    }
    int p, i;
    ASSERT_EQ(sscanf(frame.c_str(), "%d %d", &p, &i), 2);
    ASSERT_GE(p, 0);
    ASSERT_LT(p, kProducers);
    ++counts[p];
  }
  for (int count : counts) EXPECT_EQ(count, kItems);
  for (int c = 0; c < kConsumers; ++c)
    EXPECT_EQ(WaitExit(pids[kProducers + c]), 0);
}

TEST(ShmRingTest, ConsumerKilledWhileWaitingDoesNotWedgeOthers) {
  auto ring = ShmRing::Create(4096);
  // The child blocks in Read holding the consumers' lock; it is killed there.
  auto ready = ShmRing::Create(4096);
  pid_t child = ForkChild([&] {
    std::string s = "waiting";
    ready->Write(std::span<const std::string>(&s, 1));
    std::string got;
    ring->Read(&got);
  });
  std::string got;
  ASSERT_TRUE(ready->Read(&got, In(seconds(10))));
  // Wait until the child sleeps inside Read (it holds the lock): our timed read
  // must time out.
  EXPECT_FALSE(ring->Read(&got, In(milliseconds(100))));
  kill(child, SIGKILL);
  EXPECT_EQ(WaitExit(child), -SIGKILL);
  std::vector<std::string> frames = {"survives"};
  ring->Write(frames);
  ASSERT_TRUE(ring->Read(&got, In(seconds(10))));
  EXPECT_EQ(got, "survives");
}

// Nobody reads yet, so a child writing a 1 MiB frame blocks in the middle of
// it, holding the producers' lock; it is killed there.
void KillProducerInTheMiddleOfAFrame(ShmRing* ring) {
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i % 251);
  pid_t child = ForkChild([&] {
    std::vector<std::string> frames = {big};
    ring->Write(frames);
  });
  ASSERT_TRUE(ring->Poll(In(seconds(10))));
  kill(child, SIGKILL);
  EXPECT_EQ(WaitExit(child), -SIGKILL);
}

TEST(ShmRingTest, ProducerKilledWhileStreamingDoesNotWedgeOthers) {
  auto ring = ShmRing::Create(4096);
  KillProducerInTheMiddleOfAFrame(ring.get());
  // The next producer marks the dead one's frame aborted and passes over the
  // rest of it while a consumer streams it out: the consumer gets OSError,
  // never the torn frame, then the next frame.
  std::string got_after;
  bool raised = false, read_ok = false;
  std::thread consumer([&] {
    std::string got_big;
    try {
      ring->Read(&got_big, In(seconds(30)));
    } catch (const OSError&) {
      raised = true;
    }
    read_ok = ring->Read(&got_after, In(seconds(30)));
  });
  std::vector<std::string> frames = {"after"};
  EXPECT_EQ(ring->Write(frames), 1u);
  consumer.join();
  EXPECT_TRUE(raised);
  ASSERT_TRUE(read_ok);
  EXPECT_EQ(got_after, "after");
  EXPECT_TRUE(ring->Empty());
}

TEST(ShmRingTest, ConsumerFindsItsProducerDeadInTheMiddleOfAFrame) {
  auto ring = ShmRing::Create(4096);
  KillProducerInTheMiddleOfAFrame(ring.get());
  // No other producer comes: the consumer itself sees that the frame's
  // producer is gone.
  std::string got;
  EXPECT_THROW(ring->Read(&got, In(seconds(30))), OSError);
  EXPECT_TRUE(ring->Empty());
  std::vector<std::string> frames = {"after"};
  EXPECT_EQ(ring->Write(frames), 1u);
  ASSERT_TRUE(ring->Read(&got, In(seconds(5))));
  EXPECT_EQ(got, "after");
}

TEST(ShmRingTest, SlotsBlockAtMaxsizeAcrossProcesses) {
  auto ring = ShmRing::Create(4096);
  EXPECT_TRUE(ring->AcquireSlot(2, In(seconds(1))));
  EXPECT_TRUE(ring->AcquireSlot(2, In(seconds(1))));
  EXPECT_EQ(ring->slots(), 2);
  EXPECT_FALSE(ring->AcquireSlot(2, In(milliseconds(30))));
  pid_t child = ForkChild([&] {
    if (!ring->AcquireSlot(2, In(seconds(30)))) throw 1;
  });
  // Reading a frame frees a slot.
  std::vector<std::string> frames = {"item"};
  ASSERT_EQ(ring->Write(frames), 1u);
  std::string got;
  ASSERT_TRUE(ring->Read(&got, In(seconds(5))));
  ring->WakeSlotWaiters();
  EXPECT_EQ(WaitExit(child), 0);
  EXPECT_EQ(ring->slots(), 2);
}

TEST(ShmRingTest, FramesCountsWhatTheRingHolds) {
  auto ring = ShmRing::Create(4096);
  EXPECT_EQ(ring->frames(), 0);
  EXPECT_TRUE(ring->TryWrite("direct"));
  std::vector<std::string> frames = {"a", "b"};
  ASSERT_EQ(ring->Write(frames), 2u);
  EXPECT_EQ(ring->frames(), 3);
  // A slot taken for an item that never reaches the ring is not counted.
  EXPECT_TRUE(ring->AcquireSlot(5, std::nullopt));
  EXPECT_EQ(ring->frames(), 3);
  std::string got;
  ASSERT_TRUE(ring->Read(&got, In(seconds(5))));
  EXPECT_EQ(ring->frames(), 2);
}

TEST(ShmRingTest, UnfinishedTasksJoinAcrossProcesses) {
  auto ring = ShmRing::Create(4096);
  EXPECT_FALSE(ring->TaskDone());
  EXPECT_TRUE(ring->WaitNoUnfinished(In(milliseconds(1))));
  ring->AddUnfinished();
  ring->AddUnfinished();
  EXPECT_FALSE(ring->WaitNoUnfinished(In(milliseconds(30))));
  pid_t child = ForkChild([&] {
    if (!ring->TaskDone() || !ring->TaskDone()) throw 1;
  });
  EXPECT_TRUE(ring->WaitNoUnfinished(In(seconds(30))));
  EXPECT_EQ(WaitExit(child), 0);
  EXPECT_FALSE(ring->TaskDone());
}

// A connected socket pair, for descriptors whose liveness can be checked.
struct SocketPair {
  int fds[2] = {-1, -1};
  SocketPair() {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  }
  ~SocketPair() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
};

// Whether `fd` (a socket) reaches `peer`: a byte sent on one arrives on the
// other.
bool Connected(int fd, int peer) {
  char c = 'x';
  if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) return false;
  return recv(peer, &c, 1, 0) == 1 && c == 'x';
}

void CloseAll(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

TEST(ShmRingTest, DescriptorsTravelWithTheirFramesAcrossProcesses) {
  auto ring = ShmRing::Create(4096, /*fd_channel=*/true);
  SocketPair one, two, three;
  // Each frame says which pair its descriptors belong to.
  pid_t child = ForkChild([&] {
    std::vector<int> fds = {one.fds[0]};
    if (!ring->TryWrite("one", fds)) throw 1;
    if (!ring->TryWrite("plain")) throw 2;
    std::vector<int> two_three = {two.fds[0], three.fds[0]};
    std::vector<FdFrame> frames = {{"none", {}}, {"two three", two_three}};
    if (ring->Write(frames) != 2) throw 3;
  });
  ASSERT_EQ(WaitExit(child), 0);  // in flight, the descriptors outlive it
  std::string got;
  std::vector<int> fds;
  ASSERT_TRUE(ring->Read(&got, In(seconds(5)), &fds));
  EXPECT_EQ(got, "one");
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_TRUE(Connected(fds[0], one.fds[1]));
  CloseAll(fds);
  for (const char* plain : {"plain", "none"}) {
    ASSERT_TRUE(ring->Read(&got, In(seconds(5)), &fds));
    EXPECT_EQ(got, plain);
    EXPECT_TRUE(fds.empty());
  }
  ASSERT_TRUE(ring->Read(&got, In(seconds(5)), &fds));
  EXPECT_EQ(got, "two three");
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_TRUE(Connected(fds[0], two.fds[1]));
  EXPECT_TRUE(Connected(fds[1], three.fds[1]));
  CloseAll(fds);
  EXPECT_TRUE(ring->Empty());
}

TEST(ShmRingTest, DescriptorsLostWithAConsumerRaiseAndTheNextFrameFollows) {
  auto ring = ShmRing::Create(4096, /*fd_channel=*/true);
  SocketPair a, b;
  std::vector<int> fa = {a.fds[0]}, fb = {b.fds[0]};
  ASSERT_TRUE(ring->TryWrite("a", fa));
  ASSERT_TRUE(ring->TryWrite("b", fb));
  // What a consumer that died after taking a's descriptors, before taking
  // the frame, leaves behind.
  char data[8];
  ASSERT_EQ(recv(ring->channel_recv_fd(), data, sizeof data, 0), 8);
  std::string got;
  std::vector<int> fds;
  EXPECT_THROW(ring->Read(&got, In(seconds(5)), &fds), OSError);
  EXPECT_TRUE(fds.empty());
  ASSERT_TRUE(ring->Read(&got, In(seconds(5)), &fds));
  EXPECT_EQ(got, "b");
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_TRUE(Connected(fds[0], b.fds[1]));
  CloseAll(fds);
}

TEST(ShmRingTest, OrphanedDescriptorMessagesAreClosedAndSkipped) {
  auto ring = ShmRing::Create(4096, /*fd_channel=*/true);
  SocketPair a, orphan, b;
  std::vector<int> fa = {a.fds[0]}, fb = {b.fds[0]};
  ASSERT_TRUE(ring->TryWrite("a", fa));  // number 0
  std::string got;
  std::vector<int> fds;
  ASSERT_TRUE(ring->Read(&got, In(seconds(5)), &fds));
  CloseAll(fds);
  // A message with an old number and no frame, as a producer that died
  // between sending it and writing its frame leaves.
  uint64_t old_number = 0;
  iovec iov{&old_number, sizeof old_number};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cmsg), &orphan.fds[0], sizeof(int));
  ASSERT_EQ(sendmsg(ring->channel_send_fd(), &msg, 0), 8);
  close(orphan.fds[0]);
  orphan.fds[0] = -1;
  ASSERT_TRUE(ring->TryWrite("b", fb));  // number 1
  ASSERT_TRUE(ring->Read(&got, In(seconds(5)), &fds));
  EXPECT_EQ(got, "b");
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_TRUE(Connected(fds[0], b.fds[1]));
  CloseAll(fds);
  // The orphan's descriptor was closed: its peer has nobody left.
  char c = 'x';
  EXPECT_EQ(send(orphan.fds[1], &c, 1, MSG_NOSIGNAL), -1);
  EXPECT_EQ(errno, EPIPE);
}

TEST(ShmRingTest, DescriptorsNeedAChannel) {
  auto ring = ShmRing::Create(4096);
  SocketPair a;
  std::vector<int> fds = {a.fds[0]};
  EXPECT_THROW(ring->TryWrite("a", fds), TypeError);
  std::vector<FdFrame> frames = {{"a", fds}};
  EXPECT_THROW(ring->Write(frames), TypeError);
  EXPECT_TRUE(ring->Empty());
}

TEST(ShmRingTest, AttachMapsTheSameRing) {
  auto ring = ShmRing::Create(4096);
  auto other = ShmRing::Attach(dup(ring->fd()));
  std::vector<std::string> frames = {"shared"};
  ring->Write(frames);
  std::string got;
  ASSERT_TRUE(other->Read(&got, In(seconds(5))));
  EXPECT_EQ(got, "shared");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[1]);
  EXPECT_ANY_THROW(ShmRing::Attach(fds[0]));
}

}  // namespace
}  // namespace multiprocessing::queues::internal
