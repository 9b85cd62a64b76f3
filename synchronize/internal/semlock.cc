#include "synchronize/internal/semlock.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "errors/errors.h"
#include "synchronize/internal/futex.h"
#include "synchronize/internal/resource_tracker.h"

namespace multiprocessing::internal {

__thread uint64_t t_thread_token = 0;

namespace {

std::atomic<uint64_t> g_next_token{1};

// In a forked child the forking thread starts over with a fresh token, so
// nothing recorded before the fork is "mine" (other threads do not exist
// there).
void ResetTokenInChild() { t_thread_token = 0; }

std::once_flag g_atfork_once;

// Every SemLock open in this process, by name, so that a name loaded twice
// yields one object.
struct Registry {
  std::mutex mutex;
  absl::flat_hash_map<std::string, std::weak_ptr<SemLock>> by_name;
};
Registry& GetRegistry() {
  static Registry* registry = new Registry;
  return *registry;
}

std::string RandomName() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789_";
  unsigned char bytes[12];
  if (getrandom(bytes, sizeof bytes, 0) != sizeof bytes) {
    uint64_t seed = static_cast<uint64_t>(getpid()) * 0x9E3779B97F4A7C15ULL ^
                    static_cast<uint64_t>(clock());
    for (unsigned char& b : bytes) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      b = static_cast<unsigned char>(seed >> 56);
    }
  }
  std::string name = "/mp-";
  for (unsigned char b : bytes) name += kAlphabet[b % (sizeof kAlphabet - 1)];
  return name;
}

bool IsMainThread() { return syscall(SYS_gettid) == getpid(); }

}  // namespace

uint64_t NewThreadToken() {
  std::call_once(g_atfork_once,
                 [] { pthread_atfork(nullptr, nullptr, &ResetTokenInChild); });
  t_thread_token = g_next_token.fetch_add(1, std::memory_order_relaxed);
  return t_thread_token;
}

// The process name comes from the process library when it is linked in.
std::string (*g_process_name_provider)() = nullptr;

std::string OwnerName() {
  std::string name =
      g_process_name_provider ? g_process_name_provider() : "MainProcess";
  if (!IsMainThread()) {
    char thread_name[32] = {};
    pthread_getname_np(pthread_self(), thread_name, sizeof thread_name);
    name += "|";
    name += thread_name[0] ? thread_name
                           : std::to_string(syscall(SYS_gettid)).c_str();
  }
  return name;
}

SemLock::SemLock(sem_t* sem, std::string name, Kind kind, int maxvalue,
                 bool creator, int mapped_fd)
    : sem_(sem),
      name_(std::move(name)),
      kind_(kind),
      maxvalue_(maxvalue),
      mutex_(maxvalue == 1 && InlineLayoutOk()),
      creator_pid_(creator ? getpid() : 0),
      mapped_fd_(mapped_fd) {
  // Releases are plain stores only in a process registered for HeavyFence.
  if (mutex_) EnableLightFences();
}

std::shared_ptr<SemLock> SemLock::Create(Kind kind, int value, int maxvalue) {
  if (value < 0) throw ValueError("semaphore initial value must be >= 0");
  if (maxvalue < 1 || value > maxvalue) {
    throw ValueError("semaphore initial value must be <= its maximum value");
  }
  ThreadToken();  // installs the fork handler before any lock is held
  resource_tracker::ensure_running();
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string name = RandomName();
    sem_t* sem = sem_open(name.c_str(), O_CREAT | O_EXCL, 0600,
                          static_cast<unsigned>(value));
    if (sem == SEM_FAILED) {
      if (errno == EEXIST) continue;
      RaiseOSError("sem_open(" + name + ")", errno);
    }
    try {
      resource_tracker::register_resource(name, resource_tracker::kSemaphore);
    } catch (...) {
      sem_close(sem);
      sem_unlink(name.c_str());
      throw;
    }
    std::shared_ptr<SemLock> lock(
        new SemLock(sem, name, kind, maxvalue, /*creator=*/true));
    // Biased to this thread until another takes it (see semlock.h); only
    // where releases and this thread's fences can be light.
    if (lock->mutex_ && g_light_fences.load(std::memory_order_relaxed)) {
      lock->bias_word()->store(Tid(), std::memory_order_relaxed);
      lock->biased_here_ = true;
    }
    Registry& registry = GetRegistry();
    std::lock_guard<std::mutex> guard(registry.mutex);
    registry.by_name[name] = lock;
    return lock;
  }
  throw OSError(EEXIST, "cannot find a free name for a semaphore");
}

