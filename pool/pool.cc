#include "pool/pool.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <span>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "pool/internal/worker.h"
#include "process/context.h"
#include "process/process.h"
#include "queues/internal/shm_ring.h"

namespace multiprocessing::pool {
namespace internal {

// ---------------------------------------------------------------------------
// Helpers shared with the header.

namespace {
std::mutex& RunnersMutex() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}
absl::flat_hash_map<std::string, RunnerFn>& Runners() {
  static auto* runners = new absl::flat_hash_map<std::string, RunnerFn>;
  return *runners;
}
}  // namespace

bool RegisterRunner(const char* key, RunnerFn runner) {
  std::lock_guard<std::mutex> lock(RunnersMutex());
  Runners().emplace(key, runner);
  return true;
}

RunnerFn FindRunner(std::string_view key) {
  std::lock_guard<std::mutex> lock(RunnersMutex());
  auto it = Runners().find(std::string(key));
  return it == Runners().end() ? nullptr : it->second;
}

std::exception_ptr Rebuild(std::string_view python_name,
                           const std::string& message) {
  try {
    RaiseByName(python_name, message);
  } catch (...) {
    return std::current_exception();
  }
}

void RunCallback(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::exception& e) {
    std::cerr << "Exception in a pool callback: " << PythonNameOf(e) << ": "
              << e.what() << std::endl;
  } catch (...) {
    std::cerr << "Exception in a pool callback" << std::endl;
  }
}

void ThrowBlockingOnResultThread(const char* call) {
  throw RuntimeError(absl::StrCat(
      call,
      " was called from a callback, on the pool's result-handling thread, and "
      "would wait for a result that only this thread can deliver, so it would "
      "never return; call it from another thread, or chain the work with "
      "apply_async()/map_async() and their callbacks"));
}

std::string TypeNameOf(const std::type_info& type) {
  return multiprocessing::internal::TypeName(type);
}

void ThrowUnpicklableArgument(const std::type_info& type) {
  throw PicklingError(
      "a pool task's arguments cannot be pickled (type " + TypeNameOf(type) +
      "); give the type a reduction::Pickler (MP_PICKLE_FIELDS for a struct) "
      "or use a ThreadPool");
}

std::exception_ptr UnpicklableResult(const std::type_info& type) {
  return std::make_exception_ptr(PicklingError(
      "the result of a pool task cannot be pickled (type " + TypeNameOf(type) +
      "), so it cannot come back from the worker; give the type a "
      "reduction::Pickler (MP_PICKLE_FIELDS for a struct) or use a "
      "ThreadPool"));
}

namespace {

using queues::internal::ShmRing;
using Clock = std::chrono::steady_clock;

// How often a thread waiting for results looks at the ring without a wake-up.
constexpr std::chrono::milliseconds kResultPoll(10);

int CheckProcesses(const PoolOptions& options) {
  int n = options.processes ? *options.processes : cpu_count();
  if (n < 1) {
    throw ValueError("Number of processes must be at least 1; got " +
                     std::to_string(n));
  }
  return n;
}

std::string SignalName(int sig) {
  switch (sig) {
    case SIGKILL:
      return "SIGKILL";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGABRT:
      return "SIGABRT";
    case SIGTERM:
      return "SIGTERM";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGINT:
      return "SIGINT";
    default:
      return absl::StrCat("signal ", sig);
  }
}

enum class State { kRun, kClose, kTerminate };

// ---------------------------------------------------------------------------
// Worker processes.

class ProcessPoolCore final : public PoolCore {
 public:
  explicit ProcessPoolCore(PoolOptions options)
      : options_(std::move(options)),
        processes_(CheckProcesses(options_)),
        context_(options_.context != nullptr ? options_.context
                                             : &get_context()) {
    if (options_.maxtasksperchild && *options_.maxtasksperchild < 1) {
      throw ValueError(
          "maxtasksperchild must be a positive int or unset; got " +
          std::to_string(*options_.maxtasksperchild));
    }
    if (options_.task_timeout && options_.task_timeout->count() <= 0)
      throw ValueError("task_timeout must be positive");
    method_ = context_->get_start_method().value_or("fork");
    forked_ = method_ == "fork";
    if (!forked_ && options_.initializer) {
      initializer_ = options_.initializer.Pickled();  // PicklingError now
    }
    results_ = ShmRing::Create(size_t{4} << 20);
    slots_size_ = sizeof(WorkerSlot) * (processes_ + 1);
    slots_fd_ = memfd_create("mp-pool-slots", MFD_CLOEXEC);
    if (slots_fd_ < 0) RaiseOSError("memfd_create", errno);
    if (ftruncate(slots_fd_, static_cast<off_t>(slots_size_)) != 0) {
      int e = errno;
      ::close(slots_fd_);
      RaiseOSError("ftruncate", e);
    }
    void* m = mmap(nullptr, slots_size_, PROT_READ | PROT_WRITE, MAP_SHARED,
                   slots_fd_, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      ::close(slots_fd_);
      RaiseOSError("mmap", e);
    }
    slots_ = static_cast<WorkerSlot*>(m);
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    try {
      for (int i = 0; i < processes_; ++i) {
        std::unique_ptr<Worker> w = StartWorker(i);
        workers_.push_back(std::move(w));
      }
    } catch (...) {
      for (auto& w : workers_) w->process.kill();
      for (auto& w : workers_) w->process.join();
      Release();
      throw;
    }
    result_thread_ = std::thread([this] { HandleResults(); });
    worker_thread_ = std::thread([this] { HandleWorkers(); });
  }

