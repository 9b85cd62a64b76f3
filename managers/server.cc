// The manager's server: authenticates connections in its accept loop (all
// pending handshakes side by side, bounded in number and time; see
// connection/handshake_queue.h), serves each authenticated one in a thread of
// its own, keeps the shared objects with their reference counts, and answers
// requests.
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "connection/connection.h"
#include "connection/listener.h"
#include "connection/listener_internal.h"
#include "errors/errors.h"
#include "logging/logging.h"
#include "managers/internal/builtins.h"
#include "managers/internal/fastpath.h"
#include "managers/internal/wire.h"
#include "managers/managers.h"
#include "process/process.h"

namespace multiprocessing::managers {
namespace internal {

using reduction::Object;

namespace {

struct ExposedSet {
  std::vector<std::string> names;
  absl::flat_hash_set<std::string> set;
};

struct Entry {
  std::shared_ptr<Referent> obj;
  std::shared_ptr<const ExposedSet> exposed;
  std::string type_id;
  // The registration of type_id (null when there is none), found once.
  const TypeRegistration* registration = nullptr;
  int64_t refcount = 0;
};

struct Handler {
  std::thread thread;
  int fd = -1;
  std::atomic<bool> done{false};
};

std::string Encode(std::string_view kind, const Object& result) {
  reduction::Writer w;
  w.begin_tuple();
  w.write_str(kind);
  w.save(result);
  w.end_tuple();
  return w.finish();
}

std::string EncodeError(const std::exception& e) {
  std::string name;
  if (const auto* ours = dynamic_cast<const Exception*>(&e)) {
    name = ours->python_name();
  } else {
    name = PythonNameOf(e);
  }
  return EncodeErrorReply(name, e.what());
}

std::string EncodeTraceback(std::string_view name, std::string_view message) {
  return Encode("#TRACEBACK",
                Object(absl::StrCat(
                    "Traceback (most recent call last):\n  (in the manager's "
                    "server)\n",
                    std::string(name), ": ", std::string(message), "\n")));
}

Object NamesTuple(const std::vector<std::string>& names) {
  std::vector<Object> v(names.begin(), names.end());
  return Object::tuple(std::move(v));
}

// The largest request buffer a connection keeps.
constexpr size_t kMaxBuffer = 1 << 20;

}  // namespace

struct ServerState : std::enable_shared_from_this<ServerState> {
  Registry registry;
  std::string authkey;
  std::unique_ptr<connection::Listener> listener;
  connection::Address address{"", 0};
  int wake_fd = -1;

  std::mutex mu;  // objects
  absl::flat_hash_map<std::string, Entry> objects;

  std::mutex handlers_mu;
  std::list<Handler> handlers;
  bool stopping = false;

  ~ServerState() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void Stop() {
    uint64_t one = 1;
    ssize_t r = ::write(wake_fd, &one, sizeof(one));
    (void)r;
  }

  // --- objects --------------------------------------------------------------

  std::pair<std::string, Object> Register(std::shared_ptr<Referent> obj,
                                          const std::string& type_id) {
    const TypeRegistration* reg = nullptr;
    if (auto it = registry.find(type_id); it != registry.end())
      reg = &it->second;
    auto exposed = std::make_shared<ExposedSet>();
    if (reg && reg->options.exposed) {
      exposed->names = *reg->options.exposed;
    } else {
      for (std::string& m : obj->methods()) {
        if (!m.empty() && m[0] != '_') exposed->names.push_back(std::move(m));
      }
    }
    exposed->set.insert(exposed->names.begin(), exposed->names.end());
    std::string id =
        absl::StrFormat("%x", reinterpret_cast<uintptr_t>(obj.get()));
    Object names = NamesTuple(exposed->names);
    std::lock_guard<std::mutex> lock(mu);
    Entry& e = objects[id];
    e.obj = std::move(obj);
    e.exposed = std::move(exposed);
    e.type_id = type_id;
    e.registration = reg;
    ++e.refcount;
    return {id, names};
  }

  std::pair<std::string, Object> Create(const std::string& type_id,
                                        Call& call) {
    auto it = registry.find(type_id);
    if (it == registry.end()) {
      throw KeyError("'" + type_id +
                     "' (no such typeid is registered with this manager)");
    }
    std::shared_ptr<Referent> obj;
    if (it->second.callable) {
      obj = it->second.callable(call);
    } else if (!call.args.empty() && call.args[0].ref) {
      obj = call.args[0].ref;
    }
    if (!obj) {
      throw TypeError("typeid '" + type_id +
                      "' was registered without a callable");
    }
    logging::debug("created shared object of typeid '", type_id, "'");
    return Register(std::move(obj), type_id);
  }

