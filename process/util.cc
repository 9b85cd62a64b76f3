#include "process/util.h"

#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "logging/logging.h"
#include "process/internal/state.h"

namespace multiprocessing {

namespace internal {
struct FinalizerEntry {
  std::function<void()> callback;
  std::optional<int> exitpriority;
  long sequence = 0;
  pid_t pid = 0;
};
}  // namespace internal

using internal::FinalizerEntry;

namespace {

// Keyed like Python's (exitpriority, counter); values are the entries.
struct FinalizerRegistry {
  std::mutex mu;
  long counter = 0;
  std::map<long, std::shared_ptr<FinalizerEntry>> entries;
  int fork_counter = 0;
  std::map<int, std::function<void()>> after_fork;
  std::string temp_dir;
};

FinalizerRegistry& Registry() {
  static FinalizerRegistry* const registry = [] {
    auto* r = new FinalizerRegistry;
    pthread_atfork([] { Registry().mu.lock(); }, [] { Registry().mu.unlock(); },
                   [] { Registry().mu.unlock(); });
    return r;
  }();
  return *registry;
}

// Removes the entry; returns it if it was still registered.
std::shared_ptr<FinalizerEntry> Take(const FinalizerEntry* entry) {
  FinalizerRegistry& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.entries.find(entry->sequence);
  if (it == r.entries.end() || it->second.get() != entry) return nullptr;
  auto taken = std::move(it->second);
  r.entries.erase(it);
  return taken;
}

}  // namespace

Finalize::Finalize(std::function<void()> callback,
                   std::optional<int> exitpriority)
    : entry_(std::make_shared<FinalizerEntry>()) {
  entry_->callback = std::move(callback);
  entry_->exitpriority = exitpriority;
  entry_->pid = ::getpid();
  FinalizerRegistry& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  entry_->sequence = ++r.counter;
  r.entries[entry_->sequence] = entry_;
}

void Finalize::operator()() const {
  if (!entry_) return;
  auto taken = Take(entry_.get());
  if (!taken) {
    logging::sub_debug("finalizer no longer registered");
    return;
  }
  if (taken->pid != ::getpid()) {
    logging::sub_debug("finalizer ignored because different process");
    return;
  }
  auto callback = std::move(taken->callback);
  if (callback) callback();
}

void Finalize::cancel() const {
  if (entry_) Take(entry_.get());
}

bool Finalize::still_active() const {
  if (!entry_) return false;
  FinalizerRegistry& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.entries.find(entry_->sequence);
  return it != r.entries.end() && it->second == entry_;
}

int register_after_fork(std::function<void()> func) {
  FinalizerRegistry& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  int token = ++r.fork_counter;
  r.after_fork[token] = std::move(func);
  return token;
}

void unregister_after_fork(int token) {
  FinalizerRegistry& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.after_fork.erase(token);
}

namespace {

int RemoveOne(const char* path, const struct stat*, int, struct FTW*) {
  ::remove(path);
  return 0;
}

}  // namespace

std::string get_temp_dir() {
  FinalizerRegistry& r = Registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    if (!r.temp_dir.empty()) return r.temp_dir;
  }
  const char* base = ::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(base && *base ? base : "/tmp", "/pymp-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) RaiseOSError("mkdtemp", errno);
  logging::info("created temp directory ", pattern);
  {
    std::lock_guard<std::mutex> lock(r.mu);
    if (!r.temp_dir.empty()) {
      ::rmdir(pattern.c_str());
      return r.temp_dir;
    }
    r.temp_dir = pattern;
  }
  Finalize(
      [dir = pattern] {
        ::nftw(dir.c_str(), &RemoveOne, 16, FTW_DEPTH | FTW_PHYS);
        FinalizerRegistry& reg = Registry();
        std::lock_guard<std::mutex> lock(reg.mu);
        if (reg.temp_dir == dir) reg.temp_dir.clear();
      },
      -100);
  return pattern;
}

bool is_exiting() {
  auto& g = internal::Globals();
  std::lock_guard<std::mutex> lock(g.mu);
  return g.exiting;
}

namespace internal {

void RunFinalizers(std::optional<int> minpriority) {
  FinalizerRegistry& r = Registry();
  std::vector<std::shared_ptr<FinalizerEntry>> due;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (const auto& [seq, entry] : r.entries) {
      if (entry->exitpriority &&
          (!minpriority || *entry->exitpriority >= *minpriority)) {
        due.push_back(entry);
      }
    }
  }
  // Highest priority first, then the most recently created.
  std::sort(due.begin(), due.end(), [](const auto& a, const auto& b) {
    if (*a->exitpriority != *b->exitpriority) {
      return *a->exitpriority > *b->exitpriority;
    }
    return a->sequence > b->sequence;
  });
  for (const auto& entry : due) {
    auto taken = Take(entry.get());
    if (!taken || taken->pid != ::getpid() || !taken->callback) continue;
    logging::sub_debug("calling finalizer");
    try {
      taken->callback();
    } catch (const std::exception& e) {
      WriteStderr(absl::StrCat("Error in finalizer: ", PythonNameOf(e), ": ",
                               e.what(), "\n"));
    }
  }
  if (!minpriority) {
    std::lock_guard<std::mutex> lock(r.mu);
    r.entries.clear();
  }
}

void ClearFinalizers() {
  FinalizerRegistry& r = Registry();
  std::map<long, std::shared_ptr<FinalizerEntry>> old;
  std::lock_guard<std::mutex> lock(r.mu);
  old.swap(r.entries);
  r.temp_dir.clear();
}

void RunAfterForkers() {
  std::vector<std::function<void()>> hooks;
  {
    FinalizerRegistry& r = Registry();
    std::lock_guard<std::mutex> lock(r.mu);
    for (const auto& [token, func] : r.after_fork) hooks.push_back(func);
  }
  for (auto& hook : hooks) {
    try {
      hook();
    } catch (const std::exception& e) {
      logging::info("after forker raised exception ", e.what());
    }
  }
}

}  // namespace internal
}  // namespace multiprocessing