  ~ProcessPoolCore() override {
    terminate();
    // After a terminate() called by a callback, the result thread ends on
    // its own.
    if (result_thread_.joinable()) result_thread_.join();
    Release();
  }

  bool threads() const override { return false; }
  bool forked() const override { return forked_; }
  int processes() const override { return processes_; }

  void CheckRunning() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kRun)
      throw ValueError("Pool not running; create a new pool for more tasks");
    if (!broken_.empty()) throw ProcessError(broken_);
  }

  void Submit(const std::shared_ptr<JobBase>& job, const FunctionRef& function,
              std::vector<Chunk> chunks) override {
    TaskHeader h{};
    h.magic = kTaskMagic;
    h.kind = kRunTask;
    h.runner_size = static_cast<uint16_t>(function.runner.size());
    h.name_size = static_cast<uint32_t>(function.name.size());
    h.address = reinterpret_cast<uint64_t>(function.address);
    std::vector<std::string> frames;
    frames.reserve(chunks.size());
    for (Chunk& c : chunks) {
      std::string frame;
      frame.reserve(sizeof h + function.runner.size() + function.name.size() +
                    c.payload.size());
      frame.append(sizeof h, '\0');
      frame += function.runner;
      frame += function.name;
      frame += c.payload;
      frames.push_back(std::move(frame));
    }
    const bool callbacks = job->has_callbacks();
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kRun)
      throw ValueError("Pool not running; create a new pool for more tasks");
    if (!broken_.empty()) throw ProcessError(broken_);
    for (size_t i = 0; i < chunks.size(); ++i) {
      h.seq = tasks_.next_seq();
      std::memcpy(frames[i].data(), &h, sizeof h);
      uint64_t seq = tasks_.Add(
          Task{job, chunks[i].index, std::move(frames[i]), 0, callbacks});
      pending_.push_back(seq);
    }
    Dispatch();
    NotifyResultThread();
  }

  void close() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kRun) state_ = State::kClose;
  }

  void KillRunning(const JobBase& job) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& w : workers_) {
      if (w->dead) continue;
      uint64_t seq = slots_[w->slot].seq.load(std::memory_order_acquire);
      Task* t = seq == 0 ? nullptr : tasks_.Find(seq);
      if (t == nullptr || t->job.get() != &job) continue;
      w->terminated = seq;
      w->process.kill();
    }
  }

  void terminate() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      state_ = State::kTerminate;
      stopping_ = true;
      for (auto& w : workers_) w->process.terminate();
      terminate_deadline_ = Clock::now() + std::chrono::seconds(1);
    }
    Wake();
    Finish("the pool was terminated before the task completed");
  }

  void join() override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (state_ == State::kRun) {
        throw ValueError(
            "Pool is still running; call close() or terminate() before "
            "join()");
      }
      if (finished_) return;
      done_cv_.wait(
          lock, [&] { return tasks_.empty() || state_ == State::kTerminate; });
      stopping_ = true;
      for (auto& w : workers_) SendExit(*w);
    }
    Wake();
    Finish("the pool was terminated before the task completed");
  }

 private:
  struct Worker {
    uint64_t id = 0;
    int slot = 0;
    Process process;
    std::shared_ptr<ShmRing> tasks;
    std::deque<uint64_t> outstanding;  // dispatched, in order
    int64_t quota = -1;                // tasks it may still be given
    bool dead = false;
    uint64_t timed_out = 0;   // the task it was killed for
    uint64_t terminated = 0;  // the task AsyncResult::terminate() stopped
    double ema_ns = 0;        // typical task run time
    int pid = 0;
  };
  struct Task {
    std::shared_ptr<JobBase> job;
    uint32_t chunk;
    std::string frame;
    uint64_t worker;  // 0 while pending
    bool callbacks;   // its outcome runs a user's callback
  };
  // The tasks not yet settled, by sequence number. Numbers are handed out in
  // order and mostly settle in order, so a deque indexed from the oldest
  // unsettled one finds them without hashing.
  class TaskTable {
   public:
    uint64_t next_seq() const { return base_ + log_.size(); }
    uint64_t Add(Task task) {
      log_.push_back(std::move(task));
      ++live_;
      if (log_.back().callbacks) ++callbacks_;
      return next_seq() - 1;
    }
    Task* Find(uint64_t seq) {
      if (seq < base_ || seq - base_ >= log_.size()) return nullptr;
      Task& t = log_[seq - base_];
      return t.job ? &t : nullptr;
    }
    // Settles `t`; the caller moved the job out or drops it.
    void Erase(Task& t) {
      t.job.reset();
      std::string().swap(t.frame);
      --live_;
      if (t.callbacks) --callbacks_;
      while (!log_.empty() && !log_.front().job) {
        log_.pop_front();
        ++base_;
      }
    }
    template <class F>
    void ForEach(F f) {
      for (Task& t : log_)
        if (t.job) f(t);
    }
    void Clear() {
      base_ += log_.size();
      log_.clear();
      live_ = callbacks_ = 0;
    }
    bool empty() const { return live_ == 0; }
    // Unsettled tasks whose outcome runs a callback.
    size_t with_callbacks() const { return callbacks_; }

   private:
    std::deque<Task> log_;
    uint64_t base_ = 1;  // the sequence number of log_.front()
    size_t live_ = 0;
    size_t callbacks_ = 0;
  };
  struct Failure {
    std::shared_ptr<JobBase> job;
    uint32_t chunk;
    std::exception_ptr error;
  };

  std::unique_ptr<Worker> StartWorker(int slot) {
    auto w = std::make_unique<Worker>();
    w->id = ++last_worker_id_;
    w->slot = slot;
    w->tasks = ShmRing::Create(size_t{4} << 20);
    if (options_.maxtasksperchild) w->quota = *options_.maxtasksperchild;
    slots_[slot].seq.store(0);
    slots_[slot].ready.store(0);
    WorkerArgs args;
    args.tasks.fd = w->tasks->fd();
    args.results.fd = results_->fd();
    args.slots.fd = slots_fd_;
    args.slot = slot;
    args.slot_count = processes_;
    args.id = w->id;
    args.maxtasks = options_.maxtasksperchild.value_or(0);
    args.parent = getpid();
    std::string prefix = method_ == "fork"    ? "ForkPoolWorker-"
                         : method_ == "spawn" ? "SpawnPoolWorker-"
                                              : "ForkServerPoolWorker-";
    ProcessOptions popts{.name = prefix + std::to_string(w->id),
                         .daemon = true,
                         .context = context_};
    if (forked_) {
      Initializer init = options_.initializer;
      w->process = Process(popts, [args, init] {
        RunWorker(args, init ? std::function<void()>([&init] { init(); })
                             : std::function<void()>());
      });
    } else {
      args.initializer = initializer_.function;
      args.initializer_runner = initializer_.runner;
      args.initializer_args.data = initializer_.args;
      w->process = Process(popts, &PoolWorkerMain, args);
    }
    w->process.start();
    w->pid = w->process.pid().value_or(0);
    return w;
  }

  // How many tasks a worker may hold: enough to keep it busy between two
  // visits of the result thread when tasks are short, few when they are long
  // (so that an idle worker is not left waiting behind a busy one).
  static size_t Depth(const Worker& w) {
    if (w.ema_ns <= 0) return 2;
    double depth = 2e6 / w.ema_ns;  // about 2 ms of work
    return static_cast<size_t>(std::clamp(depth, 2.0, 256.0));
  }

  // Hands pending tasks to workers with room, least loaded first. mu_ held.
  void Dispatch() {
    std::vector<Worker*> full;  // rings with no room left this round
    std::vector<Worker*> fed;   // rings written this round, rung at the end
    absl::Cleanup ring = [&] {
      for (Worker* w : fed) Ring(slots_[w->slot].bell);
    };
    while (!pending_.empty()) {
      Worker* best = nullptr;
      for (auto& w : workers_) {
        if (w->dead || w->quota == 0 || w->outstanding.size() >= Depth(*w) ||
            std::find(full.begin(), full.end(), w.get()) != full.end())
          continue;
        if (best == nullptr || w->outstanding.size() < best->outstanding.size())
          best = w.get();
      }
      if (best == nullptr) return;
      uint64_t seq = pending_.front();
      Task* found = tasks_.Find(seq);
      if (found == nullptr) {
        pending_.pop_front();
        continue;
      }
      if (!found->job->TryStart()) {  // abandoned
        pending_.pop_front();
        tasks_.Erase(*found);
        continue;
      }
      Task& task = *found;
      if (task.frame.size() + 64 > best->tasks->capacity()) {
        pending_.pop_front();
        failures_.push_back(
            {task.job, task.chunk,
             std::make_exception_ptr(ValueError(absl::StrCat(
                 "a pool task's pickled arguments are too large (",
                 task.frame.size(), " bytes; at most ",
                 best->tasks->capacity() - 64,
                 "); use a smaller chunksize or pass large data another "
                 "way (shared memory)")))});
        tasks_.Erase(task);
        continue;
      }
      if (!best->tasks->TryWrite(task.frame)) {
        full.push_back(best);
        continue;
      }
      pending_.pop_front();
      task.worker = best->id;
      best->outstanding.push_back(seq);
      if (best->quota > 0) --best->quota;
      if (std::find(fed.begin(), fed.end(), best) == fed.end())
        fed.push_back(best);
    }
  }

  void SendExit(Worker& w) {
    TaskHeader h{};
    h.magic = kTaskMagic;
    h.kind = kExitWorker;
    std::string frame(sizeof h, '\0');
    std::memcpy(frame.data(), &h, sizeof h);
    w.tasks->TryWrite(frame);
    Ring(slots_[w.slot].bell);
  }

  void Wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  }

  Doorbell& ResultsBell() { return slots_[processes_].bell; }

  // Posts a frame of the pool's own (a worker's death, the end of the result
  // thread) after everything the workers wrote so far.
  void PostResult(ResultKind kind, uint64_t worker, uint64_t seq,
                  std::string_view payload) {
    ResultHeader r{};
    r.magic = kResultMagic;
    r.kind = kind;
    r.worker = worker;
    r.seq = seq;
    std::string frame(sizeof r, '\0');
    std::memcpy(frame.data(), &r, sizeof r);
    frame += payload;
    {
      // Counted first, so that the result thread keeps reading until it has
      // seen it.
      std::lock_guard<std::mutex> lock(mu_);
      ++control_;
      NotifyResultThread();
    }
    results_->Write(std::span<const std::string>(&frame, 1));
    Ring(ResultsBell());
  }

  // Delivers failures collected under the lock; mu_ not held.
  void DeliverFailures(std::vector<Failure>& failures) {
    for (Failure& f : failures) {
      f.job->Fail(f.chunk, f.error);
      DropIfAbandoned(*f.job);
    }
    failures.clear();
  }

  // After an outcome was delivered to `job`: if that settled the job for
  // good (a map that failed), its chunks still queued here are dropped.
  // Those already in a worker's ring (a few, see Depth) still run. mu_ not
  // held.
  void DropIfAbandoned(JobBase& job) {
    if (!job.TakeAbandoned()) return;
    std::lock_guard<std::mutex> lock(mu_);
    size_t kept = 0;
    for (uint64_t seq : pending_) {
      Task* t = tasks_.Find(seq);
      if (t == nullptr) continue;
      if (t->job->abandoned()) {
        tasks_.Erase(*t);
        continue;
      }
      pending_[kept++] = seq;
    }
    pending_.resize(kept);
    if (tasks_.empty()) done_cv_.notify_all();
  }

  // Who reads the results ring. Results are handled in the order they were
  // written, by one thread at a time: the result thread, or a thread waiting
  // in a synchronous call (apply, map), which then needs no wake-up from the
  // result thread. Only the result thread runs callbacks and handles the
  // pool's own frames; a waiting caller that meets one hands it, and what it
  // read after it, to the result thread and stops reading.
  enum class Reader { kNone, kThread, kCaller };

  // mu_ held. Whether the result thread has something to do now.
  bool ThreadHasWork() const {
    return !handoff_.empty() || control_ > 0 || !failures_.empty() ||
           (!tasks_.empty() && (helpers_ == 0 || tasks_.with_callbacks() > 0));
  }
  // mu_ held. Whether a waiting caller may read results now.
  bool CallerMayRead() const {
    return handoff_.empty() && control_ == 0 && failures_.empty() &&
           tasks_.with_callbacks() == 0 && !finished_;
  }
  // mu_ held.
  void NotifyResultThread() {
    if (reader_ == Reader::kNone && ThreadHasWork()) results_cv_.notify_one();
  }
  // Wakes callers waiting for results just delivered; `reading_caller`: the
  // one that delivered them (it needs no wake-up).
  void NotifyCallers(bool reading_caller = false) {
    std::lock_guard<std::mutex> lock(mu_);
    if (helpers_ > (reading_caller ? 1 : 0)) helper_cv_.notify_all();
  }

  enum class Outcome { kMore, kStop, kHandedOff };
  struct Delivery {
    std::shared_ptr<JobBase> job;
    uint32_t chunk;
    size_t frame;  // in batch_
    uint8_t kind;
  };
  static constexpr size_t kBatch = 64;

  // Reads the frames waiting in the ring, up to kBatch, into batch_. The
  // caller is the reader.
  size_t ReadBatch() {
    size_t n = 0;
    while (n < kBatch && !results_->Empty()) {
      if (batch_.size() == n) batch_.emplace_back();
      if (batch_[n].capacity() > (size_t{1} << 20))
        std::string().swap(batch_[n]);
      if (!results_->Read(&batch_[n])) break;
      ++n;
    }
    return n;
  }

  // Handles batch_[begin, n) in order; the caller is the reader. Runs of
  // results are settled under one lock, with one Dispatch().
  Outcome HandleBatch(size_t begin, size_t n, bool thread) {
    size_t i = begin;
    while (i < n) {
      std::vector<Failure> failures;
      size_t stop = n;  // the first frame this run leaves to the code below
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (; i < n; ++i) {
          ResultHeader r;
          const std::string& frame = batch_[i];
          if (frame.size() < sizeof r) continue;  // a dead worker's torn frame
          std::memcpy(&r, frame.data(), sizeof r);
          if (r.magic != kResultMagic) continue;
          if (r.kind == kStopHandler || r.kind == kWorkerDied) {
            stop = i;
            break;
          }
          Task* t = tasks_.Find(r.seq);
          if (t == nullptr) continue;  // already failed
          if (!thread && t->callbacks) {
            stop = i;
            break;
          }
          delivered_.push_back({std::move(t->job), t->chunk, i, r.kind});
          for (auto& w : workers_) {
            if (w->id != r.worker) continue;
            auto pos =
                std::find(w->outstanding.begin(), w->outstanding.end(), r.seq);
            if (pos != w->outstanding.end()) w->outstanding.erase(pos);
            w->ema_ns =
                w->ema_ns <= 0
                    ? static_cast<double>(r.elapsed_ns)
                    : 0.8 * w->ema_ns + 0.2 * static_cast<double>(r.elapsed_ns);
            break;
          }
          tasks_.Erase(*t);
        }
        Dispatch();
        if (thread) failures.swap(failures_);
        if (tasks_.empty()) done_cv_.notify_all();
        if (stop < n && !thread) {
          // Not for a caller: the rest goes to the result thread, in order.
          for (size_t j = stop; j < n; ++j)
            handoff_.push_back(std::move(batch_[j]));
          NotifyResultThread();
        }
      }
      if (thread) DeliverFailures(failures);
      for (Delivery& d : delivered_) Deliver(d);
      delivered_.clear();
      NotifyCallers(!thread);
      if (stop == n) break;
      if (!thread) return Outcome::kHandedOff;
      ResultHeader r;
      std::memcpy(&r, batch_[stop].data(), sizeof r);
      {
        std::lock_guard<std::mutex> lock(mu_);
        --control_;
      }
      if (r.kind == kStopHandler) return Outcome::kStop;
      std::string how(batch_[stop].substr(sizeof r));
      OnWorkerDied(r.worker, r.seq, how);
      NotifyCallers();
      i = stop + 1;
    }
    return Outcome::kMore;
  }

  void Deliver(Delivery& d) {
    std::string_view payload(batch_[d.frame]);
    payload.remove_prefix(sizeof(ResultHeader));
    if (d.kind == kResultOk) {
      d.job->Deliver(d.chunk, payload);
    } else {
      size_t nul = payload.find('\0');
      std::string_view name = payload.substr(0, nul);
      std::string message(nul == std::string_view::npos
                              ? std::string_view()
                              : payload.substr(nul + 1));
      d.job->Fail(d.chunk, Rebuild(name, message));
    }
    DropIfAbandoned(*d.job);
    d.job.reset();
  }

  // The result thread: every outcome no waiting caller handles, every
  // callback, the pool's own frames.
  void HandleResults() {
    t_result_thread_of = this;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      results_cv_.wait(
          lock, [&] { return reader_ == Reader::kNone && ThreadHasWork(); });
      reader_ = Reader::kThread;
      size_t handed = 0;
      for (std::string& f : handoff_) {
        if (batch_.size() == handed) batch_.emplace_back();
        batch_[handed++] = std::move(f);
      }
      handoff_.clear();
      lock.unlock();
      Outcome outcome =
          handed > 0 ? HandleBatch(0, handed, true) : Outcome::kMore;
      while (outcome == Outcome::kMore) {
        size_t n = ReadBatch();
        if (n > 0) {
          outcome = HandleBatch(0, n, true);
          continue;
        }
        std::vector<Failure> failures;
        bool keep;
        {
          std::lock_guard<std::mutex> guard(mu_);
          failures.swap(failures_);
          keep =
              control_ > 0 || (!tasks_.empty() &&
                               (helpers_ == 0 || tasks_.with_callbacks() > 0));
        }
        if (!failures.empty()) {
          DeliverFailures(failures);
          NotifyCallers();
          continue;
        }
        if (!keep) break;
        // Timed: a worker rings once per batch of short tasks, so results
        // written just before a long task are looked for now and then.
        WaitForFrame(*results_, ResultsBell(), kResultPoll);
      }
      lock.lock();
      reader_ = Reader::kNone;
      helper_cv_.notify_all();
      if (outcome == Outcome::kStop) return;
    }
  }

  void BeginHelp() override {
    std::lock_guard<std::mutex> lock(mu_);
    ++helpers_;
  }
  void EndHelp() override {
    std::lock_guard<std::mutex> lock(mu_);
    --helpers_;
    NotifyResultThread();
  }
  void HelpUntil(const std::function<bool()>& ready) override {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      helper_cv_.wait(lock, [&] {
        return ready() || (reader_ == Reader::kNone && CallerMayRead());
      });
      if (ready()) return;
      reader_ = Reader::kCaller;
      lock.unlock();
      Outcome outcome = Outcome::kMore;
      while (outcome == Outcome::kMore && !ready()) {
        size_t n = ReadBatch();
        if (n > 0) {
          outcome = HandleBatch(0, n, false);
          continue;
        }
        {
          std::lock_guard<std::mutex> guard(mu_);
          if (!CallerMayRead()) break;
        }
        WaitForFrame(*results_, ResultsBell(), kResultPoll);
      }
      lock.lock();
      reader_ = Reader::kNone;
      NotifyResultThread();
      helper_cv_.notify_all();
    }
  }

  // A worker ended; every result it sent was read before this. The task in
  // its slot fails; those it never started go to other workers.
  void OnWorkerDied(uint64_t id, uint64_t running, const std::string& how) {
    std::vector<Failure> failures;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto wit = std::find_if(workers_.begin(), workers_.end(),
                              [&](auto& w) { return w->id == id; });
      if (wit == workers_.end()) return;
      std::unique_ptr<Worker> w = std::move(*wit);
      workers_.erase(wit);
      for (auto it = w->outstanding.rbegin(); it != w->outstanding.rend();
           ++it) {
        Task* t = tasks_.Find(*it);
        if (t == nullptr) continue;
        if (*it == running) {
          std::exception_ptr error =
              w->timed_out == running
                  ? std::make_exception_ptr(TimeoutError(how))
                  : std::make_exception_ptr(ProcessError(how));
          failures.push_back({t->job, t->chunk, error});
          tasks_.Erase(*t);
        } else {
          t->worker = 0;
          pending_.push_front(*it);
        }
      }
      Dispatch();
      failures.insert(failures.end(), failures_.begin(), failures_.end());
      failures_.clear();
      if (tasks_.empty()) done_cv_.notify_all();
    }
    DeliverFailures(failures);
  }

  // "pool worker ForkPoolWorker-3 (pid 123) was killed by SIGKILL".
  static std::string WorkerEnded(const Worker& w) {
    std::optional<int> code = w.process.exitcode();
    std::string how = !code       ? "ended"
                      : *code < 0 ? "was killed by " + SignalName(-*code)
                                  : absl::StrCat("exited with code ", *code);
    return absl::StrCat("pool worker ", w.process.name(), " (pid ", w.pid, ") ",
                        how);
  }

  // Why the task `running` on the dead worker `w` failed, and what the pool
  // did about it (`replaced`: a new worker is being started). mu_ held.
  std::string DescribeDeath(const Worker& w, uint64_t running,
                            Clock::duration limit, bool replaced) const {
    if (state_ == State::kTerminate) {
      return absl::StrCat("the pool was terminated while this task ran: ",
                          WorkerEnded(w), "; no worker replaces it");
    }
    std::string what;
    if (w.timed_out != 0 && w.timed_out == running) {
      what = absl::StrCat("the task exceeded the pool's task_timeout of ",
                          std::chrono::duration<double>(limit).count(),
                          " s, so the pool killed its worker (", WorkerEnded(w),
                          ")");
    } else if (w.terminated != 0 && w.terminated == running) {
      what = absl::StrCat(
          "the call was terminated (AsyncResult::terminate()), which killed "
          "its worker (",
          WorkerEnded(w), ")");
    } else {
      what = WorkerEnded(w) + " while running this task";
    }
    if (replaced) return what + "; a new worker is started in its place";
    if (!broken_.empty()) {
      return what + "; the pool no longer replaces workers: " + broken_;
    }
    return what + "; the pool is closing, so no worker replaces it";
  }

  // The worker-handler thread: notices dead workers, replaces them, enforces
  // task_timeout.
  void HandleWorkers() {
    const Clock::duration limit =
        options_.task_timeout ? std::chrono::duration_cast<Clock::duration>(
                                    *options_.task_timeout)
                              : Clock::duration::zero();
    for (;;) {
      std::vector<pollfd> fds;
      std::vector<Worker*> watched;
      int timeout_ms = -1;
      {
        std::lock_guard<std::mutex> lock(mu_);
        bool live = false;
        for (auto& w : workers_) {
          if (w->dead) continue;
          live = true;
          fds.push_back({w->process.sentinel(), POLLIN, 0});
          watched.push_back(w.get());
          if (limit > Clock::duration::zero()) {
            uint64_t seq = slots_[w->slot].seq.load(std::memory_order_acquire);
            if (seq != 0 && w->timed_out == 0) {
              int64_t started =
                  slots_[w->slot].started_ns.load(std::memory_order_relaxed);
              int64_t left_ns = started +
                                std::chrono::nanoseconds(limit).count() -
                                MonotonicNanos();
              if (left_ns <= 0) {
                w->timed_out = seq;
                w->process.kill();
              } else {
                int ms = static_cast<int>(left_ns / 1000000) + 1;
                timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
              }
            }
          }
        }
        if (stopping_ && !live) break;
        if (state_ == State::kTerminate) {
          if (Clock::now() >= terminate_deadline_) {
            for (auto& w : workers_)
              if (!w->dead) w->process.kill();
          } else {
            timeout_ms = 50;
          }
        }
        if (limit > Clock::duration::zero()) {
          // Tasks may start at any moment; look again soon.
          int ms =
              static_cast<int>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(limit)
                      .count() /
                  4) +
              1;
          timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
        }
      }
      fds.push_back({wake_fd_, POLLIN, 0});
      int n = poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0 && errno != EINTR) break;
      if (fds.back().revents & POLLIN) {
        uint64_t value;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &value, sizeof value);
      }
      for (size_t i = 0; i < watched.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Worker* w = watched[i];
        uint64_t running;
        std::string how;
        bool replace;
        int slot;
        {
          std::lock_guard<std::mutex> lock(mu_);
          w->process.join();
          w->dead = true;
          running = slots_[w->slot].seq.exchange(0);
          slot = w->slot;
          if (slots_[w->slot].ready.load() != 0) {
            startup_failures_ = 0;
          } else if (++startup_failures_ >= 5 && broken_.empty()) {
            // Workers die before they can take a task (an initializer that
            // fails, a program that cannot start): replacing them would go
            // on for ever while every task waits.
            broken_ =
                "the pool's workers keep dying before they start (the "
                "last: " +
                WorkerEnded(*w) + "); check the initializer";
            tasks_.ForEach([&](Task& task) {
              failures_.push_back(
                  {task.job, task.chunk,
                   std::make_exception_ptr(ProcessError(broken_))});
            });
            tasks_.Clear();
            pending_.clear();
            done_cv_.notify_all();
            NotifyResultThread();
          }
          replace = !stopping_ && broken_.empty() &&
                    (state_ == State::kRun || !tasks_.empty());
          how = DescribeDeath(*w, running, limit, replace);
        }
        // After every result the worker wrote: its death comes in order.
        PostResult(kWorkerDied, w->id, running, how);
        if (!replace) continue;
        std::unique_ptr<Worker> fresh;
        try {
          fresh = StartWorker(slot);
        } catch (const std::exception& e) {
          std::cerr << "The pool could not replace a worker: " << e.what()
                    << std::endl;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) SendExit(*fresh);
        workers_.push_back(std::move(fresh));
        Dispatch();
        NotifyResultThread();
      }
    }
  }

  // Ends both threads, then fails whatever never completed.
  void Finish(const char* why) {
    if (worker_thread_.joinable()) worker_thread_.join();
    PostResult(kStopHandler, 0, 0, {});
    // terminate() from a callback runs here on the result thread, which
    // stops once the callback returns; the destructor joins it.
    if (result_thread_.joinable() && !OnResultThread()) result_thread_.join();
    std::vector<Failure> failures;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      tasks_.ForEach([&](Task& task) {
        failures.push_back(
            {task.job, task.chunk, std::make_exception_ptr(ProcessError(why))});
      });
      tasks_.Clear();
      pending_.clear();
      failures.insert(failures.end(), failures_.begin(), failures_.end());
      failures_.clear();
      handoff_.clear();
      workers_.clear();
      done_cv_.notify_all();
    }
    DeliverFailures(failures);
    // Callers waiting in apply() or map() see their outcome.
    NotifyCallers();
    Ring(ResultsBell());
  }

  bool OnResultThread() const { return t_result_thread_of == this; }

  void Release() {
    if (slots_ != nullptr) munmap(slots_, slots_size_);
    slots_ = nullptr;
    if (slots_fd_ >= 0) ::close(slots_fd_);
    slots_fd_ = -1;
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = -1;
  }

  const PoolOptions options_;
  const int processes_;
  const Context* context_;
  std::string method_;
  bool forked_ = false;
  PickledCall initializer_;
  std::shared_ptr<ShmRing> results_;
  int slots_fd_ = -1;
  size_t slots_size_ = 0;
  WorkerSlot* slots_ = nullptr;
  int wake_fd_ = -1;

  mutable std::mutex mu_;
  std::condition_variable done_cv_;
  State state_ = State::kRun;
  bool stopping_ = false;
  bool finished_ = false;
  int startup_failures_ = 0;  // workers in a row that died before starting
  std::string broken_;        // why the pool gave up replacing workers
  Clock::time_point terminate_deadline_;
  uint64_t last_worker_id_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  TaskTable tasks_;
  std::deque<uint64_t> pending_;
  std::vector<Failure> failures_;  // found under the lock, delivered after

  // Reading results (see Reader).
  std::condition_variable results_cv_;  // the result thread waits for work
  std::condition_variable helper_cv_;   // callers wait for the reader's role
  Reader reader_ = Reader::kNone;
  int helpers_ = 0;  // threads in a synchronous call
  int control_ = 0;  // the pool's own frames posted and not yet handled
  std::deque<std::string> handoff_;  // frames a caller left to the thread
  // The reader's.
  std::vector<std::string> batch_;
  std::vector<Delivery> delivered_;

  std::thread result_thread_;
  std::thread worker_thread_;
};