  void Incref(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = objects.find(id);
    if (it == objects.end()) throw KeyError("'" + id + "'");
    ++it->second.refcount;
  }

  void Decref(const std::string& id) {
    std::shared_ptr<Referent> dispose;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = objects.find(id);
      if (it == objects.end()) throw KeyError("'" + id + "'");
      if (--it->second.refcount <= 0) {
        dispose = std::move(it->second.obj);
        objects.erase(it);
      }
    }
    if (dispose) logging::debug("disposing of obj with id '", id, "'");
    // `dispose` is destroyed here, outside the lock.
  }

  Item ResolveProxy(const Object& o) {
    ProxyRecipe r = RecipeFromObject(o);
    std::lock_guard<std::mutex> lock(mu);
    auto it = objects.find(r.token.id);
    if (it == objects.end()) return Item(o);  // another manager's: kept as data
    return Item(it->second.obj);
  }

  Call MakeCall(const Object& args, const Object& kwds) {
    Call call;
    if (args.is_tuple() || args.is_list()) {
      call.args.reserve(args.size());
      for (const Object& a : args.items()) call.args.push_back(Resolve(a));
    }
    if (kwds.is_dict()) call.kwds = kwds;
    return call;
  }

  // The arguments of a request the fast path decoded: scalars only, so
  // nothing to resolve.
  static Call MakeScalarCall(std::vector<Object>& args) {
    Call call;
    call.args.reserve(args.size());
    for (Object& a : args) call.args.emplace_back(std::move(a));
    return call;
  }

  // --- requests -------------------------------------------------------------

  // The server's own functions (request id None). Sets *shutdown for
  // "shutdown".
  std::string Public(const std::string& method, const Object& args,
                     const Object& kwds, bool* shutdown) {
    try {
      auto arg = [&](size_t i) -> const Object& {
        if (!args.is_tuple() || args.size() <= i) {
          throw TypeError(method + "() is missing arguments");
        }
        return args.items()[i];
      };
      if (method == "accept_connection" || method == "dummy")
        return Encode("#RETURN", Object());
      if (method == "create") {
        std::string type_id = arg(0).as_str();
        std::vector<Object> rest(args.items().begin() + 1, args.items().end());
        Call call = MakeCall(Object::tuple(std::move(rest)), kwds);
        auto [id, exposed] = Create(type_id, call);
        return Encode("#RETURN", Object::tuple({Object(id), exposed}));
      }
      if (method == "incref") {
        Incref(arg(0).as_str());
        return Encode("#RETURN", Object());
      }
      if (method == "decref") {
        Decref(arg(0).as_str());
        return Encode("#RETURN", Object());
      }
      if (method == "get_methods") {
        Token t = TokenFromObject(arg(0));
        std::lock_guard<std::mutex> lock(mu);
        auto it = objects.find(t.id);
        if (it == objects.end()) throw KeyError("'" + t.id + "'");
        return Encode("#RETURN", NamesTuple(it->second.exposed->names));
      }
      if (method == "number_of_objects") {
        std::lock_guard<std::mutex> lock(mu);
        return Encode("#RETURN", Object(static_cast<int64_t>(objects.size())));
      }
      if (method == "debug_info") {
        std::lock_guard<std::mutex> lock(mu);
        std::vector<std::string> lines;
        for (const auto& [id, e] : objects) {
          lines.push_back(absl::StrCat("  ", id,
                                       ":       refcount=", e.refcount,
                                       "\n    ", e.obj->repr().substr(0, 75)));
        }
        return Encode("#RETURN", Object(absl::StrJoin(lines, "\n")));
      }
      if (method == "shutdown") {
        logging::debug("manager received shutdown message");
        *shutdown = true;
        return Encode("#RETURN", Object());
      }
      if (auto it = registry.find(method);
          it != registry.end() && it->second.server_function) {
        return Encode("#RETURN", it->second.server_function(args));
      }
      return EncodeTraceback(
          "ValueError",
          "'" + method + "' is not one of the manager's public functions");
    } catch (const std::exception& e) {
      const auto* ours = dynamic_cast<const Exception*>(&e);
      return EncodeTraceback(ours ? ours->python_name() : PythonNameOf(e),
                             e.what());
    }
  }

