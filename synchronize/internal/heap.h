// The shared heap: blocks of shared memory carved from arenas (memfd
// mappings), as CPython's multiprocessing.heap. Value/Array storage and the
// shared state of Condition, Event and Barrier live here.
//
// A block is zeroed when allocated and returns to its arena when the
// allocating process drops its last handle; an arena is unmapped when no
// block of it is left. A forked child inherits the mappings but allocates
// from arenas of its own (as CPython's heap does after fork), so parent and
// child never hand out the same bytes. Other processes (spawn, forkserver)
// map a block's arena from its descriptor, which travels out of band; there
// the block is only mapped, never freed into an allocator, and the mapping
// goes away with the last handle. Nothing is ever named in /dev/shm.
#ifndef MULTIPROCESSING_SYNCHRONIZE_INTERNAL_HEAP_H_
#define MULTIPROCESSING_SYNCHRONIZE_INTERNAL_HEAP_H_

#include <sys/types.h>

#include <cstddef>
#include <memory>

namespace multiprocessing::internal {

struct Arena;

class SharedBlock {
 public:
  // A zeroed block of at least `size` bytes, 64-byte aligned. Throws
  // MemoryError / OSError.
  static std::shared_ptr<SharedBlock> Allocate(size_t size);
  // The block at `offset` (of `size` bytes) in the arena whose descriptor is
  // `fd` (borrowed: duplicated if kept). Throws ValueError when the
  // descriptor is not an arena or the range lies outside it.
  static std::shared_ptr<SharedBlock> Rebuild(int fd, size_t offset,
                                              size_t size);

  SharedBlock(std::shared_ptr<Arena> arena, size_t offset, size_t size,
              bool owned);
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  ~SharedBlock();

  void* data() const { return data_; }
  size_t size() const { return size_; }
  size_t offset() const { return offset_; }
  // The arena's descriptor, for sending it to another process.
  int fd() const;

 private:
  std::shared_ptr<Arena> arena_;
  void* data_;
  size_t offset_;
  size_t size_;
  bool owned_;  // allocated here (not rebuilt)
};

// For tests: the number of arenas this process maps.
size_t MappedArenaCount();

}  // namespace multiprocessing::internal

#endif  // MULTIPROCESSING_SYNCHRONIZE_INTERNAL_HEAP_H_
