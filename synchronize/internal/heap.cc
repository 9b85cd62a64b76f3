#include "synchronize/internal/heap.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "errors/errors.h"

namespace multiprocessing::internal {

namespace {
constexpr size_t kAlignment = 64;  // a cache line: no false sharing
constexpr size_t kArenaSize = size_t{1} << 20;
constexpr char kArenaName[] = "mp-arena";

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }
}  // namespace

struct Arena {
  int fd = -1;
  size_t size = 0;
  char* base = nullptr;
  dev_t dev = 0;
  ino_t ino = 0;
  pid_t owner_pid = 0;  // the process that allocates from it; 0 if mapped
  // Allocator state (owner only, under the heap mutex): offset -> length.
  std::map<size_t, size_t> free;
  size_t used = 0;
  ~Arena();
};

namespace {

struct Heap {
  std::mutex mutex;  // the allocator
  pid_t pid = 0;
  std::vector<std::shared_ptr<Arena>> arenas;
  std::mutex map_mutex;  // `mapped`; taken after `mutex` when both are held
  absl::flat_hash_map<std::pair<dev_t, ino_t>, std::weak_ptr<Arena>> mapped;
};

Heap& GetHeap() {
  static Heap* heap = [] {
    auto* h = new Heap;
    // A forked child must not inherit a mutex held by another thread.
    pthread_atfork(
        [] {
          GetHeap().mutex.lock();
          GetHeap().map_mutex.lock();
        },
        [] {
          GetHeap().map_mutex.unlock();
          GetHeap().mutex.unlock();
        },
        [] {
          GetHeap().map_mutex.unlock();
          GetHeap().mutex.unlock();
        });
    return h;
  }();
  return *heap;
}

std::shared_ptr<Arena> MapArena(int fd, size_t size, pid_t owner) {
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    close(fd);
    RaiseOSError("mmap (shared heap arena)", err);
  }
  struct stat st;
  fstat(fd, &st);
  auto arena = std::make_shared<Arena>();
  arena->fd = fd;
  arena->size = size;
  arena->base = static_cast<char*>(base);
  arena->dev = st.st_dev;
  arena->ino = st.st_ino;
  arena->owner_pid = owner;
  Heap& heap = GetHeap();
  std::lock_guard<std::mutex> lock(heap.map_mutex);
  heap.mapped[{arena->dev, arena->ino}] = arena;
  return arena;
}

std::shared_ptr<Arena> NewArena(size_t size) {
  int fd = memfd_create(kArenaName, MFD_CLOEXEC);
  if (fd < 0) RaiseOSError("memfd_create", errno);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    close(fd);
    if (err == ENOMEM || err == ENOSPC || err == EFBIG) {
      throw MemoryError("cannot allocate " + std::to_string(size) +
                        " bytes of shared memory");
    }
    RaiseOSError("ftruncate (shared heap arena)", err);
  }
  auto arena = MapArena(fd, size, getpid());
  arena->free[0] = size;
  return arena;
}

// Takes `size` bytes from `arena`'s free ranges, first fit.
bool Take(Arena& arena, size_t size, size_t* offset) {
  for (auto it = arena.free.begin(); it != arena.free.end(); ++it) {
    if (it->second < size) continue;
    *offset = it->first;
    size_t rest = it->second - size;
    size_t rest_at = it->first + size;
    arena.free.erase(it);
    if (rest > 0) arena.free[rest_at] = rest;
    arena.used += size;
    return true;
  }
  return false;
}

void Give(Arena& arena, size_t offset, size_t size) {
  arena.used -= size;
  auto next = arena.free.lower_bound(offset);
  if (next != arena.free.end() && next->first == offset + size) {
    size += next->second;
    next = arena.free.erase(next);
  }
  if (next != arena.free.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      prev->second += size;
      return;
    }
  }
  arena.free[offset] = size;
}

}  // namespace

Arena::~Arena() {
  {
    Heap& heap = GetHeap();
    std::lock_guard<std::mutex> lock(heap.map_mutex);
    auto it = heap.mapped.find({dev, ino});
    if (it != heap.mapped.end() && it->second.expired()) heap.mapped.erase(it);
  }
  if (base != nullptr) munmap(base, size);
  if (fd >= 0) close(fd);
}