namespace {

// What Open and OpenFd accept from a pickle: a POSIX semaphore name and a known
// kind.
void CheckOpenArguments(const std::string& name, SemLock::Kind kind,
                        int maxvalue) {
  if (name.size() < 2 || name.size() > 250 || name[0] != '/' ||
      name.find('/', 1) != std::string::npos ||
      name.find('\0') != std::string::npos) {
    throw ValueError("invalid semaphore name '" + name + "'");
  }
  if (kind != SemLock::Kind::kRecursiveMutex &&
      kind != SemLock::Kind::kSemaphore) {
    throw ValueError("unrecognized semaphore kind");
  }
  if (maxvalue < 1) throw ValueError("semaphore maxvalue must be >= 1");
}

}  // namespace

std::shared_ptr<SemLock> SemLock::Open(const std::string& name, Kind kind,
                                       int maxvalue) {
  CheckOpenArguments(name, kind, maxvalue);
  ThreadToken();
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> guard(registry.mutex);
  auto it = registry.by_name.find(name);
  if (it != registry.by_name.end()) {
    if (auto existing = it->second.lock()) return existing;
  }
  sem_t* sem = sem_open(name.c_str(), 0);
  if (sem == SEM_FAILED) {
    int err = errno;
    throw OSError(err, "sem_open(" + name + "): " + std::strerror(err) +
                           " (the semaphore was unlinked: keep the object "
                           "alive in its creator until every process that "
                           "uses it has started)");
  }
  std::shared_ptr<SemLock> lock(
      new SemLock(sem, name, kind, maxvalue, /*creator=*/false));
  registry.by_name[name] = lock;
  return lock;
}

std::shared_ptr<SemLock> SemLock::OpenFd(const std::string& name, int fd,
                                         Kind kind, int maxvalue) {
  CheckOpenArguments(name, kind, maxvalue);
  ThreadToken();
  Registry& registry = GetRegistry();
  std::lock_guard<std::mutex> guard(registry.mutex);
  auto it = registry.by_name.find(name);
  if (it != registry.by_name.end()) {
    if (auto existing = it->second.lock()) return existing;
  }
  // Only a POSIX semaphore file will do: the mapping is used as a sem_t.
  struct stat st;
  char link[64];
  char target[512] = {};
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = fd < 0 ? -1 : readlink(link, target, sizeof target - 1);
  if (n <= 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<size_t>(st.st_size) < sizeof(sem_t) ||
      std::strncmp(target, "/dev/shm/sem.", 13) != 0) {
    throw ValueError("the descriptor of semaphore '" + name +
                     "' is not a semaphore file");
  }
  int kept = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (kept < 0) RaiseOSError("dup (semaphore)", errno);
  void* mem =
      mmap(nullptr, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED, kept, 0);
  if (mem == MAP_FAILED) {
    int err = errno;
    close(kept);
    RaiseOSError("mmap (semaphore)", err);
  }
  std::shared_ptr<SemLock> lock(new SemLock(static_cast<sem_t*>(mem), name,
                                            kind, maxvalue,
                                            /*creator=*/false, kept));
  registry.by_name[name] = lock;
  return lock;
}

int SemLock::DupFd() const {
  if (mapped_fd_ >= 0) {
    int fd = fcntl(mapped_fd_, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) RaiseOSError("dup (semaphore)", errno);
    return fd;
  }
  std::string path = "/dev/shm/sem." + name_.substr(1);
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw OSError(err, "cannot send semaphore " + name_ + ": " +
                           std::strerror(err) +
                           " (its creator already unlinked it)");
  }
  return fd;
}

