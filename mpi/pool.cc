#include "mpi/pool.h"

#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <iostream>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "errors/errors.h"
#include "mpi/internal/wire.h"
#include "pool/internal/core.h"
#include "process/process.h"
#include "reduction/registry.h"

namespace multiprocessing::mpi {
namespace {

using internal::Reader;
using internal::Writer;
using pool::internal::Chunk;
using pool::internal::FunctionRef;
using pool::internal::JobBase;
using pool::internal::PickledCall;
using Clock = std::chrono::steady_clock;

// Message tags on a pool's communicator.
enum Tag : int {
  kTagTasks = 1,      // master -> worker: a batch of chunks
  kTagResults = 2,    // worker -> master: a batch of outcomes
  kTagControl = 3,    // master -> worker: start a pool, exit
  kTagHello = 4,      // worker -> master: pid and host, after a start
  kTagHeartbeat = 5,  // worker -> master: still alive (no payload)
  kTagBye = 6,        // worker -> master: leaving
};
enum Control : uint32_t { kStart = 1, kExit = 2 };
enum Outcome : uint8_t { kOk = 1, kError = 2 };

// How often a worker says it is alive, and how often the master checks.
constexpr auto kHeartbeatEvery = std::chrono::milliseconds(250);
constexpr auto kWatchEvery = std::chrono::milliseconds(50);

[[noreturn]] void Fatal(const char* what, int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw ProcessError(absl::StrCat(
      what, " failed: ", std::string(text, static_cast<size_t>(len))));
}
void Check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) Fatal(what, rc);
}

std::string HostName() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