SharedBlock::SharedBlock(std::shared_ptr<Arena> arena, size_t offset,
                         size_t size, bool owned)
    : arena_(std::move(arena)),
      data_(arena_->base + offset),
      offset_(offset),
      size_(size),
      owned_(owned) {}

std::shared_ptr<SharedBlock> SharedBlock::Allocate(size_t size) {
  size_t rounded = RoundUp(size == 0 ? 1 : size, kAlignment);
  if (rounded < size) throw MemoryError("shared block too large");
  Heap& heap = GetHeap();
  std::shared_ptr<Arena> chosen;
  size_t offset = 0;
  std::vector<std::shared_ptr<Arena>> dropped;  // released unlocked
  {
    std::lock_guard<std::mutex> lock(heap.mutex);
    if (heap.pid != getpid()) {
      // A forked child: the arenas are shared with the parent, whose
      // allocator owns them. Start afresh.
      dropped.swap(heap.arenas);
      heap.pid = getpid();
    }
    for (auto& arena : heap.arenas) {
      if (Take(*arena, rounded, &offset)) {
        chosen = arena;
        break;
      }
    }
    if (!chosen) {
      size_t arena_size =
          rounded > kArenaSize / 2 ? RoundUp(rounded, 4096) : kArenaSize;
      chosen = NewArena(arena_size);
      heap.arenas.push_back(chosen);
      Take(*chosen, rounded, &offset);
    }
  }
  std::memset(chosen->base + offset, 0, rounded);
  return std::make_shared<SharedBlock>(std::move(chosen), offset, rounded,
                                       /*owned=*/true);
}

SharedBlock::~SharedBlock() {
  if (!owned_ || arena_->owner_pid != getpid()) return;
  Heap& heap = GetHeap();
  std::shared_ptr<Arena> dropped;
  std::lock_guard<std::mutex> lock(heap.mutex);
  Give(*arena_, offset_, size_);
  if (arena_->used == 0) {
    // Keep one empty arena for the next allocation; unmap the others.
    size_t empty = 0;
    for (auto& a : heap.arenas) empty += a->used == 0 ? 1 : 0;
    if (empty > 1 || arena_->size != kArenaSize) {
      for (auto it = heap.arenas.begin(); it != heap.arenas.end(); ++it) {
        if (it->get() == arena_.get()) {
          dropped = std::move(*it);
          heap.arenas.erase(it);
          break;
        }
      }
    }
  }
}

std::shared_ptr<SharedBlock> SharedBlock::Rebuild(int fd, size_t offset,
                                                  size_t size) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    throw ValueError("shared block: the descriptor is not a shared heap arena");
  }
  char link[64];
  char target[256] = {};
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0 || std::strncmp(target, "/memfd:mp-arena", 15) != 0) {
    throw ValueError("shared block: the descriptor is not a shared heap arena");
  }
  size_t arena_size = static_cast<size_t>(st.st_size);
  if (offset > arena_size || size > arena_size - offset || size == 0) {
    throw ValueError("shared block: range [" + std::to_string(offset) + ", +" +
                     std::to_string(size) + ") lies outside its arena of " +
                     std::to_string(arena_size) + " bytes");
  }
  Heap& heap = GetHeap();
  std::shared_ptr<Arena> arena;
  {
    std::lock_guard<std::mutex> lock(heap.map_mutex);
    auto it = heap.mapped.find({st.st_dev, st.st_ino});
    if (it != heap.mapped.end()) arena = it->second.lock();
  }
  bool owned = false;
  if (!arena) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy < 0) RaiseOSError("dup (shared heap arena)", errno);
    arena = MapArena(copy, arena_size, /*owner=*/0);
  } else if (arena->size < offset + size) {
    throw ValueError("shared block: range lies outside its arena");
  }
  return std::make_shared<SharedBlock>(std::move(arena), offset, size, owned);
}

int SharedBlock::fd() const { return arena_->fd; }

size_t MappedArenaCount() {
  Heap& heap = GetHeap();
  std::lock_guard<std::mutex> lock(heap.map_mutex);
  size_t n = 0;
  for (auto& [key, weak] : heap.mapped) n += weak.expired() ? 0 : 1;
  return n;
}

}  // namespace multiprocessing::internal