SemLock::~SemLock() {
  {
    Registry& registry = GetRegistry();
    std::lock_guard<std::mutex> guard(registry.mutex);
    auto it = registry.by_name.find(name_);
    if (it != registry.by_name.end() && it->second.expired()) {
      registry.by_name.erase(it);
    }
  }
  if (mapped_fd_ >= 0) {
    munmap(sem_, sizeof(sem_t));
    close(mapped_fd_);
  } else {
    sem_close(sem_);
  }
  if (creator_pid_ != 0 && creator_pid_ == getpid()) {
    sem_unlink(name_.c_str());
    try {
      resource_tracker::unregister_resource(name_,
                                            resource_tracker::kSemaphore);
    } catch (...) {
      // The name is gone either way; the tracker's later attempt is harmless.
    }
  }
}

namespace {
// Checks that sem_t is glibc's 64-bit layout the inline paths assume.
bool CheckInlineLayout() {
  if (sizeof(sem_t) < sizeof(uint64_t) || alignof(sem_t) < alignof(uint64_t) ||
      sizeof(void*) != 8) {
    return false;
  }
  sem_t probe;
  if (sem_init(&probe, 1, 5) != 0) return false;
  uint64_t word;
  std::memcpy(&word, &probe, sizeof word);
  bool ok = word == 5;
  sem_post(&probe);
  std::memcpy(&word, &probe, sizeof word);
  ok = ok && word == 6;
  sem_trywait(&probe);
  std::memcpy(&word, &probe, sizeof word);
  ok = ok && word == 5;
  sem_destroy(&probe);
  return ok;
}
}  // namespace

bool SemLock::g_inline_sem = CheckInlineLayout();

// Unlike g_inline_sem, right even during static initialisation: a lock's
// protocol must not depend on when its handle was made.
bool SemLock::InlineLayoutOk() {
  static const bool ok = CheckInlineLayout();
  return ok;
}

void SemLock::WakeOne() {
  // glibc sleeps on the value half (the low word on little-endian); named
  // semaphores are process-shared, so no private flag.
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(sem_), FUTEX_WAKE, 1, nullptr,
          nullptr, 0);
}

bool SemLock::AcquireSlow(bool block, std::optional<double> timeout) {
  if (errno != EAGAIN && errno != EINTR) RaiseOSError("sem_trywait", errno);
  if (!block) return false;
  // A holder usually releases within a microsecond or two (a Condition's
  // notifier is about to wait): spin briefly before sleeping in the kernel.
  for (int i = 0; i < 100; ++i) {
    CpuRelax();
    if (TryWaitFast()) return true;
  }
  if (!timeout) {
    while (sem_wait(sem_) != 0) {
      if (errno != EINTR) RaiseOSError("sem_wait", errno);
    }
    return true;
  }
  Deadline deadline = DeadlineAfter(*timeout);
  while (sem_clockwait(sem_, CLOCK_MONOTONIC, &*deadline) != 0) {
    if (errno == ETIMEDOUT) return false;
    if (errno != EINTR) RaiseOSError("sem_clockwait", errno);
  }
  return true;
}

