// Managers, as Python's multiprocessing.managers: a server process holds
// shared objects, and proxies in other processes (or on other machines) call
// their methods.
//
//   int main(int argc, char** argv) {
//     multiprocessing::freeze_support(argc, argv);
//     auto manager = multiprocessing::Manager();   // a started SyncManager
//     managers::DictProxy d = manager.dict();
//     managers::ListProxy l = manager.list(std::vector<int>{1, 2, 3});
//     multiprocessing::Process p(f, d, l);         // proxies as arguments
//     ...
//   }                                              // ~SyncManager: shutdown()
//
// Customised managers register their own types (see referent.h for
// MP_EXPOSE):
//
//   class MyManager : public managers::BaseManager {
//    public:
//     MyManager() { register_("Maths", managers::Factory<MathsClass>()); }
//   };
//   MyManager manager;
//   manager.start();
//   managers::AutoProxy maths = manager.create("Maths");
//   maths._callmethod<int>("add", 4, 3);   // 7
//
// Remote managers: on one machine
//
//   BaseManager m({"", 50000}, "abracadabra");
//   m.get_server().serve_forever();
//
// and `m.connect()` and `m.create<QueueProxy>("get_queue")` on others.
// Connections are authenticated with the authkey (current_process().authkey()
// by default), with CPython's handshake; a wrong key raises
// AuthenticationError.
//
// The server runs one thread per connection; each process thread using
// proxies keeps one connection to it. start() runs the server in a child
// process made with the manager's context (the default context, which follows
// set_start_method(), unless one is given); the child ends when shutdown() is
// called, when the manager object is destroyed, or when its owner process
// exits or dies. Proxies themselves can go to children of any start method.
//
// Under fork the server inherits the registrations. Under spawn and
// forkserver it rebuilds them by default-constructing the manager's class,
// which therefore registers its typeids in its constructor and is named once
// at namespace scope (BaseManager and SyncManager are already):
//
//   MP_REGISTER_MANAGER(MyManager);
//
// and start()'s initializer must then be a function registered with
// MP_REGISTER_FUNCTION.
#ifndef MULTIPROCESSING_MANAGERS_MANAGERS_H_
#define MULTIPROCESSING_MANAGERS_MANAGERS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "connection/address.h"
#include "connection/listener.h"
#include "managers/proxy.h"
#include "managers/referent.h"
#include "process/context.h"
#include "reduction/object.h"

namespace multiprocessing::managers {

namespace internal {
struct ManagerState;
struct ServerState;
std::shared_ptr<ProxyState> Created(const std::shared_ptr<ManagerState>& m,
                                    const std::string& type_id,
                                    const std::string& args,
                                    const char* proxy_name);

}  // namespace internal

// The keyword arguments of register().
struct RegisterOptions {
  // The methods proxies may call; unset: every public method (names not
  // starting with '_').
  std::optional<std::vector<std::string>> exposed;
  // Methods whose result is returned as a new proxy of the given typeid
  // instead of a copy.
  std::map<std::string, std::string> method_to_typeid;
  // Whether create(typeid) may make objects of this typeid (false for types
  // only reached through method_to_typeid).
  bool create_method = true;
};

// A function of the server itself, called with request id None like create
// and incref (SharedMemoryManager's track_segment): takes the request's
// arguments, returns the result.
using ServerFunction =
    std::function<reduction::Object(const reduction::Object& args)>;

struct TypeRegistration {
  std::string type_id;
  Callable callable;  // empty: for proxies returned by methods only
  RegisterOptions options;
  // Set (and callable empty) when type_id names a server function instead.
  ServerFunction server_function;
};
using Registry = std::map<std::string, TypeRegistration>;

// Python's managers.Namespace: attributes without methods. Its repr shows the
// public attributes, sorted: Namespace(x=10, y='hello').
std::shared_ptr<Referent> MakeNamespace();
// A queue.Queue held by a server, e.g. for a remote manager's "get_queue".
std::shared_ptr<Referent> MakeQueue(int64_t maxsize = 0);

// The server of a manager, serving in the calling process.
class Server {
 public:
  // Binds `address` (an AF_UNIX socket in a temp dir when unset; see
  // connection::Listener for how the directory of a server that was killed is
  // removed later). Every connection must complete the authentication
  // handshake within `handshake_timeout`; the handshakes of pending
  // connections run side by side in the accepting thread, at most
  // connection::kDefaultMaxPendingHandshakes at once (beyond that the oldest
  // unauthenticated one is closed), and only an authenticated connection gets
  // a thread. Running out of descriptors makes accepting back off rather than
  // spin (logged once as a warning).
  Server(Registry registry, std::optional<connection::Address> address,
         std::string authkey,
         connection::Timeout handshake_timeout =
             connection::kDefaultHandshakeTimeout);
  ~Server();
  Server(Server&&) noexcept;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The address clients connect to (the bound port when 0 was asked).
  const connection::Address& address() const;
  // Serves until a client sends shutdown, then ends the process with exit
  // code 0 (as Python's serve_forever does); never returns.
  [[noreturn]] void serve_forever();