  // `make_call` turns the request's arguments into a Call.
  template <class MakeCallFn>
  std::string Method(std::string_view id_view, const std::string& method,
                     MakeCallFn&& make_call) {
    Entry entry;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = objects.find(absl::string_view(id_view.data(), id_view.size()));
      if (it == objects.end()) {
        return EncodeTraceback(
            "KeyError",
            absl::StrCat("'", absl::string_view(id_view.data(), id_view.size()),
                         "' (no shared object with this id: "
                         "it was freed, or belongs to another "
                         "manager)"));
      }
      entry.obj = it->second.obj;
      entry.exposed = it->second.exposed;
      entry.registration = it->second.registration;
    }
    if (!entry.exposed->set.contains(method)) {
      try {
        if (method == "#GETVALUE") return Encode("#RETURN", entry.obj->value());
        if (method == "__str__")
          return Encode("#RETURN", Object(entry.obj->str()));
        if (method == "__repr__")
          return Encode("#RETURN", Object(entry.obj->repr()));
      } catch (const std::exception& e) {
        const auto* ours = dynamic_cast<const Exception*>(&e);
        return EncodeTraceback(ours ? ours->python_name() : PythonNameOf(e),
                               e.what());
      }
      std::vector<std::string> quoted;
      for (const auto& n : entry.exposed->names)
        quoted.push_back("'" + n + "'");
      return EncodeTraceback(
          "AttributeError",
          absl::StrCat("method '", method, "' of '", entry.obj->type_name(),
                       "' object is not in exposed=(",
                       absl::StrJoin(quoted, ", "),
                       quoted.size() == 1 ? ",)" : ")"));
    }
    Item result;
    try {
      Call call = make_call();
      result = entry.obj->call(method, call);
    } catch (const std::exception& e) {
      return EncodeError(e);
    }
    if (const TypeRegistration* reg = entry.registration;
        reg && !reg->options.method_to_typeid.empty()) {
      auto m = reg->options.method_to_typeid.find(method);
      if (m != reg->options.method_to_typeid.end()) {
        try {
          std::shared_ptr<Referent> obj = result.ref;
          if (!obj) {
            Call wrap;
            wrap.args.push_back(result);
            auto [id2, exposed2] = Create(m->second, wrap);
            return Encode(
                "#PROXY",
                Object::tuple(
                    {exposed2, TokenToObject(Token{m->second, address, id2})}));
          }
          auto [id2, exposed2] = Register(std::move(obj), m->second);
          return Encode(
              "#PROXY",
              Object::tuple(
                  {exposed2, TokenToObject(Token{m->second, address, id2})}));
        } catch (const std::exception& e) {
          const auto* ours = dynamic_cast<const Exception*>(&e);
          return EncodeTraceback(ours ? ours->python_name() : PythonNameOf(e),
                                 e.what());
        }
      }
    }
    try {
      return Encode("#RETURN", ValueOf(result));
    } catch (const std::exception& e) {
      const auto* ours = dynamic_cast<const Exception*>(&e);
      return EncodeTraceback(ours ? ours->python_name() : PythonNameOf(e),
                             e.what());
    }
  }

  // Answers one request; false when the connection should close.
  bool Answer(connection::Connection& c, std::string_view bytes, bool* accepted,
              ScalarRequest& fast) {
    // The common case first: a method call with scalar arguments, decoded
    // without building the request as an Object.
    if (*accepted && ParseScalarRequest(bytes, &fast) && !fast.id_is_none) {
      const std::string method(fast.method);
      c.send_bytes(Method(fast.id, method,
                          [&fast] { return MakeScalarCall(fast.args); }));
      return true;
    }
    std::string reply;
    bool shutdown = false;
    bool keep = true;
    try {
      Object request = reduction::loads<Object>(bytes);
      if (!request.is_tuple() || request.size() != 4 ||
          !request.items()[1].is_str()) {
        throw ValueError(
            "a request must be (id, methodname, args, kwds), got " +
            reduction::repr(request).substr(0, 200));
      }
      const std::vector<Object>& f = request.items();
      const std::string& method = f[1].as_str();
      if (f[0].is_none()) {
        reply = Public(method, f[2], f[3], &shutdown);
        if (!*accepted) keep = method == "accept_connection";
        if (method == "accept_connection") *accepted = true;
      } else if (f[0].is_str()) {
        reply =
            Method(f[0].as_str(), method, [&] { return MakeCall(f[2], f[3]); });
      } else {
        throw TypeError("a request's id must be a str or None");
      }
    } catch (const std::exception& e) {
      const auto* ours = dynamic_cast<const Exception*>(&e);
      reply = EncodeTraceback(ours ? ours->python_name() : PythonNameOf(e),
                              e.what());
    }
    c.send_bytes(reply);
    if (shutdown) Stop();
    return keep && !shutdown;
  }

