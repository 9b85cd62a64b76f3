// BaseManager and SyncManager: starting the server process, connecting to a
// server, creating shared objects, shutting down.
#include "managers/managers.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "connection/connection.h"
#include "connection/listener.h"
#include "errors/errors.h"
#include "logging/logging.h"
#include "managers/internal/builtins.h"
#include "managers/internal/state.h"
#include "managers/internal/wire.h"
#include "process/context.h"
#include "process/process.h"
#include "process/util.h"
#include "reduction/registry.h"

namespace multiprocessing::managers {
namespace internal {

using reduction::Object;

enum class Phase { kInitial, kStarted, kShutdown };

struct ManagerState {
  Registry registry;
  std::optional<connection::Address> address;
  std::string authkey;
  const Context* ctx = nullptr;
  Phase phase = Phase::kInitial;
  std::optional<Process> process;
  std::shared_ptr<ManagerLink> link = std::make_shared<ManagerLink>();
  Finalize finalizer;
  std::mutex mu;

  const connection::Address& Address() const {
    if (!address) {
      throw ValueError(
          "the manager has no address yet: start() or connect() it first");
    }
    return *address;
  }
  void RequireStarted() const {
    if (phase != Phase::kStarted) {
      throw ProcessError(phase == Phase::kShutdown
                             ? "the manager has been shut down"
                             : "the manager is not started: call start() or "
                               "connect() first");
    }
  }
};

std::shared_ptr<ProxyState> Created(const std::shared_ptr<ManagerState>& m,
                                    const std::string& type_id,
                                    const std::string& args,
                                    const char* proxy_name) {
  if (!m) throw ValueError("the manager was moved from");
  m->RequireStarted();
  if (auto it = m->registry.find(type_id);
      it != m->registry.end() && !it->second.options.create_method) {
    throw AttributeError("typeid '" + type_id +
                         "' is registered with create_method=false");
  }
  Object call_args = reduction::loads<Object>(args);
  std::vector<Object> items{Object(type_id)};
  for (const Object& a : call_args.items()) items.push_back(a);
  Response r = PublicCall(m->Address(), m->authkey, "create",
                          Object::tuple(std::move(items)));
  if (!r.result.is_tuple() || r.result.size() != 2) {
    throw RemoteError("malformed answer to create: " + repr(r.result));
  }
  std::optional<std::vector<std::string>> exposed;
  exposed.emplace();
  for (const Object& n : r.result.items()[1].items()) {
    exposed->push_back(n.as_str());
  }
  Token token{type_id, m->Address(), r.result.items()[0].as_str()};
  return NewState(std::move(token), m->authkey, std::move(exposed), m->link,
                  proxy_name, /*owned=*/true);
}

Object FunctionReference(const void* address) {
  if (address == nullptr) return Object();
  const reduction::RegisteredFunction* f = reduction::FindFunction(address);
  if (f == nullptr) {
    throw PicklingError(
        "the function is not registered, so it cannot be sent to the "
        "manager's server process, which calls it: add "
        "MP_REGISTER_FUNCTION(f) at namespace scope");
  }
  return Object::tuple({Object::bytes(kFunctionTag), Object(f->name)});
}

void CallableNotSendable(const char* what) {
  throw PicklingError(absl::StrCat(
      "cannot send ", what,
      " to the manager's server process, which calls it: only functions "
      "registered with MP_REGISTER_FUNCTION travel to another program"));
}

namespace {

// Stops `server` when the owner process ends; returns the watcher thread.
std::thread WatchOwner(Server& server, int stop_fd) {
  int sentinel = -1;
  try {
    std::optional<Process> parent = parent_process();
    if (parent) sentinel = parent->sentinel();
  } catch (const std::exception&) {
    sentinel = -1;
  }
  if (sentinel < 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    return std::thread();
  }
  return std::thread([&server, sentinel, stop_fd] {
    pollfd fds[2] = {{sentinel, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
    }
    if (fds[0].revents) {
      logging::info("manager's owner process ended; shutting down");
      server.stop();
    }
  });
}

void RunServer(Registry registry, std::optional<connection::Address> address,
               std::string authkey, connection::Connection writer,
               std::function<void()> initializer) {
  if (initializer) initializer();
  Server server(std::move(registry), std::move(address), std::move(authkey));
  logging::info("manager serving at ", server.address().repr());
  writer.send(AddressToObject(server.address()));
  writer.close();
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) RaiseOSError("pipe2", errno);
  std::thread watcher = WatchOwner(server, pipefd[0]);
  server.serve_until_shutdown();
  ::close(pipefd[1]);
  if (watcher.joinable()) watcher.join();
  ::close(pipefd[0]);
}

void FinalizeManager(const std::shared_ptr<ManagerState>& m) {
  std::lock_guard<std::mutex> lock(m->mu);
  if (m->phase != Phase::kStarted) return;
  m->phase = Phase::kShutdown;
  m->link->shut_down.store(true);
  if (!m->process) return;  // connect()ed: the server is not ours
  Process& p = *m->process;
  if (p.is_alive()) {
    logging::info("sending shutdown message to manager");
    try {
      connection::Connection c =
          connection::Client(*m->address, {.authkey = m->authkey});
      reduction::Writer w;
      w.begin_tuple();
      w.write_none();
      w.write_str("shutdown");
      w.begin_tuple();
      w.end_tuple();
      w.begin_dict();
      w.end_dict();
      w.end_tuple();
      c.send_bytes(w.finish());
      c.recv_bytes();
    } catch (const std::exception& e) {
      logging::debug("could not send the shutdown message: ", e.what());
    }
    p.join(std::chrono::seconds(1));
    if (p.is_alive()) {
      logging::info("manager still alive");
      p.terminate();
      p.join(std::chrono::milliseconds(100));
      if (p.is_alive()) {
        logging::info("manager still alive after terminate");
        p.kill();
        p.join();
      }
    }
  }
}

// The manager classes whose registrations a spawned server can rebuild.
std::mutex& ClassesMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::map<std::string, Registry (*)()>& Classes() {
  static auto* classes = new std::map<std::string, Registry (*)()>;
  return *classes;
}

Registry (*FindManagerClass(const std::string& name))() {
  std::lock_guard<std::mutex> lock(ClassesMutex());
  auto it = Classes().find(name);
  return it == Classes().end() ? nullptr : it->second;
}

// The body of a server process started by spawn or forkserver: rebuilds the
// registrations of `class_name`, runs the initializer registered as
// `initializer` (if any) and serves.
void ServeSpawned(std::string class_name, Object address,
                  reduction::Bytes authkey, connection::Connection writer,
                  std::string initializer) {
  Registry (*registrations)() = FindManagerClass(class_name);
  if (registrations == nullptr) {
    throw ValueError("manager class " + class_name +
                     " is not registered with MP_REGISTER_MANAGER");
  }
  std::function<void()> init;
  if (!initializer.empty()) {
    const reduction::RegisteredFunction* fn =
        reduction::FindFunction(initializer);
    if (fn == nullptr) {
      throw ValueError("the manager's initializer '" + initializer +
                       "' is not registered in this program");
    }
    init = [fn] {
      reduction::OutOfBand args_oob, result_oob;
      fn->call_pickled(reduction::dumps(std::tuple<>()), &args_oob,
                       &result_oob);
    };
  }
  std::optional<connection::Address> where;
  if (!address.is_none()) where = AddressFromObject(address);
  RunServer(registrations(), std::move(where), std::move(authkey.data),
            std::move(writer), std::move(init));
}

std::string ShortName(std::string name) {
  size_t colon = name.rfind("::");
  if (colon != std::string::npos) name = name.substr(colon + 2);
  return name;
}

}  // namespace

bool RegisterManagerClass(const std::type_info& type,
                          Registry (*registrations)()) {
  std::lock_guard<std::mutex> lock(ClassesMutex());
  Classes()[multiprocessing::internal::TypeName(type)] = registrations;
  return true;
}

}  // namespace internal

BaseManager::BaseManager(std::optional<connection::Address> address,
                         std::optional<std::string> authkey, const Context* ctx)
    : state_(std::make_shared<internal::ManagerState>()) {
  state_->ctx = ctx;
  state_->address = std::move(address);
  state_->authkey = authkey ? std::move(*authkey) : current_process().authkey();
}

BaseManager::~BaseManager() {
  if (!state_) return;
  try {
    shutdown();
  } catch (const std::exception& e) {
    logging::debug("manager shutdown failed: ", e.what());
  }
}

BaseManager::BaseManager(BaseManager&&) noexcept = default;

const Registry& BaseManager::registry() const { return state_->registry; }
BaseManager& BaseManager::operator=(BaseManager&& other) noexcept {
  if (this != &other) {
    if (state_) {
      try {
        shutdown();
      } catch (const std::exception&) {
      }
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

void BaseManager::register_(const std::string& type_id, Callable callable,
                            RegisterOptions options) {
  state_->registry[type_id] = TypeRegistration{type_id, std::move(callable),
                                               std::move(options), nullptr};
}

void BaseManager::register_server_function(const std::string& name,
                                           ServerFunction fn) {
  state_->registry[name] =
      TypeRegistration{name, nullptr, {.create_method = false}, std::move(fn)};
}

const std::string& BaseManager::authkey() const { return state_->authkey; }

std::string BaseManager::class_name() const {
  return internal::ShortName(
      multiprocessing::internal::TypeName(typeid(*this)));
}

void BaseManager::start(std::function<void()> initializer) {
  std::shared_ptr<internal::ManagerState> m = state_;
  if (m->phase != internal::Phase::kInitial) {
    throw ProcessError(m->phase == internal::Phase::kStarted
                           ? "the manager is already started"
                           : "the manager has been shut down");
  }
  const Context& ctx = m->ctx ? *m->ctx : get_context();
  const std::string method = ctx.get_start_method().value_or("fork");
  auto [reader, writer_end] = Pipe(false);
  connection::Connection writer = writer_end;
  std::optional<Process> started;
  if (method == "fork") {
    started =
        ctx.Process([registry = m->registry, address = m->address,
                     authkey = m->authkey, writer, initializer]() mutable {
          internal::RunServer(std::move(registry), std::move(address),
                              std::move(authkey), std::move(writer),
                              std::move(initializer));
        });
  } else {
    // A new program image: it knows the registrations only by rebuilding
    // them, and the initializer only by name.
    const std::string class_key =
        multiprocessing::internal::TypeName(typeid(*this));
    Registry (*registrations)() = internal::FindManagerClass(class_key);
    if (registrations == nullptr) {
      throw ValueError(absl::StrCat(
          "cannot start ", class_key, " with the '", method,
          "' start method: its server process must rebuild the "
          "registrations; add MP_REGISTER_MANAGER(",
          internal::ShortName(class_key),
          ") at namespace scope (and register typeids in its constructor), "
          "or use the 'fork' start method"));
    }
    const Registry rebuilt = registrations();
    for (const auto& [type_id, reg] : m->registry) {
      if (!rebuilt.contains(type_id)) {
        throw ValueError(absl::StrCat(
            "cannot start ", class_key, " with the '", method,
            "' start method: typeid '", type_id,
            "' was registered outside the constructor, so a new server "
            "process would not know it; register it in the constructor, or "
            "use the 'fork' start method"));
      }
    }
    std::string initializer_name;
    if (initializer) {
      auto* const* fn = initializer.target<void (*)()>();
      const reduction::RegisteredFunction* registered =
          fn ? reduction::FindFunction(reinterpret_cast<const void*>(*fn))
             : nullptr;
      if (registered == nullptr) {
        throw ValueError(absl::StrCat(
            "the initializer of a manager started with the '", method,
            "' start method must be a plain function registered with "
            "MP_REGISTER_FUNCTION"));
      }
      initializer_name = registered->name;
    }
    started = ctx.Process(
        &internal::ServeSpawned, class_key,
        m->address ? internal::AddressToObject(*m->address) : Object(),
        reduction::Bytes{m->authkey}, writer, initializer_name);
  }
  Process p = *started;
  std::string name = p.name();
  size_t dash = name.find('-');
  p.set_name(class_name() +
             (dash == std::string::npos ? "" : name.substr(dash)));
  internal::SetManagerServerChild(true);
  try {
    p.start();
  } catch (...) {
    internal::SetManagerServerChild(false);
    throw;
  }
  internal::SetManagerServerChild(false);
  writer.close();
  // The child sends the address once it listens; it may also die first.
  for (;;) {
    if (reader.poll(std::chrono::milliseconds(100))) break;
    if (!p.is_alive()) {
      throw ProcessError(
          "the manager's server process ended before serving (exit code " +
          std::to_string(p.exitcode().value_or(-1)) + ")");
    }
  }
  Object address;
  try {
    address = reader.recv();
  } catch (const EOFError&) {
    p.join(std::chrono::seconds(5));
    throw ProcessError(
        "the manager's server process ended before serving (exit code " +
        std::to_string(p.exitcode().value_or(-1)) + ")");
  }
  m->address = internal::AddressFromObject(address);
  m->process = p;
  m->phase = internal::Phase::kStarted;
  std::weak_ptr<internal::ManagerState> weak = m;
  m->finalizer = Finalize(
      [weak] {
        if (auto s = weak.lock()) internal::FinalizeManager(s);
      },
      /*exitpriority=*/0);
}

Server BaseManager::get_server() {
  if (state_->phase != internal::Phase::kInitial) {
    throw ProcessError(
        "get_server() needs a manager that was neither started nor connected");
  }
  return Server(state_->registry, state_->address, state_->authkey);
}

void BaseManager::connect() {
  if (state_->phase == internal::Phase::kStarted) {
    throw ProcessError("the manager is already started");
  }
  internal::PublicCall(state_->Address(), state_->authkey, "dummy",
                       reduction::Object::tuple());
  state_->phase = internal::Phase::kStarted;
}

void BaseManager::shutdown() {
  if (!state_) return;
  internal::FinalizeManager(state_);
  state_->finalizer.cancel();
}

const connection::Address& BaseManager::address() const {
  return state_->Address();
}

int64_t BaseManager::number_of_objects() {
  state_->RequireStarted();
  return internal::PublicCall(state_->Address(), state_->authkey,
                              "number_of_objects", reduction::Object::tuple())
      .result.as_int();
}

SyncManager::SyncManager(std::optional<connection::Address> address,
                         std::optional<std::string> authkey, const Context* ctx)
    : BaseManager(std::move(address), std::move(authkey), ctx) {
  for (const internal::Builtin& b : internal::Builtins()) {
    register_(b.type_id, b.callable,
              RegisterOptions{.exposed = b.exposed,
                              .method_to_typeid = b.method_to_typeid,
                              .create_method = b.create_method});
  }
}

}  // namespace multiprocessing::managers

MP_REGISTER_FUNCTION(multiprocessing::managers::internal::ServeSpawned);
MP_REGISTER_MANAGER(multiprocessing::managers::BaseManager);
MP_REGISTER_MANAGER(multiprocessing::managers::SyncManager);

namespace multiprocessing {

managers::SyncManager Manager(const Context* ctx) {
  managers::SyncManager m(std::nullopt, std::nullopt, ctx);
  m.start();
  return m;
}

}  // namespace multiprocessing