bool ProcessGone(int pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

// Waits for MPI request `req` without blocking in MPI: false if `deadline`
// passed or `give_up()` says the peer is gone.
template <class GiveUp>
bool TestUntil(MPI_Request* req, Clock::time_point deadline, GiveUp give_up) {
  for (int i = 0;; ++i) {
    int done = 0;
    if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    if (Clock::now() >= deadline || give_up()) return false;
    if (i > 100) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// ---------------------------------------------------------------------------
// Process-wide state: the role, the static mode's communicator and ranks.

struct World {
  std::mutex mu;
  bool initialized = false;  // by freeze_support (or lazily by a Pool)
  bool we_initialized = false;
  int rank = 0;
  int size = 1;
  MPI_Comm static_comm = MPI_COMM_NULL;  // static mode: a dup of the world
  std::vector<bool> static_dead;         // by rank
  bool static_busy = false;              // one static pool at a time
  uint32_t generation = 0;               // static pools so far
  std::vector<std::string> args;         // argv[1..]
};
World& TheWorld() {
  static World* world = new World;
  return *world;
}

void RunWorker(MPI_Comm comm, bool spawned);

// At exit on the master: static workers leave, then MPI is finalised, unless
// a worker rank died: MPI_Finalize waits for every rank of the job (a PMIx
// fence that Open MPI 4.1 never completes without the dead one), so the
// master then leaves without it, as a process that lost a peer must.
void FinalizeAtExit() {
  World& w = TheWorld();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  bool lost_a_rank = false;
  if (w.static_comm != MPI_COMM_NULL) {
    for (int r = 1; r < w.size; ++r)
      lost_a_rank |= w.static_dead[static_cast<size_t>(r)];
    // The survivors leave without MPI_Finalize too when a rank is lost.
    std::string exit_msg = Writer().u32(kExit).u32(!lost_a_rank).Take();
    for (int r = 1; r < w.size; ++r) {
      if (w.static_dead[static_cast<size_t>(r)]) continue;
      MPI_Request req;
      MPI_Isend(exit_msg.data(), static_cast<int>(exit_msg.size()), MPI_BYTE, r,
                kTagControl, w.static_comm, &req);
      if (!TestUntil(&req, Clock::now() + std::chrono::seconds(10),
                     [] { return false; })) {
        std::cerr << "multiprocessing.mpi: worker rank " << r
                  << " did not take its exit message" << std::endl;
        lost_a_rank = true;
      }
    }
  }
  if (!lost_a_rank) MPI_Finalize();
}

void Initialize(int argc, char** argv) {
  World& w = TheWorld();
  std::lock_guard<std::mutex> lock(w.mu);
  if (w.initialized) return;
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    // A singleton (no mpirun) starts its own runtime, which reads this from
    // the environment: without it a worker's death aborts the master too.
    if (getenv("OMPI_COMM_WORLD_SIZE") == nullptr &&
        getenv("PMIX_RANK") == nullptr &&
        getenv("OMPI_MCA_orte_enable_recovery") == nullptr) {
      setenv("OMPI_MCA_orte_enable_recovery", "1", 0);
    }
    int provided = 0;
    Check(
        MPI_Init_thread(argc > 0 ? &argc : nullptr, argc > 0 ? &argv : nullptr,
                        MPI_THREAD_MULTIPLE, &provided),
        "MPI_Init_thread");
    w.we_initialized = true;
  }
  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_MULTIPLE) {
    throw ProcessError(
        "this MPI library does not provide MPI_THREAD_MULTIPLE, which the pool "
        "needs (its result thread and the caller both call MPI)");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size);
  for (int i = 1; i < argc; ++i) w.args.emplace_back(argv[i]);
  w.initialized = true;

  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  if (parent != MPI_COMM_NULL) {
    MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
    RunWorker(parent, /*spawned=*/true);  // does not return
  }
  if (w.size > 1) {
    // Collective over the world: every rank is in this call.
    Check(MPI_Comm_dup(MPI_COMM_WORLD, &w.static_comm), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(w.static_comm, MPI_ERRORS_RETURN);
    w.static_dead.assign(static_cast<size_t>(w.size), false);
    if (w.rank != 0) RunWorker(w.static_comm, /*spawned=*/false);
  }
  std::atexit(FinalizeAtExit);
}

// ---------------------------------------------------------------------------
// The worker.

class WorkerLoop {
 public:
  WorkerLoop(MPI_Comm comm, bool spawned) : comm_(comm), spawned_(spawned) {}

  // Serves until told to exit; returns whether to finalise MPI (not when
  // the master or a fellow worker was lost: MPI_Finalize would wait for it).
  bool Run() {
    bool finalize = false;
    heartbeat_ = std::thread([this] { Heartbeat(); });
    std::string buffer;
    for (;;) {
      MPI_Status status;
      if (!Receive(&buffer, &status)) break;  // the master is gone
      if (status.MPI_TAG == kTagControl) {
        Reader r(buffer);
        uint32_t kind = r.u32();
        if (kind == kExit) {
          finalize = r.u32() != 0;
          break;
        }
        if (kind == kStart) Start(r);
      } else if (status.MPI_TAG == kTagTasks) {
        RunTasks(buffer);
      }
    }
    stop_ = true;
    heartbeat_.join();
    if (spawned_) {
      MPI_Send(nullptr, 0, MPI_BYTE, 0, kTagBye, comm_);
      // The master disconnects too, unless it lost a worker.
      if (finalize) MPI_Comm_disconnect(&comm_);
    }
    return finalize;
  }

 private:
  // Waits for the master's next message: polls briefly, then naps, checking
  // that a master on this host still lives.
  bool Receive(std::string* buffer, MPI_Status* status) {
    auto last_check = Clock::now();
    for (int idle = 0;; ++idle) {
      int flag = 0;
      MPI_Message msg;
      {
        std::lock_guard<std::mutex> lock(mpi_mu_);
        if (MPI_Improbe(0, MPI_ANY_TAG, comm_, &flag, &msg, status) !=
            MPI_SUCCESS)
          return false;
        if (flag) {
          int count = 0;
          MPI_Get_count(status, MPI_BYTE, &count);
          buffer->resize(static_cast<size_t>(count));
          return MPI_Mrecv(buffer->data(), count, MPI_BYTE, &msg, status) ==
                 MPI_SUCCESS;
        }
      }
      if (idle < 2000) continue;
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::min(1000, (idle - 2000) * 2 + 20)));
      if (master_pid_ != 0 && Clock::now() - last_check > kWatchEvery) {
        last_check = Clock::now();
        if (ProcessGone(master_pid_)) return false;
      }
    }
  }

  void Heartbeat() {
    while (!stop_) {
      std::this_thread::sleep_for(kHeartbeatEvery);
      if (stop_) break;
      MPI_Request req;
      {
        std::lock_guard<std::mutex> lock(mpi_mu_);
        MPI_Isend(nullptr, 0, MPI_BYTE, 0, kTagHeartbeat, comm_, &req);
      }
      // A master that stopped reading is gone or going: never block on it.
      int done = 0;
      while (!stop_ && !done) {
        {
          std::lock_guard<std::mutex> lock(mpi_mu_);
          MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        }
        if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (!done) {
        std::lock_guard<std::mutex> lock(mpi_mu_);
        MPI_Cancel(&req);
        MPI_Request_free(&req);
      }
    }
  }

  void Start(Reader& r) {
    generation_ = r.u32();
    int pid = static_cast<int>(r.u32());
    std::string host(r.str());
    master_pid_ = host == HostName() ? pid : 0;
    std::string function(r.str()), runner(r.str()), args(r.str());
    std::string hello =
        Writer().u32(static_cast<uint32_t>(getpid())).str(HostName()).Take();
    {
      std::lock_guard<std::mutex> lock(mpi_mu_);
      MPI_Send(hello.data(), static_cast<int>(hello.size()), MPI_BYTE, 0,
               kTagHello, comm_);
    }
    functions_.clear();
    if (function.empty()) return;
    try {
      const reduction::RegisteredFunction* f =
          reduction::FindFunction(function);
      pool::internal::RunnerFn run = pool::internal::FindRunner(runner);
      if (f == nullptr || run == nullptr) {
        throw AttributeError(
            absl::StrCat("the initializer '", function,
                         "' is not registered in this worker"));
      }
      run(f->address, args);
    } catch (const std::exception& e) {
      std::cerr << "multiprocessing.mpi: the pool's initializer failed: "
                << PythonNameOf(e) << ": " << e.what() << std::endl;
    }
  }

  struct Function {
    pool::internal::RunnerFn runner = nullptr;
    const void* address = nullptr;
    std::string missing;  // why it cannot run, if it cannot
  };

  void RunTasks(const std::string& message) {
    Reader r(message);
    uint32_t generation = r.u32();
    uint32_t defs = r.u32();
    uint32_t count = r.u32();
    for (uint32_t i = 0; i < defs; ++i) {
      uint32_t id = r.u32();
      std::string runner(r.str()), name(r.str());
      if (functions_.size() <= id) functions_.resize(id + 1);
      Function& f = functions_[id];
      f.runner = pool::internal::FindRunner(runner);
      const reduction::RegisteredFunction* fn = reduction::FindFunction(name);
      f.address = fn ? fn->address : nullptr;
      if (f.runner == nullptr || fn == nullptr) {
        f.missing = absl::StrCat(
            "the function '", name,
            "' is not registered in this worker; the workers must run the "
            "same program, with MP_REGISTER_FUNCTION(",
            name, ")");
      }
    }
    auto first_unsent = Clock::now();
    for (uint32_t i = 0; i < count; ++i) {
      uint64_t seq = r.u64();
      uint32_t id = r.u32();
      std::string_view payload = r.str();
      if (out_count_ == 0) first_unsent = Clock::now();
      const auto started = Clock::now();
      size_t header = out_.size();
      Writer w(&out_);
      w.u64(seq).u8(kOk).i64(0);
      size_t length_at = out_.size();
      w.u64(0);
      size_t body = out_.size();
      try {
        if (id >= functions_.size() || functions_[id].runner == nullptr) {
          throw AttributeError(id < functions_.size()
                                   ? functions_[id].missing
                                   : "a task named an unknown function");
        }
        out_ += functions_[id].runner(functions_[id].address, payload);
      } catch (const SystemExit&) {
        throw;
      } catch (const std::exception& e) {
        out_.resize(body);
        out_[header + 8] = static_cast<char>(kError);
        out_ += PythonNameOf(e);
        out_ += '\0';
        out_ += e.what();
      } catch (...) {
        out_.resize(body);
        out_[header + 8] = static_cast<char>(kError);
        out_ += "RemoteError";
        out_ += '\0';
        out_ += "the task threw an exception that is not a std::exception";
      }
      int64_t elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            Clock::now() - started)
                            .count();
      uint64_t length = out_.size() - body;
      std::memcpy(out_.data() + header + 9, &elapsed, sizeof elapsed);
      std::memcpy(out_.data() + length_at, &length, sizeof length);
      ++out_count_;
      // Results go back in batches, but never wait long: the master refills
      // this worker as they arrive.
      if (i + 1 == count || out_count_ >= 32 || out_.size() >= (1 << 20) ||
          Clock::now() - first_unsent > std::chrono::microseconds(200)) {
        Flush(generation);
      }
    }
  }

  void Flush(uint32_t generation) {
    if (out_count_ == 0) return;
    std::string message = Writer().u32(generation).u32(out_count_).Take();
    message += out_;
    std::lock_guard<std::mutex> lock(mpi_mu_);
    MPI_Send(message.data(), static_cast<int>(message.size()), MPI_BYTE, 0,
             kTagResults, comm_);
    out_.clear();
    out_count_ = 0;
  }

  MPI_Comm comm_;
  const bool spawned_;
  // The heartbeat thread and this one take turns in MPI: Open MPI's
  // thread-multiple paths are its least used, and a heartbeat is rare enough
  // that taking turns costs nothing.
  std::mutex mpi_mu_;
  std::thread heartbeat_;
  std::atomic<bool> stop_{false};
  int master_pid_ = 0;
  uint32_t generation_ = 0;
  std::vector<Function> functions_;
  std::string out_;
  uint32_t out_count_ = 0;
};