  void Serve(connection::Connection c) {
    Resolver resolver = [this](const Object& o) { return ResolveProxy(o); };
    SetResolver(&resolver);
    try {
      bool accepted = false;
      // Requests are read into a buffer kept for the connection; one too
      // large for it arrives whole in the BufferTooShort, and the buffer
      // grows for the next ones (up to a limit).
      std::vector<char> buffer(4096);
      ScalarRequest fast;
      for (;;) {
        std::string large;
        std::string_view bytes;
        try {
          bytes = std::string_view(buffer.data(), c.recv_bytes_into(buffer));
        } catch (BufferTooShort& e) {
          large = e.message();
          bytes = large;
          if (large.size() <= kMaxBuffer) buffer.resize(large.size());
        }
        if (!Answer(c, bytes, &accepted, fast)) break;
      }
    } catch (const EOFError&) {
      // The client went away.
    } catch (const std::exception& e) {
      logging::debug("manager connection ended: ", e.what());
    }
    SetResolver(nullptr);
  }

  void ReapLocked() {
    for (auto it = handlers.begin(); it != handlers.end();) {
      if (it->done.load()) {
        it->thread.join();
        it = handlers.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Serves an authenticated connection in a thread of its own.
  void Start(connection::Connection c) {
    std::lock_guard<std::mutex> lock(handlers_mu);
    ReapLocked();
    if (stopping) return;
    Handler& h = handlers.emplace_back();
    h.fd = c.fileno();
    auto self = shared_from_this();
    h.thread = std::thread([self, c, &h]() mutable {
      self->Serve(std::move(c));
      c.close();
      h.done.store(true);
    });
  }

  void Run() {
    for (;;) {
      std::optional<connection::Connection> c;
      try {
        c = connection::internal::ListenerAccess::AcceptOrWake(*listener,
                                                               wake_fd);
      } catch (const AuthenticationError& e) {
        logging::info("refused a connection to the manager: ", e.what());
        continue;
      }
      if (!c) break;
      Start(std::move(*c));
    }
    // Stop: wake every handler (blocked reading, or in a blocking call).
    std::vector<std::shared_ptr<Referent>> all;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (auto& [id, e] : objects) all.push_back(e.obj);
    }
    for (auto& o : all) o->interrupt();
    std::list<Handler> finished;
    {
      std::lock_guard<std::mutex> lock(handlers_mu);
      stopping = true;
      for (Handler& h : handlers) {
        if (!h.done.load()) ::shutdown(h.fd, SHUT_RDWR);
      }
      finished.splice(finished.end(), handlers);
    }
    for (Handler& h : finished) h.thread.join();
    {
      std::lock_guard<std::mutex> lock(mu);
      objects.clear();
    }
    listener->close();
  }
};

}  // namespace internal

Server::Server(Registry registry, std::optional<connection::Address> address,
               std::string authkey, connection::Timeout handshake_timeout)
    : state_(std::make_shared<internal::ServerState>()) {
  state_->registry = std::move(registry);
  state_->authkey = std::move(authkey);
  state_->wake_fd = ::eventfd(0, EFD_CLOEXEC);
  if (state_->wake_fd < 0) RaiseOSError("eventfd", errno);
  // The listener authenticates every connection before the server gives it a
  // thread, all pending handshakes at once under one deadline each, so that
  // a slow or hostile client never holds up the others nor costs a thread.
  state_->listener = std::make_unique<connection::Listener>(
      address, connection::ListenerOptions{
                   .backlog = 128,
                   .authkey = state_->authkey,
                   .handshake_timeout = handshake_timeout,
               });
  state_->address = state_->listener->address();
}

Server::~Server() = default;
Server::Server(Server&&) noexcept = default;

const connection::Address& Server::address() const { return state_->address; }

void Server::serve_until_shutdown() { state_->Run(); }

void Server::stop() { state_->Stop(); }

void Server::serve_forever() {
  logging::info("manager serving at ", state_->address.repr());
  serve_until_shutdown();
  multiprocessing::exit(0);
}

}  // namespace multiprocessing::managers