  // Serves until shutdown and returns (for a server run inside a manager
  // process, or a thread that wants to go on).
  void serve_until_shutdown();
  // Stops serving (as a client's shutdown does); for another thread.
  void stop();

 private:
  std::shared_ptr<internal::ServerState> state_;
};

// Python's BaseManager.
class BaseManager {
 public:
  // `address`: where the server listens (start(), get_server()) or is found
  // (connect()); unset: an AF_UNIX socket chosen by the server. `authkey`:
  // raw bytes; unset: current_process().authkey().
  // `ctx`: the context whose start method start() uses; null: the default
  // context.
  explicit BaseManager(
      std::optional<connection::Address> address = std::nullopt,
      std::optional<std::string> authkey = std::nullopt,
      const Context* ctx = nullptr);
  virtual ~BaseManager();
  BaseManager(BaseManager&&) noexcept;
  BaseManager& operator=(BaseManager&&) noexcept;

  // Registers a typeid: `callable` makes the shared objects in the server
  // (leave it empty on a client that only connect()s).
  void register_(const std::string& type_id, Callable callable = nullptr,
                 RegisterOptions options = {});

  // Starts the server process; `initializer` runs first in it. Raises
  // ProcessError if already started or connected.
  void start(std::function<void()> initializer = nullptr);
  // A Server for this manager's registrations, to serve in this process.
  Server get_server();
  // Connects to a running server (at address()); AuthenticationError for a
  // wrong key, OSError when nothing listens.
  void connect();
  // Stops the server process started by start() and waits for it (at most
  // about a second, then terminates it). Harmless to repeat; nothing for a
  // manager that connect()ed.
  void shutdown();
  const connection::Address& address() const;

  // Asks the server for a new object of `type_id` made from `args` and
  // returns a proxy of type P for it (Python's manager.<typeid>(args)).
  template <class P = AutoProxy, class... A>
  P create(const std::string& type_id, const A&... args) {
    reduction::OutOfBand oob;
    reduction::Writer w(reduction::kDefaultProtocol, &oob);
    w.begin_tuple();
    (w.save(args), ...);
    w.end_tuple();
    return P(internal::Created(state_, type_id, w.finish(), P::kProxyName));
  }

  // The number of shared objects in the server (for tests and debugging).
  int64_t number_of_objects();

  // The registrations made so far.
  const Registry& registry() const;

 protected:
  // Adds `name` to the server's own functions (for manager classes whose
  // server does more, as SharedMemoryManager's).
  void register_server_function(const std::string& name, ServerFunction fn);
  // The server's address and key, for a request of a subclass.
  const std::string& authkey() const;

  // The class name used for the server process ("SyncManager-1").
  virtual std::string class_name() const;

 private:
  std::shared_ptr<internal::ManagerState> state_;
};

// Python's SyncManager: the types Manager() offers.
class SyncManager : public BaseManager {
 public:
  explicit SyncManager(
      std::optional<connection::Address> address = std::nullopt,
      std::optional<std::string> authkey = std::nullopt,
      const Context* ctx = nullptr);
  SyncManager(SyncManager&&) noexcept = default;
  SyncManager& operator=(SyncManager&&) noexcept = default;

