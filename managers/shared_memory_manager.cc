// SharedMemoryManager: the server side is three server functions over a set
// of names (track_segment, release_segment, list_segments, as CPython's
// SharedMemoryServer has), unlinked when the server process ends.
#include "managers/shared_memory_manager.h"

#include <sys/mman.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "errors/errors.h"
#include "logging/logging.h"
#include "managers/internal/state.h"
#include "process/util.h"

namespace multiprocessing::managers {
namespace {

using reduction::Object;

// The names a server tracks. Lives in the server process (the parent's copy
// of a fork-started manager never tracks anything).
class Segments {
 public:
  ~Segments() { UnlinkAll(); }

  void Track(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!exit_hook_.still_active()) {
      // The server process may end through exit() without unwinding.
      std::weak_ptr<bool> alive = alive_;
      exit_hook_ = Finalize(
          [this, alive] {
            if (alive.lock()) UnlinkAll();
          },
          /*exitpriority=*/0);
    }
    names_.insert(name);
  }
  void Release(const std::string& name) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (names_.erase(name) == 0) return;
    }
    Unlink(name);
  }
  Object List() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Object> names(names_.begin(), names_.end());
    return Object::list(std::move(names));
  }
  void UnlinkAll() {
    std::set<std::string> names;
    {
      std::lock_guard<std::mutex> lock(mu_);
      names.swap(names_);
    }
    for (const std::string& name : names) Unlink(name);
  }

 private:
  static void Unlink(const std::string& name) {
    logging::debug("unlinking shared memory segment ", name);
    try {
      shared_memory::SharedMemory({.name = name}).unlink();
    } catch (const std::exception& e) {
      // Already unlinked by its user: nothing left to do.
      logging::debug("could not unlink ", name, ": ", e.what());
    }
  }

  std::mutex mu_;
  std::set<std::string> names_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Finalize exit_hook_;
};

const std::string& NameArg(const Object& args, const char* function) {
  if (!args.is_tuple() || args.size() != 1 || !args.items()[0].is_str()) {
    throw TypeError(std::string(function) +
                    "() takes one argument, the segment's name");
  }
  return args.items()[0].as_str();
}

}  // namespace

SharedMemoryManager::SharedMemoryManager(
    std::optional<connection::Address> address,
    std::optional<std::string> authkey, const Context* ctx)
    : BaseManager(std::move(address), std::move(authkey), ctx) {
  auto segments = std::make_shared<Segments>();
  register_server_function("track_segment", [segments](const Object& args) {
    segments->Track(NameArg(args, "track_segment"));
    return Object();
  });
  register_server_function("release_segment", [segments](const Object& args) {
    segments->Release(NameArg(args, "release_segment"));
    return Object();
  });
  register_server_function(
      "list_segments", [segments](const Object&) { return segments->List(); });
}

void SharedMemoryManager::Track(shared_memory::SharedMemory& shm) {
  try {
    internal::PublicCall(address(), authkey(), "track_segment",
                         Object::tuple({Object(shm.name())}));
  } catch (...) {
    shm.unlink();
    throw;
  }
}

shared_memory::SharedMemory SharedMemoryManager::SharedMemory(size_t size) {
  shared_memory::SharedMemory shm({.create = true, .size = size});
  Track(shm);
  return shm;
}

shared_memory::ShareableList SharedMemoryManager::ShareableList(
    const std::vector<Object>& sequence) {
  shared_memory::ShareableList list(sequence);
  Track(list.shm());
  return list;
}

}  // namespace multiprocessing::managers

MP_REGISTER_MANAGER(multiprocessing::managers::SharedMemoryManager);
