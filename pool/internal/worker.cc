#include "pool/internal/worker.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "errors/errors.h"
#include "pool/internal/core.h"
#include "process/process.h"
#include "queues/internal/shm_ring.h"
#include "reduction/registry.h"

namespace multiprocessing::pool::internal {
namespace {

using queues::internal::ShmRing;

// Looks up the code of a task, caching what it found.
class CodeCache {
 public:
  RunnerFn Runner(std::string_view key) {
    auto it = runners_.find(absl::string_view(key.data(), key.size()));
    if (it != runners_.end()) return it->second;
    RunnerFn runner = FindRunner(key);
    if (runner == nullptr) {
      throw RuntimeError(
          "the pool worker does not know how to run this task; the worker "
          "must run the same program as the pool");
    }
    runners_.emplace(std::string(key), runner);
    return runner;
  }
  const void* Function(std::string_view name) {
    auto it = functions_.find(absl::string_view(name.data(), name.size()));
    if (it != functions_.end()) return it->second;
    const reduction::RegisteredFunction* fn = reduction::FindFunction(name);
    if (fn == nullptr) {
      throw RuntimeError("the pool worker found no function registered as '" +
                         std::string(name) +
                         "'; the worker must run the same program as the pool");
    }
    functions_.emplace(std::string(name), fn->address);
    return fn->address;
  }

 private:
  absl::flat_hash_map<std::string, RunnerFn> runners_;
  absl::flat_hash_map<std::string, const void*> functions_;
};

void AppendError(std::string* out, std::string_view name,
                 std::string_view message) {
  out->append(name);
  out->push_back('\0');
  out->append(message);
}

}  // namespace

int64_t MonotonicNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void RunWorker(const WorkerArgs& args, const std::function<void()>& init) {
  // A worker must not outlive the pool's process (fork and spawn: its parent;
  // forkserver workers check on the pool when idle).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (args.parent != 0 && getppid() != args.parent && kill(args.parent, 0) != 0)
    return;
  std::shared_ptr<ShmRing> tasks = ShmRing::Attach(dup(args.tasks.fd));
  std::shared_ptr<ShmRing> results = ShmRing::Attach(dup(args.results.fd));
  const size_t slots_size = sizeof(WorkerSlot) * (args.slot_count + 1);
  void* slots = mmap(nullptr, slots_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                     args.slots.fd, 0);
  if (slots == MAP_FAILED) RaiseOSError("mmap", errno);
  WorkerSlot* slot = static_cast<WorkerSlot*>(slots) + args.slot;
  Doorbell& results_bell =
      (static_cast<WorkerSlot*>(slots) + args.slot_count)->bell;

  if (init) init();
  slot->ready.store(1, std::memory_order_release);

  CodeCache code;
  std::string frame;
  std::string out;
  int64_t done = 0;
  // Results are written as soon as they exist (so that the pool always knows
  // which tasks completed), but the pool's reader is woken once per batch:
  // when this worker runs out of tasks, after kRingEvery results, or when
  // results have waited kRingAfterNs. A reader that is awake sees them anyway.
  constexpr int kRingEvery = 32;
  constexpr int64_t kRingAfterNs = 50'000;
  int unrung = 0;
  int64_t first_unrung_ns = 0;
  auto ring_results = [&] {
    if (unrung > 0) Ring(results_bell);
    unrung = 0;
  };
  for (;;) {
    if (tasks->Empty()) ring_results();
    // This worker is the ring's only reader: once a frame is there, Read()
    // takes it without waiting.
    if (!WaitForFrame(*tasks, slot->bell, std::chrono::seconds(1)) ||
        !tasks->Read(&frame)) {
      if (args.parent != 0 && kill(args.parent, 0) != 0 && errno == ESRCH)
        break;
      continue;
    }
    TaskHeader h;
    if (frame.size() < sizeof h) continue;
    std::memcpy(&h, frame.data(), sizeof h);
    if (h.magic != kTaskMagic) continue;
    if (h.kind == kExitWorker) break;
    if (h.kind != kRunTask ||
        frame.size() < sizeof h + h.runner_size + h.name_size)
      continue;
    const int64_t started = MonotonicNanos();
    if (unrung > 0 && started - first_unrung_ns >= kRingAfterNs) ring_results();
    slot->started_ns.store(started, std::memory_order_relaxed);
    slot->seq.store(h.seq, std::memory_order_release);

    std::string_view rest(frame);
    rest.remove_prefix(sizeof h);
    std::string_view runner_key = rest.substr(0, h.runner_size);
    std::string_view name = rest.substr(h.runner_size, h.name_size);
    std::string_view payload = rest.substr(h.runner_size + h.name_size);

    ResultHeader r{};
    r.magic = kResultMagic;
    r.seq = h.seq;
    r.worker = args.id;
    out.assign(sizeof r, '\0');
    try {
      RunnerFn runner = code.Runner(runner_key);
      const void* fn = name.empty() ? reinterpret_cast<const void*>(h.address)
                                    : code.Function(name);
      out += runner(fn, payload);
      r.kind = kResultOk;
    } catch (const SystemExit&) {
      throw;  // the task asked the worker to exit: it dies with the task
    } catch (const std::exception& e) {
      out.resize(sizeof r);
      AppendError(&out, PythonNameOf(e), e.what());
      r.kind = kResultError;
    } catch (...) {
      out.resize(sizeof r);
      AppendError(&out, "RemoteError",
                  "the task threw an exception that is not a std::exception");
      r.kind = kResultError;
    }
    const int64_t ended = MonotonicNanos();
    r.elapsed_ns = ended - started;
    std::memcpy(out.data(), &r, sizeof r);
    results->Write(std::span<const std::string>(&out, 1));
    if (unrung++ == 0) first_unrung_ns = ended;
    // A task that ran a while is worth its own wake-up.
    if (unrung >= kRingEvery || r.elapsed_ns >= kRingAfterNs) ring_results();
    slot->seq.store(0, std::memory_order_release);
    if (args.maxtasks > 0 && ++done >= args.maxtasks) break;
  }
  ring_results();
  munmap(slots, slots_size);
}

void PoolWorkerMain(WorkerArgs args) {
  std::function<void()> init;
  if (!args.initializer.empty()) {
    init = [&args] {
      CodeCache code;
      code.Runner(args.initializer_runner)(code.Function(args.initializer),
                                           args.initializer_args.data);
    };
  }
  RunWorker(args, init);
  for (Fd fd : {args.tasks, args.results, args.slots}) close(fd.fd);
}

}  // namespace multiprocessing::pool::internal

MP_REGISTER_FUNCTION(multiprocessing::pool::internal::PoolWorkerMain);