  QueueProxy Queue(int64_t maxsize = 0) {
    return create<QueueProxy>("Queue", maxsize);
  }
  QueueProxy JoinableQueue(int64_t maxsize = 0) {
    return create<QueueProxy>("JoinableQueue", maxsize);
  }
  EventProxy Event() { return create<EventProxy>("Event"); }
  AcquirerProxy Lock() { return create<AcquirerProxy>("Lock"); }
  AcquirerProxy RLock() { return create<AcquirerProxy>("RLock"); }
  AcquirerProxy Semaphore(int64_t value = 1) {
    return create<AcquirerProxy>("Semaphore", value);
  }
  AcquirerProxy BoundedSemaphore(int64_t value = 1) {
    return create<AcquirerProxy>("BoundedSemaphore", value);
  }
  // With a Lock or RLock proxy of this manager, or a new RLock.
  ConditionProxy Condition() { return create<ConditionProxy>("Condition"); }
  ConditionProxy Condition(const AcquirerProxy& lock) {
    return create<ConditionProxy>("Condition", lock);
  }
  BarrierProxy Barrier(int64_t parties, Timeout timeout = std::nullopt) {
    return Barrier(parties, nullptr, timeout);
  }
  // `action` runs in the server's process, in the thread of the last party
  // to arrive, before any party is released (as threading.Barrier's action
  // in CPython's manager server): a function registered with
  // MP_REGISTER_FUNCTION (PicklingError for anything else, since the server
  // is another program). If it throws, that party's wait() raises the
  // exception and the barrier breaks.
  template <class F>
  BarrierProxy Barrier(int64_t parties, const F& action,
                       Timeout timeout = std::nullopt) {
    std::optional<double> seconds;
    if (timeout) seconds = timeout->count();
    return create<BarrierProxy>("Barrier", parties,
                                internal::FunctionReference(action), seconds);
  }
  ValueProxy Value(const std::string& typecode, const Object& value) {
    return create<ValueProxy>("Value", typecode, value);
  }
  template <class S>
  ArrayProxy Array(const std::string& typecode, const S& sequence) {
    return create<ArrayProxy>("Array", typecode, sequence);
  }
  NamespaceProxy Namespace() { return create<NamespaceProxy>("Namespace"); }
  // A process pool living in the server (CPython's manager.Pool()): its
  // functions are registered with MP_REGISTER_FUNCTION and travel by name.
  PoolProxy Pool(std::optional<int> processes = std::nullopt) {
    return create<PoolProxy>("Pool", processes);
  }
  DictProxy dict() { return create<DictProxy>("dict"); }
  // From a mapping (std::map, a dict Object, ...) or a sequence of pairs.
  template <class M>
  DictProxy dict(const M& mapping) {
    return create<DictProxy>("dict", mapping);
  }
  ListProxy list() { return create<ListProxy>("list"); }
  template <class S>
  ListProxy list(const S& sequence) {
    return create<ListProxy>("list", sequence);
  }

 protected:
  std::string class_name() const override { return "SyncManager"; }
};

namespace internal {
// Records how a server process started by spawn or forkserver rebuilds the
// registrations of manager class `type` (see MP_REGISTER_MANAGER).
bool RegisterManagerClass(const std::type_info& type,
                          Registry (*registrations)());
}  // namespace internal

}  // namespace multiprocessing::managers

#define MP_MANAGERS_CONCAT_INNER(a, b) a##b
#define MP_MANAGERS_CONCAT(a, b) MP_MANAGERS_CONCAT_INNER(a, b)

// At namespace scope: lets start() run the server of manager class `Class`
// (default-constructible, registering its typeids in its constructor) under
// the spawn and forkserver start methods.
#define MP_REGISTER_MANAGER(Class)                                        \
  [[maybe_unused]] static const bool MP_MANAGERS_CONCAT(                  \
      mp_manager_registered_, __LINE__) =                                 \
      ::multiprocessing::managers::internal::RegisterManagerClass(        \
          typeid(Class), +[]() -> ::multiprocessing::managers::Registry { \
            Class manager;                                                \
            return manager.registry();                                    \
          })

namespace multiprocessing {
// A started SyncManager, its server process made with `ctx`'s start method
// (the default context's when null).
managers::SyncManager Manager(const Context* ctx = nullptr);

namespace internal {
// ctx.Manager() (process/context.h).
struct ContextManagers {
  static managers::SyncManager Manager(const Context& ctx) {
    return multiprocessing::Manager(&ctx);
  }
};
}  // namespace internal
}  // namespace multiprocessing

#endif  // MULTIPROCESSING_MANAGERS_MANAGERS_H_
