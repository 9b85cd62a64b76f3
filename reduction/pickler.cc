// OutOfBand: the file descriptors that travel beside pickle bytes.
#include "reduction/pickler.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"

namespace multiprocessing::reduction {

OutOfBand& OutOfBand::operator=(OutOfBand&& other) noexcept {
  if (this != &other) {
    close_all();
    fds = std::move(other.fds);
    other.fds.clear();
  }
  return *this;
}

size_t OutOfBand::add_dup(int fd) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) RaiseOSError("dup", errno);
  fds.push_back(copy);
  return fds.size() - 1;
}

int OutOfBand::dup_fd(size_t index) const {
  if (index >= fds.size() || fds[index] < 0) {
    throw UnpicklingError(absl::StrCat(
        "the pickle refers to file descriptor #", index, " but only ",
        fds.size(),
        " arrived with it; send it through a Connection, which passes them"));
  }
  int copy = fcntl(fds[index], F_DUPFD_CLOEXEC, 0);
  if (copy < 0) RaiseOSError("dup", errno);
  return copy;
}

int OutOfBand::release(size_t index) {
  if (index >= fds.size() || fds[index] < 0) {
    throw UnpicklingError(absl::StrCat("the pickle refers to file descriptor #",
                                       index, " which is not available"));
  }
  int fd = fds[index];
  fds[index] = -1;
  return fd;
}

void OutOfBand::close_all() noexcept {
  for (int fd : fds) {
    if (fd >= 0) close(fd);
  }
  fds.clear();
}
}  // namespace multiprocessing::reduction
