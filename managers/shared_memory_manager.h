// Python's multiprocessing.managers.SharedMemoryManager: a manager whose
// server keeps track of shared-memory blocks made through it and unlinks
// them all when it shuts down, so that no block outlives the manager.
//
//   multiprocessing::managers::SharedMemoryManager smm;
//   smm.start();
//   auto shm = smm.SharedMemory(4096);            // a SharedMemory
//   auto sl = smm.ShareableList({1, 2.5, "x"});   // a ShareableList
//   ...                                           // both pickle by name
//   smm.shutdown();                               // unlinks both
//
// The blocks are made in the calling process, as CPython makes them, and
// their names sent to the server (track_segment, on a connection of its
// own); a CPython SharedMemoryManager server accepts the same requests, and
// CPython clients can use this server.
#ifndef MULTIPROCESSING_MANAGERS_SHARED_MEMORY_MANAGER_H_
#define MULTIPROCESSING_MANAGERS_SHARED_MEMORY_MANAGER_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "connection/address.h"
#include "managers/managers.h"
#include "process/context.h"
#include "reduction/object.h"
#include "shared_memory/shareable_list.h"
#include "shared_memory/shared_memory.h"

namespace multiprocessing::managers {

class SharedMemoryManager : public BaseManager {
 public:
  explicit SharedMemoryManager(
      std::optional<connection::Address> address = std::nullopt,
      std::optional<std::string> authkey = std::nullopt,
      const Context* ctx = nullptr);
  SharedMemoryManager(SharedMemoryManager&&) noexcept = default;
  SharedMemoryManager& operator=(SharedMemoryManager&&) noexcept = default;

  // A new block of `size` bytes, tracked by the server.
  shared_memory::SharedMemory SharedMemory(size_t size);
  // A new ShareableList holding `sequence`, tracked by the server.
  shared_memory::ShareableList ShareableList(
      const std::vector<reduction::Object>& sequence);

 protected:
  std::string class_name() const override { return "SharedMemoryManager"; }

 private:
  // Sends `name` to the server; unlinks the block and rethrows on failure.
  void Track(shared_memory::SharedMemory& shm);
};

}  // namespace multiprocessing::managers

#endif  // MULTIPROCESSING_MANAGERS_SHARED_MEMORY_MANAGER_H_