// ---------------------------------------------------------------------------
// Worker threads.

class ThreadPoolCore final : public PoolCore {
 public:
  explicit ThreadPoolCore(PoolOptions options)
      : processes_(CheckProcesses(options)) {
    if (options.maxtasksperchild || options.context != nullptr ||
        options.task_timeout) {
      throw ValueError(
          "ThreadPool takes processes and initializer only; "
          "maxtasksperchild, context and task_timeout need worker processes "
          "(Pool)");
    }
    Initializer init = options.initializer;
    for (int i = 0; i < processes_; ++i) {
      workers_.emplace_back([this, init] {
        if (init) {
          try {
            init();
          } catch (const std::exception& e) {
            std::cerr << "Exception in a ThreadPool initializer: "
                      << PythonNameOf(e) << ": " << e.what() << std::endl;
          }
        }
        Work();
      });
    }
    result_thread_ = std::thread([this] { HandleResults(); });
  }
  ~ThreadPoolCore() override {
    terminate();
    // After a terminate() called by a callback, the result thread ends on
    // its own.
    if (result_thread_.joinable()) result_thread_.join();
  }

  bool threads() const override { return true; }
  bool forked() const override { return true; }
  int processes() const override { return processes_; }
  void CheckRunning() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kRun)
      throw ValueError("Pool not running; create a new pool for more tasks");
  }

  void Submit(const std::shared_ptr<JobBase>& job, const FunctionRef&,
              std::vector<Chunk> chunks) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_ != State::kRun)
        throw ValueError("Pool not running; create a new pool for more tasks");
      for (Chunk& c : chunks) {
        tasks_.push_back({job, c.index, std::move(c.run)});
        ++unfinished_;
      }
    }
    task_cv_.notify_all();
  }

  void close() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kRun) state_ = State::kClose;
  }

  void terminate() override {
    std::deque<Task> dropped;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      state_ = State::kTerminate;
      dropped.swap(tasks_);
      for (Task& t : dropped) {
        std::shared_ptr<JobBase> job = t.job;
        uint32_t chunk = t.chunk;
        results_.push_back([job, chunk] {
          job->Fail(chunk, std::make_exception_ptr(ProcessError(
                               "the pool was terminated before the task "
                               "completed")));
        });
      }
    }
    task_cv_.notify_all();
    result_cv_.notify_all();
    Finish();
  }

  void join() override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (state_ == State::kRun) {
        throw ValueError(
            "Pool is still running; call close() or terminate() before "
            "join()");
      }
      if (finished_) return;
    }
    Finish();
  }

 private:
  struct Task {
    std::shared_ptr<JobBase> job;
    uint32_t chunk;
    std::function<std::function<void()>()> run;
  };

  void Work() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        task_cv_.wait(lock, [&] {
          return !tasks_.empty() || state_ == State::kTerminate ||
                 (state_ == State::kClose && tasks_.empty());
        });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
        if (!task.job->TryStart()) {
          // A failed map's chunk, a cancelled call: not worth running.
          if (--unfinished_ == 0) done_cv_.notify_all();
          continue;
        }
      }
      std::function<void()> deliver = task.run();
      {
        std::lock_guard<std::mutex> lock(mu_);
        results_.push_back(std::move(deliver));
      }
      result_cv_.notify_one();
    }
  }

  void HandleResults() {
    t_result_thread_of = this;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      result_cv_.wait(lock, [&] { return !results_.empty() || stop_results_; });
      if (results_.empty()) return;
      std::function<void()> deliver = std::move(results_.front());
      results_.pop_front();
      lock.unlock();
      deliver();
      deliver = nullptr;
      lock.lock();
      if (--unfinished_ == 0) done_cv_.notify_all();
    }
  }

  void Finish() {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (state_ != State::kTerminate)
        done_cv_.wait(lock, [&] { return unfinished_ == 0; });
    }
    task_cv_.notify_all();
    std::lock_guard<std::mutex> finish(finish_mu_);
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_results_ = true;
    }
    result_cv_.notify_all();
    // terminate() from a callback runs on the result thread, which stops
    // once the callback returns; the destructor joins it.
    if (result_thread_.joinable() && t_result_thread_of != this)
      result_thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
  }

  const int processes_;
  mutable std::mutex mu_;
  std::mutex finish_mu_;
  std::condition_variable task_cv_;
  std::condition_variable result_cv_;
  std::condition_variable done_cv_;
  State state_ = State::kRun;
  bool stop_results_ = false;
  bool finished_ = false;
  size_t unfinished_ = 0;
  std::deque<Task> tasks_;
  std::deque<std::function<void()>> results_;
  std::vector<std::thread> workers_;
  std::thread result_thread_;
};

}  // namespace
}  // namespace internal

Pool::Pool(PoolOptions options)
    : PoolApi(std::make_unique<internal::ProcessPoolCore>(std::move(options))) {
}
Pool::~Pool() {
  Unlink();
  core_->terminate();
}

ThreadPool::ThreadPool(PoolOptions options)
    : PoolApi(std::make_unique<internal::ThreadPoolCore>(std::move(options))) {}
ThreadPool::~ThreadPool() {
  Unlink();
  core_->terminate();
}

}  // namespace multiprocessing::pool
