#include "shared_memory/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "errors/errors.h"
#include "synchronize/internal/resource_tracker.h"

namespace multiprocessing::shared_memory {

namespace tracker = multiprocessing::internal::resource_tracker;

struct SharedMemory::Impl {
  std::mutex mutex;
  std::string name;  // without '/'
  size_t size = 0;
  void* base = nullptr;  // null once closed
  int fd = -1;
  ~Impl() {
    if (base != nullptr) munmap(base, size);
    if (fd >= 0) ::close(fd);
  }
};

namespace {

std::string RandomName() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char bytes[8];
  if (getrandom(bytes, sizeof bytes, 0) != sizeof bytes) {
    RaiseOSError("getrandom", errno);
  }
  std::string name = "psm_";
  for (unsigned char b : bytes) name += kAlphabet[b % (sizeof kAlphabet - 1)];
  return name;
}

void CheckName(const std::string& name) {
  if (name.empty() || name.size() > 250 ||
      name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    throw ValueError("invalid shared memory name '" + name +
                     "' (1 to 250 characters, no '/')");
  }
}

}  // namespace

SharedMemory::SharedMemory(SharedMemoryOptions options)
    : impl_(std::make_shared<Impl>()) {
  if (options.create && options.size == 0) {
    throw ValueError("'size' must be a positive number different from zero");
  }
  if (!options.create && !options.name) {
    throw ValueError("'name' can only be None if create=True");
  }
  int fd = -1;
  std::string name;
  if (options.create) {
    tracker::ensure_running();
    for (int attempt = 0; attempt < 100; ++attempt) {
      name = options.name ? *options.name : RandomName();
      CheckName(name);
      fd = shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC,
                    0600);
      if (fd >= 0 || errno != EEXIST || options.name) break;
    }
    if (fd < 0) {
      int err = errno;
      throw OSError(err, "shm_open('" + name + "'): " + std::strerror(err) +
                             (err == EEXIST ? " (the name is taken)" : ""));
    }
    if (ftruncate(fd, static_cast<off_t>(options.size)) != 0) {
      int err = errno;
      ::close(fd);
      shm_unlink(("/" + name).c_str());
      RaiseOSError("ftruncate (shared memory)", err);
    }
    try {
      tracker::register_resource("/" + name, tracker::kSharedMemory);
    } catch (...) {
      ::close(fd);
      shm_unlink(("/" + name).c_str());
      throw;
    }
  } else {
    name = *options.name;
    CheckName(name);
    fd = shm_open(("/" + name).c_str(), O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      int err = errno;
      throw OSError(
          err, "shm_open('" + name + "'): " + std::strerror(err) +
                   (err == ENOENT ? " (no such shared memory block)" : ""));
    }
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    int err = errno;
    ::close(fd);
    throw OSError(err == 0 ? EINVAL : err,
                  "shared memory '" + name + "' is empty or unreadable");
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    ::close(fd);
    RaiseOSError("mmap (shared memory)", err);
  }
  impl_->name = name;
  impl_->size = size;
  impl_->base = base;
  impl_->fd = fd;
}

const std::string& SharedMemory::name() const { return impl_->name; }

size_t SharedMemory::size() const { return impl_->size; }

std::span<std::byte> SharedMemory::buf() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->base == nullptr) {
    throw ValueError("operation on a closed SharedMemory");
  }
  return {static_cast<std::byte*>(impl_->base), impl_->size};
}

void SharedMemory::close() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->base != nullptr) {
    munmap(impl_->base, impl_->size);
    impl_->base = nullptr;
  }
  if (impl_->fd >= 0) {
    ::close(impl_->fd);
    impl_->fd = -1;
  }
}

void SharedMemory::unlink() {
  std::string path = "/" + impl_->name;
  if (shm_unlink(path.c_str()) != 0) {
    RaiseOSError("shm_unlink('" + impl_->name + "')", errno);
  }
  try {
    tracker::unregister_resource(path, tracker::kSharedMemory);
  } catch (...) {
    // Unlinked either way; the tracker's later attempt is harmless.
  }
}

std::string SharedMemory::repr() const {
  return "SharedMemory('" + impl_->name +
         "', size=" + std::to_string(impl_->size) + ")";
}

std::ostream& operator<<(std::ostream& os, const SharedMemory& shm) {
  return os << shm.repr();
}

}  // namespace multiprocessing::shared_memory

namespace multiprocessing::reduction {

void Pickler<shared_memory::SharedMemory>::Save(
    Writer& w, const shared_memory::SharedMemory& shm) {
  w.write_str(shm.name());
}

shared_memory::SharedMemory Pickler<shared_memory::SharedMemory>::Load(
    Reader& r) {
  return shared_memory::SharedMemory({.name = r.read_str()});
}

}  // namespace multiprocessing::reduction