bool SemLock::MutexAcquireSlow(bool block, std::optional<double> timeout) {
  if (!block) return false;
  std::atomic<uint32_t>* word = mutex_word();
  // A holder usually releases within a microsecond or two (a Condition's
  // notifier is about to wait): spin briefly before sleeping in the kernel.
  for (int i = 0; i < 100; ++i) {
    CpuRelax();
    uint32_t expected = kFree;
    if (word->load(std::memory_order_relaxed) == kFree &&
        word->compare_exchange_strong(expected, kLocked,
                                      std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      // A bias being revoked may still be held (RevokeBias waits for it
      // without the word).
      return BiasPresent() ? RevokeBias(DeadlineAfter(timeout)) : true;
    }
  }
  Deadline deadline = DeadlineAfter(timeout);
  if (!TakeWordSleeping(deadline)) return false;
  if (BiasPresent()) return RevokeBias(deadline);
  return true;
}

bool SemLock::TakeWordSleeping(const Deadline& deadline) {
  std::atomic<uint32_t>* word = mutex_word();
  // Announce the sleep in the sleepers' half, then make sure every releaser
  // either sees the announcement (and wakes us) or has its release visible
  // below (membarrier.h).
  sleepers_word()->fetch_add(1);
  HeavyFence();
  bool taken = false;
  for (;;) {
    uint32_t expected = kFree;
    if (word->load(std::memory_order_relaxed) == kFree &&
        word->compare_exchange_strong(expected, kLocked,
                                      std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      taken = true;
      break;
    }
    if (Expired(deadline)) break;
    FutexWait(word, kLocked, deadline);
  }
  sleepers_word()->fetch_sub(1);
  return taken;
}

bool SemLock::RevokeBias(const Deadline& deadline) {
  std::atomic<uint32_t>* held = bias_held_word();
  if (bias_word()->load(std::memory_order_relaxed) != 0) {
    bias_word()->store(0, std::memory_order_relaxed);
    // Now either the biased thread sees the bias gone before it takes the
    // flag, or this thread sees its flag below.
    HeavyFence();
  }
  for (int i = 0; i < 100; ++i) {
    if (held->load(std::memory_order_acquire) == 0) return true;
    CpuRelax();
  }
  // Held through the bias. Wait for its release (which wakes us, since the
  // bias is gone) without holding the word, so that a waiter killed here
  // leaves the lock as it found it; whoever takes the word meanwhile sees the
  // flag and waits likewise. Then take the word again.
  for (;;) {
    ReleaseWord();
    for (;;) {
      uint32_t seen = held->load(std::memory_order_acquire);
      if (seen == 0) break;
      if (Expired(deadline)) return false;
      FutexWait(held, seen, SliceOf(deadline, 0.05));
    }
    uint32_t expected = kFree;
    if (!mutex_word()->compare_exchange_strong(expected, kLocked,
                                               std::memory_order_acquire,
                                               std::memory_order_relaxed) &&
        !TakeWordSleeping(deadline)) {
      return false;
    }
    if (held->load(std::memory_order_acquire) == 0) return true;
  }
}

void SemLock::WakeBiasWaiters() { FutexWakeAll(bias_held_word()); }

int SemLock::GetValue() const {
  if (mutex_) return Held() ? 0 : 1;
  int value = 0;
  if (sem_getvalue(sem_, &value) != 0) RaiseOSError("sem_getvalue", errno);
  return value < 0 ? 0 : value;
}

void SemLock::ThrowNotOwned() {
  throw AssertionError("attempt to release recursive lock not owned by thread");
}

void SemLock::ThrowReleasedTooManyTimes() {
  throw ValueError("semaphore or lock released too many times");
}

void SemLock::ThrowPostFailed() {
  if (errno == EOVERFLOW) {
    throw ValueError(
        "semaphore or lock released too many times (the value would exceed "
        "SEM_VALUE_MAX)");
  }
  RaiseOSError("sem_post", errno);
}

std::string SemLock::LockRepr() const {
  std::string owner;
  if (IsMine()) {
    owner = OwnerName();
  } else if (GetValue() == 1) {
    owner = "None";
  } else if (HeldByOtherThread()) {
    owner = "SomeOtherThread";
  } else {
    owner = "SomeOtherProcess";
  }
  return "<Lock(owner=" + owner + ")>";
}

std::string SemLock::RLockRepr() const {
  if (IsMine()) {
    return "<RLock(" + OwnerName() + ", " + std::to_string(Count()) + ")>";
  }
  if (GetValue() == 1) return "<RLock(None, 0)>";
  if (HeldByOtherThread()) return "<RLock(SomeOtherThread, nonzero)>";
  return "<RLock(SomeOtherProcess, nonzero)>";
}

}  // namespace multiprocessing::internal