void RunWorker(MPI_Comm comm, bool spawned) {
  int code = 0;
  bool finalize = false;
  try {
    finalize = WorkerLoop(comm, spawned).Run();
  } catch (const SystemExit& e) {
    code = e.code();
  } catch (const std::exception& e) {
    std::cerr << "multiprocessing.mpi worker: " << PythonNameOf(e) << ": "
              << e.what() << std::endl;
    code = 1;
  }
  std::fflush(nullptr);
  std::cout.flush();
  std::cerr.flush();
  if (code == 0 && finalize) MPI_Finalize();
  _exit(code);
}

// ---------------------------------------------------------------------------
// The master.

class MpiCore final : public pool::internal::PoolCore {
 public:
  explicit MpiCore(const PoolOptions& options) : options_(options) {
    World& world = TheWorld();
    bool is_static = world.size > 1;
    if (is_static) {
      StartStatic(world);
    } else {
      StartDynamic(world);
    }
    service_ = std::thread([this] { Serve(); });
  }

  ~MpiCore() override {
    terminate();
    if (service_.joinable()) service_.join();
  }

  bool threads() const override { return false; }
  bool forked() const override { return false; }
  int processes() const override { return static_cast<int>(workers_.size()); }

  void CheckRunning() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_) throw ProcessError(broken_why_);
    if (state_ != State::kRun) {
      throw ValueError("Pool not running; create a new pool for more tasks");
    }
  }

  void Submit(const std::shared_ptr<JobBase>& job, const FunctionRef& function,
              std::vector<Chunk> chunks) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_ == State::kRun && !broken_) {
        uint32_t id = FunctionId(function);
        for (Chunk& c : chunks) {
          if (c.payload.size() > static_cast<size_t>(INT_MAX) - 4096) {
            failed_.push_back(
                {job, c.index,
                 std::make_exception_ptr(ValueError(absl::StrCat(
                     "a chunk's arguments pickle to ", c.payload.size(),
                     " bytes; an MPI message holds at most 2 GiB: use a "
                     "smaller chunksize")))});
            continue;
          }
          queue_.push_back({job, c.index, id, std::move(c.payload)});
        }
      } else {
        std::string why = broken_ ? broken_why_ : "Pool not running";
        for (Chunk& c : chunks) {
          failed_.push_back(
              {job, c.index, std::make_exception_ptr(ProcessError(why))});
        }
      }
    }
    cv_.notify_all();
  }

  void close() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_ == State::kRun) state_ = State::kClose;
    }
    cv_.notify_all();
  }

  void terminate() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_ == State::kTerminate) return;
      state_ = State::kTerminate;
    }
    cv_.notify_all();
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return finished_; });
  }

  void join() override {
    std::unique_lock<std::mutex> lock(mu_);
    if (state_ == State::kRun) {
      throw ValueError(
          "Pool is still running; call close() or terminate() before join()");
    }
    done_cv_.wait(lock, [&] { return finished_; });
  }

  void BeginHelp() override {
    std::lock_guard<std::mutex> lock(mu_);
    ++helpers_;
  }
  void HelpUntil(const std::function<bool()>& ready) override {
    for (int idle = 0; !ready();) {
      bool did = false;
      if (drive_mu_.try_lock()) {
        did = Progress(/*service=*/false);
        drive_mu_.unlock();
      }
      if (did) {
        idle = 0;
      } else {
        Nap(idle++);
      }
    }
  }
  void EndHelp() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --helpers_;
    }
    cv_.notify_all();
  }

 private:
  enum class State { kRun, kClose, kTerminate };
  struct Queued {
    std::shared_ptr<JobBase> job;
    uint32_t chunk;
    uint32_t function;
    std::string payload;
  };
  struct InFlight {
    std::shared_ptr<JobBase> job;
    uint32_t chunk;
  };
  struct Failed {
    std::shared_ptr<JobBase> job;
    uint32_t chunk;
    std::exception_ptr error;
  };
  struct Worker {
    int rank = 0;
    int pid = 0;
    std::string host;
    bool local = false;
    bool alive = true;
    bool said_hello = false;
    bool said_bye = false;
    bool exit_sent = false;
    absl::flat_hash_map<uint64_t, InFlight> inflight;
    std::vector<bool> known;  // function ids this worker was told about
    double avg_ns = 0;        // recent task time, for how much to send
    Clock::time_point last_heard;
  };
  struct Send {
    MPI_Request req;
    std::string buffer;
    int worker;
  };

  // --- start-up (the constructor's thread; no service thread yet)

  void StartStatic(World& world) {
    {
      std::lock_guard<std::mutex> lock(world.mu);
      if (world.static_busy) {
        throw ValueError(
            "under mpirun -n N the worker ranks serve one Pool at a time; "
            "close or terminate the other pool first");
      }
      std::vector<int> ranks;
      for (int r = 1; r < world.size; ++r) {
        if (!world.static_dead[r]) ranks.push_back(r);
      }
      int want = options_.processes.value_or(static_cast<int>(ranks.size()));
      if (want < 1) throw ValueError("Number of processes must be at least 1");
      if (want > static_cast<int>(ranks.size())) {
        throw ValueError(absl::StrCat("processes=", want,
                                      " but mpirun started only ", ranks.size(),
                                      " live worker ranks; run mpirun -n ",
                                      want + 1, " or ask for fewer"));
      }
      world.static_busy = true;
      generation_ = ++world.generation;
      comm_ = world.static_comm;
      for (int i = 0; i < want; ++i) AddWorker(ranks[i]);
    }
    Greet();
  }

  void StartDynamic(World& world) {
    int n = options_.processes.value_or(0);
    if (!options_.processes) {
      int* universe = nullptr;
      int flag = 0;
      MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_UNIVERSE_SIZE, &universe, &flag);
      n = flag && universe && *universe > 1 ? *universe - 1 : cpu_count();
    }
    if (n < 1) throw ValueError("Number of processes must be at least 1");
    std::string command = options_.command;
    if (command.empty()) {
      char exe[4096];
      ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
      if (len <= 0) throw ProcessError("cannot read /proc/self/exe");
      command.assign(exe, static_cast<size_t>(len));
    }
    std::vector<std::string> args = options_.args.value_or(world.args);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    MPI_Info info;
    MPI_Info_create(&info);
    if (!options_.host.empty())
      MPI_Info_set(info, "host", options_.host.c_str());
    if (!options_.hostfile.empty())
      MPI_Info_set(info, "hostfile", options_.hostfile.c_str());
    if (options_.oversubscribe && !options_.info.count("map_by"))
      MPI_Info_set(info, "map_by", ":OVERSUBSCRIBE");
    for (const auto& [key, value] : options_.info)
      MPI_Info_set(info, key.c_str(), value.c_str());
    std::vector<int> errors(static_cast<size_t>(n), MPI_SUCCESS);
    int rc = MPI_Comm_spawn(command.c_str(), argv.data(), n, info, 0,
                            MPI_COMM_SELF, &comm_, errors.data());
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) Fatal("MPI_Comm_spawn of the pool's workers", rc);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    spawned_ = true;
    for (int i = 0; i < n; ++i) AddWorker(i);
    Greet();
  }

  void AddWorker(int rank) {
    auto w = std::make_unique<Worker>();
    w->rank = rank;
    w->last_heard = Clock::now();
    workers_.push_back(std::move(w));
  }

  // Starts the pool on every worker and waits for each to report its pid and
  // host (a worker that does not within shutdown_timeout is dead).
  void Greet() {
    PickledCall init;
    if (options_.initializer) init = options_.initializer.Pickled();
    std::string start = Writer()
                            .u32(kStart)
                            .u32(generation_)
                            .u32(static_cast<uint32_t>(getpid()))
                            .str(HostName())
                            .str(init.function)
                            .str(init.runner)
                            .str(init.args)
                            .Take();
    Tell(start, &Worker::said_hello, "did not report");
    size_t alive = 0;
    for (auto& w : workers_) alive += w->alive;
    if (alive == 0) {
      ReleaseStatic();
      throw ProcessError(
          "no MPI worker of the pool started; see the workers' stderr");
    }
  }

  // Sends `message` to every live worker, then waits until each has set
  // `answered` (by its reply) or is found dead; one that does neither within
  // shutdown_timeout is taken for dead ("`how` in time").
  void Tell(const std::string& message, bool Worker::*answered,
            const char* how) {
    const auto deadline = Clock::now() + Seconds(options_.shutdown_timeout);
    for (auto& w : workers_) {
      if (!w->alive) continue;
      MPI_Request req;
      MPI_Isend(message.data(), static_cast<int>(message.size()), MPI_BYTE,
                w->rank, kTagControl, comm_, &req);
      if (!TestUntil(&req, deadline, [&] { return Gone(*w); })) {
        MarkDead(*w, absl::StrCat(how, " in time (its message was not taken)"));
      }
    }
    std::string buffer;
    for (;;) {
      bool waiting = false;
      for (auto& w : workers_) waiting |= w->alive && !((*w).*answered);
      if (!waiting) break;
      if (Clock::now() >= deadline) {
        for (auto& w : workers_) {
          if (w->alive && !((*w).*answered))
            MarkDead(*w, absl::StrCat(how, " in time"));
        }
        break;
      }
      if (!ReceiveOne(&buffer)) {
        Watch();
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }

  static Clock::duration Seconds(std::chrono::duration<double> d) {
    return std::chrono::duration_cast<Clock::duration>(d);
  }

  void ReleaseStatic() {
    if (spawned_) return;
    World& world = TheWorld();
    std::lock_guard<std::mutex> lock(world.mu);
    for (auto& w : workers_) {
      if (!w->alive) world.static_dead[static_cast<size_t>(w->rank)] = true;
    }
    world.static_busy = false;
  }

  uint32_t FunctionId(const FunctionRef& f) {
    std::string key = f.runner + std::string(1, '\0') + f.name;
    auto [it, added] = function_ids_.try_emplace(key, functions_.size());
    if (added) functions_.push_back(f);
    return it->second;
  }

  // --- progress: one thread at a time (drive_mu_), the service thread or a
  // caller waiting in apply() / map().

  bool Progress(bool service) {
    bool did = false;
    {
      std::vector<Failed> failed;
      {
        std::lock_guard<std::mutex> lock(mu_);
        failed.swap(failed_);
      }
      for (auto& f : failed) Fail(f.job, f.chunk, f.error, service);
      did |= !failed.empty();
    }
    did |= Dispatch();
    did |= TestSends();
    std::string& buffer = receive_buffer_;
    for (int i = 0; i < 64 && ReceiveOne(&buffer, service); ++i) did = true;
    if (Clock::now() >= next_watch_) {
      Watch();
      next_watch_ = Clock::now() + kWatchEvery;
    }
    if (service) did |= RunDeferred();
    return did;
  }

  // How many chunks a worker may hold: enough to cover about 0.5 ms of its
  // recent task times, so that tiny tasks travel in batches, at most 256; one
  // while nothing is measured yet or tasks are slow, so that a slow task never
  // holds up another behind it.
  static size_t Limit(const Worker& w) {
    if (w.avg_ns <= 0) return 1;
    double n = 500'000.0 / w.avg_ns;
    return static_cast<size_t>(std::clamp(n, 1.0, 256.0));
  }

  bool Dispatch() {
    bool did = false;
    for (size_t k = 0; k < workers_.size(); ++k) {
      Worker& w = *workers_[(next_worker_ + k) % workers_.size()];
      if (!w.alive || w.exit_sent) continue;
      size_t limit = Limit(w);
      if (w.inflight.size() >= limit) continue;
      std::vector<Queued> take;
      {
        std::lock_guard<std::mutex> lock(mu_);
        size_t bytes = 0;
        while (!queue_.empty() && w.inflight.size() + take.size() < limit &&
               (take.empty() ||
                bytes + queue_.front().payload.size() < (4 << 20))) {
          bytes += queue_.front().payload.size();
          take.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      if (take.empty()) break;
      SendTasks(w, take);
      did = true;
    }
    if (!workers_.empty()) next_worker_ = (next_worker_ + 1) % workers_.size();
    return did;
  }

  void SendTasks(Worker& w, std::vector<Queued>& take) {
    std::vector<uint32_t> defs;
    for (const Queued& q : take) {
      if (w.known.size() <= q.function) w.known.resize(q.function + 1);
      if (!w.known[q.function]) {
        w.known[q.function] = true;
        defs.push_back(q.function);
      }
    }
    size_t size = 12;
    for (const Queued& q : take) size += 20 + q.payload.size();
    Send& s = sends_.emplace_back();
    s.worker = w.rank;
    s.buffer.reserve(size + 64 * defs.size());
    Writer m(&s.buffer);
    m.u32(generation_).u32(static_cast<uint32_t>(defs.size()));
    m.u32(static_cast<uint32_t>(take.size()));
    for (uint32_t id : defs) {
      std::lock_guard<std::mutex> lock(mu_);
      m.u32(id).str(functions_[id].runner).str(functions_[id].name);
    }
    for (Queued& q : take) {
      uint64_t seq = ++seq_;
      m.u64(seq).u32(q.function).str(q.payload);
      w.inflight.emplace(seq, InFlight{std::move(q.job), q.chunk});
    }
    int rc = MPI_Isend(s.buffer.data(), static_cast<int>(s.buffer.size()),
                       MPI_BYTE, w.rank, kTagTasks, comm_, &s.req);
    if (rc != MPI_SUCCESS) {
      sends_.pop_back();
      MarkDead(w, "could not be sent its tasks");
    }
  }

  bool TestSends() {
    bool did = false;
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      MPI_Test(&it->req, &done, MPI_STATUS_IGNORE);
      if (done) {
        it = sends_.erase(it);
        did = true;
      } else {
        ++it;
      }
    }
    return did;
  }

  Worker* FindWorker(int rank) {
    for (auto& w : workers_) {
      if (w->rank == rank) return w.get();
    }
    return nullptr;
  }

  // Receives and handles one message if one is there.
  bool ReceiveOne(std::string* buffer, bool service = true) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status status;
    if (MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &msg, &status) !=
            MPI_SUCCESS ||
        !flag)
      return false;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    buffer->resize(static_cast<size_t>(count));
    if (MPI_Mrecv(buffer->data(), count, MPI_BYTE, &msg, &status) !=
        MPI_SUCCESS)
      return true;
    Worker* w = FindWorker(status.MPI_SOURCE);
    if (w == nullptr || !w->alive) return true;  // another pool's, or late
    w->last_heard = Clock::now();
    try {
      Handle(*w, status.MPI_TAG, *buffer, service);
    } catch (const std::exception& e) {
      MarkDead(*w, absl::StrCat("sent a malformed message (", e.what(), ")"));
    }
    return true;
  }

  void Handle(Worker& w, int tag, const std::string& message, bool service) {
    switch (tag) {
      case kTagHello: {
        Reader r(message);
        w.pid = static_cast<int>(r.u32());
        w.host = std::string(r.str());
        w.local = w.host == HostName();
        w.said_hello = true;
        break;
      }
      case kTagBye:
        w.said_bye = true;
        break;
      case kTagResults: {
        Reader r(message);
        if (r.u32() != generation_) break;  // an earlier static pool's
        uint32_t count = r.u32();
        for (uint32_t i = 0; i < count; ++i) {
          uint64_t seq = r.u64();
          uint8_t kind = r.u8();
          int64_t elapsed = r.i64();
          std::string_view payload = r.str();
          auto it = w.inflight.find(seq);
          if (it == w.inflight.end()) continue;
          InFlight task = std::move(it->second);
          w.inflight.erase(it);
          w.avg_ns = w.avg_ns <= 0 ? static_cast<double>(elapsed)
                                   : 0.8 * w.avg_ns + 0.2 * elapsed;
          Deliver(task, kind, payload, service);
        }
        break;
      }
      default:
        break;  // heartbeat
    }
  }

  void Deliver(InFlight& task, uint8_t kind, std::string_view payload,
               bool service) {
    if (kind == kOk) {
      if (!service && task.job->has_callbacks()) {
        // Callbacks run on the service thread, as in pool/.
        std::lock_guard<std::mutex> lock(deferred_mu_);
        deferred_.push_back(
            [job = task.job, chunk = task.chunk, p = std::string(payload)] {
              job->Deliver(chunk, p);
            });
        return;
      }
      task.job->Deliver(task.chunk, payload);
    } else {
      size_t nul = payload.find('\0');
      std::string_view name = payload.substr(0, nul);
      std::string text(nul == std::string_view::npos ? std::string_view()
                                                     : payload.substr(nul + 1));
      Fail(task.job, task.chunk, pool::internal::Rebuild(name, text), service);
    }
  }

  void Fail(const std::shared_ptr<JobBase>& job, uint32_t chunk,
            std::exception_ptr error, bool service) {
    if (!service && job->has_callbacks()) {
      std::lock_guard<std::mutex> lock(deferred_mu_);
      deferred_.push_back([job, chunk, error] { job->Fail(chunk, error); });
      return;
    }
    job->Fail(chunk, error);
  }

  bool RunDeferred() {
    std::vector<std::function<void()>> run;
    {
      std::lock_guard<std::mutex> lock(deferred_mu_);
      run.swap(deferred_);
    }
    for (auto& f : run) f();
    return !run.empty();
  }

  // The watchdog: a worker whose process is gone (this host) or that fell
  // silent (any host) is dead.
  void Watch() {
    const auto now = Clock::now();
    for (auto& w : workers_) {
      if (!w->alive || w->said_bye) continue;
      if (w->local && w->pid > 0 && ProcessGone(w->pid)) {
        MarkDead(*w, absl::StrCat("exited (its process ", w->pid, " is gone)"));
      } else if (now - w->last_heard > Seconds(options_.heartbeat_timeout)) {
        MarkDead(*w, absl::StrCat("was silent for more than ",
                                  options_.heartbeat_timeout.count(),
                                  " s (no heartbeat)"));
      }
    }
  }

  void MarkDead(Worker& w, const std::string& how) {
    if (!w.alive) return;
    w.alive = false;
    any_dead_ = true;
    std::string who = absl::StrCat("MPI worker ", w.rank);
    if (w.pid > 0) absl::StrAppend(&who, " (pid ", w.pid, " on ", w.host, ")");
    auto error = std::make_exception_ptr(
        ProcessError(absl::StrCat(who, " ", how, " while running this task")));
    for (auto& [seq, task] : w.inflight)
      Fail(task.job, task.chunk, error, true);
    w.inflight.clear();
    // Its sends may never complete; they are left to MPI.
    for (auto it = sends_.begin(); it != sends_.end();) {
      if (it->worker == w.rank) {
        abandoned_.splice(abandoned_.end(), sends_, it++);
      } else {
        ++it;
      }
    }
    bool any_alive = false;
    for (auto& x : workers_) any_alive |= x->alive;
    if (!any_alive) {
      std::deque<Queued> lost;
      {
        std::lock_guard<std::mutex> lock(mu_);
        broken_ = true;
        broken_why_ = absl::StrCat(
            "the MPI pool is broken: every worker died (the last, ", who, ", ",
            how, "); create a new pool");
        lost.swap(queue_);
      }
      auto broken = std::make_exception_ptr(ProcessError(broken_why_));
      for (auto& q : lost) Fail(q.job, q.chunk, broken, true);
    }
  }

  static void Nap(int idle) {
    if (idle < 200) return;  // a few hundred polls (tens of microseconds)
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::min(1000, 20 + (idle - 200) * 2)));
  }

  // --- the service thread

  void Serve() {
    int idle = 0;
    for (;;) {
      State state;
      {
        std::unique_lock<std::mutex> lock(mu_);
        // A caller waiting in apply()/map() drives; this thread only naps.
        if (helpers_ > 0 && state_ == State::kRun) {
          cv_.wait_for(lock, std::chrono::milliseconds(1));
          lock.unlock();
          std::lock_guard<std::mutex> drive(drive_mu_);
          RunDeferred();
          continue;
        }
        state = state_;
      }
      bool did;
      {
        std::lock_guard<std::mutex> drive(drive_mu_);
        did = Progress(/*service=*/true);
        if (state != State::kRun && Drained(state)) break;
      }
      if (did) {
        idle = 0;
      } else if (++idle > 200) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::microseconds(
                               std::min(1000, 20 + (idle - 200) * 2)));
      }
    }
    Shutdown();
  }

  // Whether the pool can shut down: after close(), once every task is done;
  // after terminate(), now (the rest fail).
  bool Drained(State state) {
    if (state == State::kClose) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!queue_.empty() || !failed_.empty()) return false;
      for (auto& w : workers_) {
        if (w->alive && !w->inflight.empty()) return false;
      }
      return true;
    }
    return true;
  }

  void Shutdown() {
    std::lock_guard<std::mutex> drive(drive_mu_);
    auto terminated = std::make_exception_ptr(
        ProcessError("the pool was terminated before the task completed"));
    std::deque<Queued> lost;
    std::vector<Failed> failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      lost.swap(queue_);
      failed.swap(failed_);
    }
    for (auto& f : failed) Fail(f.job, f.chunk, f.error, true);
    for (auto& q : lost) Fail(q.job, q.chunk, terminated, true);
    for (auto& w : workers_) {
      if (!w->alive) continue;
      if (!w->inflight.empty() && spawned_ && w->local && w->pid > 0) {
        // terminate(): a busy worker on this host is stopped now.
        kill(w->pid, SIGKILL);
        MarkDead(*w, "was killed by terminate()");
        continue;
      }
      for (auto& [seq, task] : w->inflight)
        Fail(task.job, task.chunk, terminated, true);
      w->inflight.clear();
    }
    RunDeferred();
    if (spawned_) {
      // Dynamic workers leave: exit, then wait for their goodbye.
      for (auto& w : workers_) w->exit_sent = true;
      Tell(Writer().u32(kExit).u32(!any_dead_).Take(), &Worker::said_bye,
           "did not leave");
      // Disconnecting waits for every member: only when all are there.
      if (any_dead_) {
        MPI_Comm_free(&comm_);
      } else {
        MPI_Comm_disconnect(&comm_);
      }
    }
    ReleaseStatic();
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
    }
    done_cv_.notify_all();
  }

  bool Gone(const Worker& w) {
    return w.local && w.pid > 0 && ProcessGone(w.pid);
  }

  const PoolOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  bool spawned_ = false;
  uint32_t generation_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;  // drive_mu_ after start-up
  std::thread service_;

  // Guarded by drive_mu_: everything that calls MPI.
  std::mutex drive_mu_;
  std::list<Send> sends_;
  std::list<Send> abandoned_;
  uint64_t seq_ = 0;
  size_t next_worker_ = 0;
  bool any_dead_ = false;
  Clock::time_point next_watch_;
  std::string receive_buffer_;

  std::mutex deferred_mu_;
  std::vector<std::function<void()>> deferred_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  State state_ = State::kRun;
  bool broken_ = false;
  std::string broken_why_;
  bool finished_ = false;
  int helpers_ = 0;
  std::deque<Queued> queue_;
  std::vector<Failed> failed_;
  std::vector<FunctionRef> functions_;
  absl::flat_hash_map<std::string, uint32_t> function_ids_;
};

}  // namespace

void freeze_support(int argc, char** argv) { Initialize(argc, argv); }

int rank() {
  Initialize(0, nullptr);
  return TheWorld().rank;
}

int size() {
  Initialize(0, nullptr);
  return TheWorld().size;
}

Pool::Pool(PoolOptions options)
    : PoolApi((Initialize(0, nullptr), std::make_unique<MpiCore>(options))) {}

Pool::~Pool() {
  core_->terminate();
  core_->join();
}

}  // namespace multiprocessing::mpi
