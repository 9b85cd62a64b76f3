// Named shared-memory blocks, as Python's multiprocessing.shared_memory:
//
//   namespace mp = multiprocessing;
//   mp::shared_memory::SharedMemory shm({.create = true, .size = 4096});
//   std::memcpy(shm.buf().data(), "hi", 2);
//   // in another process (or a Python program: same name, same bytes):
//   mp::shared_memory::SharedMemory other({.name = shm.name()});
//   ...
//   other.close();
//   shm.close();
//   shm.unlink();  // once, by one process, when nobody needs the name
//
// A block is a POSIX shared-memory object (/dev/shm/<name>), so a CPython
// process can attach to it by name and see the same bytes. The creating
// process registers the name with the resource tracker: if the program dies
// before unlink(), the tracker removes it. Handles are cheap to copy and
// share one mapping; the last handle's destruction closes it (close(), not
// unlink(), as Python's __del__). A SharedMemory pickles by name.
#ifndef MULTIPROCESSING_SHARED_MEMORY_SHARED_MEMORY_H_
#define MULTIPROCESSING_SHARED_MEMORY_SHARED_MEMORY_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <string>

#include "reduction/pickle.h"

namespace multiprocessing::shared_memory {

struct SharedMemoryOptions {
  // The block's name (without the leading '/'); unset with create = true
  // picks a fresh random "psm_..." name.
  std::optional<std::string> name;
  // Create a new block (FileExistsError-like OSError if the name is taken)
  // rather than attach to an existing one.
  bool create = false;
  // Bytes, for a new block (> 0). Ignored when attaching.
  size_t size = 0;
};

class SharedMemory {
 public:
  // ValueError for create without a size or attach without a name; OSError
  // (errno EEXIST / ENOENT ...) when the system refuses.
  explicit SharedMemory(SharedMemoryOptions options);

  // The name without the leading '/', as Python's .name.
  const std::string& name() const;
  // The mapped size (at least the requested size).
  size_t size() const;
  // The bytes. ValueError after close().
  std::span<std::byte> buf() const;

  // Unmaps this process's view (every handle of it). Idempotent.
  void close();
  // Removes the name; processes attached keep their mapping. OSError if it
  // is already gone.
  void unlink();

  // "SharedMemory('psm_21467_46075', size=4096)".
  std::string repr() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

std::ostream& operator<<(std::ostream& os, const SharedMemory& shm);

}  // namespace multiprocessing::shared_memory

namespace multiprocessing::reduction {
// By name: the receiver attaches to the same block.
template <>
struct Pickler<shared_memory::SharedMemory> {
  static void Save(Writer& w, const shared_memory::SharedMemory& shm);
  static shared_memory::SharedMemory Load(Reader& r);
};
}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_SHARED_MEMORY_SHARED_MEMORY_H_
