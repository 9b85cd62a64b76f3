// The client side of managers: proxies, their per-thread connections to
// servers, reference counting, and the wire helpers shared with the server.
#include "managers/proxy.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <ostream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "connection/connection.h"
#include "connection/listener.h"
#include "errors/errors.h"
#include "logging/logging.h"
#include "managers/internal/fastpath.h"
#include "managers/internal/instances.h"
#include "managers/internal/state.h"
#include "managers/internal/wire.h"
#include "managers/referent.h"
#include "process/process.h"
#include "process/util.h"
#include "queues/queues.h"

namespace multiprocessing::managers {
namespace internal {

using reduction::Object;

// ---------------------------------------------------------------------------
// Wire helpers.

bool IsTagged(const Object& o, std::string_view tag) {
  if (!o.is_tuple()) return false;
  const std::vector<Object>& items = o.items();
  return !items.empty() && items[0].is_bytes() && items[0].as_bytes() == tag;
}

Object AddressToObject(const connection::Address& a) {
  if (a.family() == connection::Family::kInet) {
    return Object::tuple({Object(a.host()), Object(a.port())});
  }
  if (a.is_abstract()) return Object::bytes(a.path());
  return Object(a.path());
}

connection::Address AddressFromObject(const Object& o) {
  if (o.is_tuple() && o.size() == 2 && o.items()[0].is_str() &&
      o.items()[1].is_int()) {
    return connection::Address(o.items()[0].as_str(),
                               static_cast<int>(o.items()[1].as_int()));
  }
  if (o.is_str()) return connection::Address(o.as_str());
  if (o.is_bytes()) return connection::Address(o.as_bytes());
  throw TypeError("expected a manager address ((host, port) or a path), got " +
                  repr(o));
}

Object TokenToObject(const Token& t) {
  return Object::tuple(
      {Object(t.type_id), AddressToObject(t.address), Object(t.id)});
}

Token TokenFromObject(const Object& o) {
  Object state;
  if (InstanceClass(o, nullptr, &state) == "multiprocessing.managers.Token") {
    // As a CPython server sends it: Token.__getstate__() is the same tuple.
    return TokenFromObject(state);
  }
  if (!o.is_tuple() || o.size() != 3 || !o.items()[0].is_str() ||
      !o.items()[2].is_str()) {
    throw TypeError("expected a token (typeid, address, id), got " + repr(o));
  }
  return Token{o.items()[0].as_str(), AddressFromObject(o.items()[1]),
               o.items()[2].as_str()};
}

Object RecipeToObject(const ProxyRecipe& r) {
  Object exposed;
  if (r.exposed) {
    std::vector<Object> names(r.exposed->begin(), r.exposed->end());
    exposed = Object::tuple(std::move(names));
  }
  return Object::tuple({Object::bytes(kProxyTag), Object(r.token.type_id),
                        AddressToObject(r.token.address), Object(r.token.id),
                        r.authkey ? Object::bytes(*r.authkey) : Object(),
                        exposed});
}

ProxyRecipe RecipeFromObject(const Object& o) {
  if (!IsTagged(o, kProxyTag) || o.size() != 6) {
    throw TypeError("expected a pickled proxy, got " + repr(o));
  }
  const std::vector<Object>& f = o.items();
  ProxyRecipe r;
  r.token = TokenFromObject(Object::tuple({f[1], f[2], f[3]}));
  if (f[4].is_bytes()) r.authkey = f[4].as_bytes();
  if (f[5].is_tuple() || f[5].is_list()) {
    r.exposed.emplace();
    for (const Object& name : f[5].items()) r.exposed->push_back(name.as_str());
  }
  return r;
}

namespace {

// Where CPython keeps the exceptions a server may raise.
const char* ModuleOf(const std::string& name) {
  static const char* const kBuiltins[] = {
      "ArithmeticError",   "AssertionError", "AttributeError",
      "EOFError",          "IndexError",     "KeyError",
      "LookupError",       "MemoryError",    "NotImplementedError",
      "OverflowError",     "RecursionError", "RuntimeError",
      "StopIteration",     "TypeError",      "ValueError",
      "ZeroDivisionError", "OSError"};
  for (const char* b : kBuiltins) {
    if (name == b) return "builtins";
  }
  if (name == "Empty") return "_queue";
  if (name == "Full") return "queue";
  if (name == "BrokenBarrierError") return "threading";
  return nullptr;
}

void PutU32(std::string& out, uint32_t n) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
}

void PutStr(std::string& out, std::string_view s) {
  out.push_back('X');  // BINUNICODE
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s.data(), s.size());
}

}  // namespace

std::string EncodeErrorReply(const std::string& name,
                             const std::string& message) {
  const char* module = ModuleOf(name);
  std::string text = module ? message : name + ": " + message;
  std::string out("\x80\x02", 2);  // PROTO 2
  PutStr(out, "#ERROR");
  out += 'c';  // GLOBAL
  out += module ? module : "builtins";
  out += '\n';
  out += module ? name : "Exception";
  out += '\n';
  if (text.empty()) {
    out += ')';  // EMPTY_TUPLE
  } else {
    PutStr(out, text);
    out += '\x85';  // TUPLE1
  }
  out += 'R';     // REDUCE
  out += '\x86';  // TUPLE2
  out += '.';     // STOP
  return out;
}

// ---------------------------------------------------------------------------
// Per-thread connections to servers.

namespace {

struct ThreadConnections {
  pid_t pid = 0;
  absl::flat_hash_map<std::string, connection::Connection> by_key;
  // The connection used last and its key: a run of calls to one manager
  // skips the hash lookup.
  std::string last_key;
  connection::Connection last;
  // Replies are read into this buffer (one too large for it arrives whole in
  // a BufferTooShort, and the buffer grows up to a limit).
  std::vector<char> buffer = std::vector<char>(4096);
  ~ThreadConnections();
};
thread_local bool tls_gone = false;
thread_local ThreadConnections tls;
ThreadConnections::~ThreadConnections() { tls_gone = true; }

std::string KeyOf(const connection::Address& address,
                  const std::string& authkey) {
  return address.repr() + std::string(1, '\0') + authkey;
}

std::string EncodePublic(std::string_view method, const Object& args) {
  reduction::Writer w;
  w.begin_tuple();
  w.write_none();
  w.write_str(method);
  w.save(args);
  w.begin_dict();
  w.end_dict();
  w.end_tuple();
  return w.finish();
}

[[noreturn]] void RaiseRemote(const Object& error) {
  std::string name = "Exception";
  std::string message;
  if (error.is_tuple() && error.size() == 2 && error.items()[0].is_str() &&
      error.items()[1].is_str()) {
    name = error.items()[0].as_str();
    message = error.items()[1].as_str();
  } else {
    message = str(error);
  }
  if (name == "Empty") throw queues::Empty(message);
  if (name == "Full") throw queues::Full(message);
  RaiseByName(name, message);
}

// A reply the plain loader refused: one carrying class instances (an
// exception of #ERROR, a Token of #PROXY), as CPython's server and the
// error replies of ours send them.
Response DecodeWithInstances(std::string_view bytes) {
  Object reply = LoadWithInstances(bytes);
  if (reply.is_tuple() && reply.size() == 2 && reply.items()[0].is_str()) {
    const std::string& kind = reply.items()[0].as_str();
    const Object& result = reply.items()[1];
    if (kind == "#ERROR") {
      std::string name, message;
      ExceptionFromInstance(result, &name, &message);
      if (name == "Exception") {
        // "name: message" of a class CPython does not have.
        size_t colon = message.find(": ");
        if (colon != std::string::npos) {
          name = message.substr(0, colon);
          message = message.substr(colon + 2);
        }
      }
      RaiseRemote(Object::tuple({Object(name), Object(message)}));
    }
    if (kind == "#PROXY" && result.is_tuple() && result.size() == 2) {
      return Response{
          kind,
          Object::tuple({result.items()[0],
                         TokenToObject(TokenFromObject(result.items()[1]))})};
    }
  }
  Object args;
  std::string what = "an object";
  if (std::optional<std::string> cls = InstanceClass(
          reply.is_tuple() && reply.size() == 2 ? reply.items()[1] : reply,
          &args)) {
    what = "an instance of " + *cls;
  }
  throw UnpicklingError(
      "the manager's server answered with " + what +
      ", which cannot be rebuilt here: only built-in data types, proxies "
      "and exceptions can be received from a manager");
}

Response Decode(std::string_view bytes) {
  Object value;
  if (ParseScalarReturn(bytes, &value)) return Response{"#RETURN", value};
  Object reply;
  try {
    reply = reduction::loads<Object>(bytes);
  } catch (const UnpicklingError&) {
    return DecodeWithInstances(bytes);
  }
  if (!reply.is_tuple() || reply.size() != 2 || !reply.items()[0].is_str()) {
    throw RemoteError("malformed reply from the manager's server: " +
                      repr(reply));
  }
  const std::string& kind = reply.items()[0].as_str();
  const Object& result = reply.items()[1];
  if (kind == "#RETURN" || kind == "#PROXY") return Response{kind, result};
  if (kind == "#ERROR") RaiseRemote(result);
  if (kind == "#TRACEBACK" || kind == "#UNSERIALIZABLE") {
    std::string line(75, '-');
    throw RemoteError(absl::StrCat(
        "\n", line, "\n",
        kind == "#UNSERIALIZABLE" ? "Unserializable message: " : "",
        str(result), "\n", line));
  }
  throw RemoteError("unknown reply kind from the manager's server: " + kind);
}

connection::Connection Open(const connection::Address& address,
                            const std::string& authkey) {
  connection::Connection c = connection::Client(address, {.authkey = authkey});
  std::string name = current_process().name();
  c.send_bytes(
      EncodePublic("accept_connection", Object::tuple({Object(name)})));
  Decode(c.recv_bytes());
  return c;
}

[[noreturn]] void RaiseLost(const connection::Address& address,
                            const Exception& e) {
  std::string what =
      absl::StrCat("lost the connection to the manager's server at ",
                   address.repr(), " (it shut down or died): ", e.what());
  if (const auto* os = dynamic_cast<const OSError*>(&e)) {
    throw OSError(os->errno_value(), what);
  }
  throw EOFError(what);
}

// The largest reply buffer a thread keeps.
constexpr size_t kMaxBuffer = 1 << 20;

// getpid() without a system call per request: reset in forked children.
std::atomic<pid_t> g_pid{0};
pid_t CachedPid() {
  pid_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    static const bool registered = [] {
      pthread_atfork(nullptr, nullptr,
                     [] { g_pid.store(0, std::memory_order_relaxed); });
      return true;
    }();
    (void)registered;
    pid = getpid();
    g_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}

void ForgetConnection(const std::string& key) {
  tls.by_key.erase(key);
  tls.last_key.clear();
  tls.last = connection::Connection();
}

Response TransactAt(const connection::Address& address,
                    const std::string& authkey, const std::string& request,
                    const std::string* known_key = nullptr) {
  if (tls_gone) {
    // This thread is exiting (thread-local storage already destroyed): use
    // a connection for this request alone.
    connection::Connection c = Open(address, authkey);
    c.send_bytes(request);
    return Decode(c.recv_bytes());
  }
  const pid_t pid = CachedPid();
  if (tls.pid != pid) {
    // Inherited from the parent: not ours to use.
    tls.by_key.clear();
    tls.last_key.clear();
    tls.last = connection::Connection();
    tls.pid = pid;
  }
  std::string computed;
  if (known_key == nullptr) computed = KeyOf(address, authkey);
  const std::string& key = known_key ? *known_key : computed;
  if (tls.last_key != key || tls.last.closed()) {
    auto it = tls.by_key.find(key);
    if (it == tls.by_key.end()) {
      it = tls.by_key.emplace(key, Open(address, authkey)).first;
    }
    tls.last_key = key;
    tls.last = it->second;
  }
  connection::Connection& c = tls.last;
  std::string large;
  std::string_view reply;
  try {
    c.send_bytes(request);
    reply = std::string_view(tls.buffer.data(), c.recv_bytes_into(tls.buffer));
  } catch (BufferTooShort& e) {
    large = e.message();
    reply = large;
    if (large.size() <= kMaxBuffer) tls.buffer.resize(large.size());
  } catch (const EOFError& e) {
    ForgetConnection(key);
    RaiseLost(address, e);
  } catch (const OSError& e) {
    ForgetConnection(key);
    RaiseLost(address, e);
  }
  return Decode(reply);
}

// Live proxy states, so that a forked child can take its own references and
// every process releases its references when it exits.
std::mutex& LiveMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::unordered_map<ProxyState*, std::weak_ptr<ProxyState>>& Live() {
  static auto* live =
      new std::unordered_map<ProxyState*, std::weak_ptr<ProxyState>>;
  return *live;
}

std::vector<std::shared_ptr<ProxyState>> LiveStates() {
  std::vector<std::shared_ptr<ProxyState>> states;
  std::lock_guard<std::mutex> lock(LiveMutex());
  for (auto& [raw, weak] : Live()) {
    if (auto s = weak.lock()) states.push_back(std::move(s));
  }
  return states;
}

void Decref(ProxyState& s) {
  if (s.owner_pid.load() != getpid()) return;
  s.owner_pid.store(0);
  if (s.link && s.link->shut_down.load()) return;
  try {
    PublicCall(s.token.address, s.authkey, "decref",
               Object::tuple({Object(s.token.id)}));
  } catch (const std::exception& e) {
    logging::debug("decref failed for ", s.token.repr(), ": ", e.what());
  }
}

// At exit, as Python's proxies' finalizers do: the references this process
// still holds are released (before the manager itself shuts down).
void ReleaseAllAtExit() {
  for (const std::shared_ptr<ProxyState>& s : LiveStates()) Decref(*s);
}

std::atomic<pid_t> g_exit_hook_pid{0};
void EnsureExitHook() {
  const pid_t me = getpid();
  if (g_exit_hook_pid.exchange(me) == me) return;
  // Kept for the life of the process (a Finalize copy shares the
  // registration).
  static Finalize* hook = nullptr;
  delete hook;
  hook = new Finalize(&ReleaseAllAtExit, /*exitpriority=*/10);
}

void AfterFork() {
  const bool server = InManagerServerChild();
  std::vector<std::shared_ptr<ProxyState>> states = LiveStates();
  for (const std::shared_ptr<ProxyState>& s : states) {
    if (s->owner_pid.load() == 0) continue;
    s->owner_pid.store(0);
    if (server || (s->link && s->link->shut_down.load())) continue;
    try {
      Incref(*s);
      s->owner_pid.store(getpid());
    } catch (const std::exception& e) {
      logging::debug("could not take a reference in the child for ",
                     s->token.repr(), ": ", e.what());
    }
  }
  if (!server && !states.empty()) EnsureExitHook();
}

void Track(const std::shared_ptr<ProxyState>& s) {
  static const int token = register_after_fork(&AfterFork);
  (void)token;
  {
    std::lock_guard<std::mutex> lock(LiveMutex());
    Live().emplace(s.get(), s);
  }
  EnsureExitHook();
}

std::atomic<bool> g_server_child{false};

}  // namespace

void SetManagerServerChild(bool value) { g_server_child.store(value); }
bool InManagerServerChild() { return g_server_child.load(); }

Response PublicCall(const connection::Address& address,
                    const std::string& authkey, std::string_view method,
                    const Object& args) {
  // As CPython's clients do, and as CPython's server requires: each of the
  // server's own functions is called on a connection of its own, which the
  // server closes after answering; only accept_connection turns a
  // connection into one serving a thread's proxies.
  connection::Connection c = connection::Client(address, {.authkey = authkey});
  try {
    c.send_bytes(EncodePublic(method, args));
    return Decode(c.recv_bytes());
  } catch (const EOFError& e) {
    RaiseLost(address, e);
  }
}

Response Transact(const ProxyState& state, const std::string& request) {
  return TransactAt(state.token.address, state.authkey, request,
                    &state.connection_key);
}

void Incref(const ProxyState& s) {
  PublicCall(s.token.address, s.authkey, "incref",
             Object::tuple({Object(s.token.id)}));
}

std::shared_ptr<ProxyState> NewState(
    Token token, std::string authkey,
    std::optional<std::vector<std::string>> exposed,
    std::shared_ptr<ManagerLink> link, const char* proxy_name, bool owned) {
  auto s = std::make_shared<ProxyState>();
  s->token = std::move(token);
  s->authkey = std::move(authkey);
  s->exposed = std::move(exposed);
  s->link = std::move(link);
  s->proxy_name = proxy_name;
  s->connection_key = KeyOf(s->token.address, s->authkey);
  s->owner_pid.store(owned ? getpid() : 0);
  Track(s);
  return s;
}

ProxyState::~ProxyState() {
  {
    std::lock_guard<std::mutex> lock(LiveMutex());
    Live().erase(this);
  }
  Decref(*this);
}

std::string EncodeRequestObject(std::string_view id, std::string_view method,
                                const Object& args, const Object& kwds) {
  reduction::Writer w;
  w.begin_tuple();
  w.write_str(id);
  w.write_str(method);
  w.save(args.is_tuple() ? args : Object::tuple({args}));
  w.save(kwds);
  w.end_tuple();
  return w.finish();
}

std::shared_ptr<ProxyState> AdoptReturned(const ProxyState& from,
                                          const Object& result,
                                          const char* proxy_name) {
  if (!result.is_tuple() || result.size() != 2) {
    throw TypeError(
        "the method returned a copy, not a proxy: register it in "
        "method_to_typeid to receive a proxy, or ask for a value type");
  }
  Token token = TokenFromObject(result.items()[1]);
  token.address = from.token.address;  // as the caller reached the server
  std::optional<std::vector<std::string>> exposed;
  if (!result.items()[0].is_none()) {
    exposed.emplace();
    for (const Object& n : result.items()[0].items()) {
      exposed->push_back(n.as_str());
    }
  }
  return NewState(std::move(token), from.authkey, std::move(exposed), from.link,
                  proxy_name, /*owned=*/true);
}

std::string ProxyRepr(const ProxyState& state, const void* self) {
  std::string name = state.proxy_name;
  if (name == "AutoProxy")
    name = absl::StrCat("AutoProxy[", state.token.type_id, "]");
  return absl::StrFormat("<%s object, typeid '%s' at %p>", name,
                         state.token.type_id, self);
}

const Token& TokenOf(const ProxyState& state) { return state.token; }

ProxyRecipe RecipeOf(const ProxyState& state) {
  ProxyRecipe r;
  r.token = state.token;
  if (state.authkey != current_process().authkey()) r.authkey = state.authkey;
  r.exposed = state.exposed;
  return r;
}

std::shared_ptr<ProxyState> Rebuild(ProxyRecipe recipe,
                                    const char* proxy_name) {
  std::string authkey =
      recipe.authkey ? *recipe.authkey : current_process().authkey();
  auto s = NewState(std::move(recipe.token), std::move(authkey),
                    std::move(recipe.exposed), nullptr, proxy_name,
                    /*owned=*/false);
  Incref(*s);
  s->owner_pid.store(getpid());
  return s;
}

Object LocalAttribute(const ProxyState& state, const std::string& name) {
  std::lock_guard<std::mutex> lock(state.mu);
  auto it = state.local_attrs.find(name);
  if (it == state.local_attrs.end()) {
    throw AttributeError("'NamespaceProxy' object has no attribute '" + name +
                         "'");
  }
  return it->second;
}

void SetLocalAttribute(ProxyState& state, const std::string& name,
                       Object value) {
  std::lock_guard<std::mutex> lock(state.mu);
  state.local_attrs[name] = std::move(value);
}

}  // namespace internal

std::string Token::repr() const {
  return absl::StrCat("Token(typeid='", type_id, "', address=", address.repr(),
                      ", id='", id, "')");
}

const internal::ProxyState& BaseProxy::state() const {
  if (!state_) {
    throw ValueError(
        "this proxy refers to no shared object (default-constructed or "
        "moved from); get one from a manager");
  }
  return *state_;
}

std::vector<std::string> BaseProxy::_exposed_() const {
  const internal::ProxyState& s = state();
  if (s.exposed) return *s.exposed;
  Object methods =
      internal::PublicCall(s.token.address, s.authkey, "get_methods",
                           Object::tuple({internal::TokenToObject(s.token)}))
          .result;
  std::vector<std::string> names;
  for (const Object& n : methods.items()) names.push_back(n.as_str());
  return names;
}

std::string BaseProxy::str() const {
  try {
    return _callmethod<std::string>("__str__");
  } catch (const Exception&) {
    std::string r = repr();
    return r.substr(0, r.size() - 1) + "; '__str__()' failed>";
  }
}

std::ostream& operator<<(std::ostream& os, const BaseProxy& proxy) {
  return os << proxy.str();
}

std::ostream& operator<<(std::ostream& os, const ItemRef& ref) {
  return os << reduction::str(ref.get());
}

std::ostream& operator<<(std::ostream& os, const NamespaceProxy::AttrRef& ref) {
  return os << reduction::str(ref.get());
}

void ListProxy::iterator::Fetch() {
  try {
    current_ = list_->_callmethod("__getitem__", index_);
  } catch (const IndexError&) {
    list_ = nullptr;
  }
}

void IteratorProxy::iterator::Fetch() {
  try {
    current_ = proxy_->next();
  } catch (const StopIteration&) {
    proxy_ = nullptr;
  }
}

Object NamespaceProxy::getattr(const std::string& name) const {
  if (!name.empty() && name[0] == '_') {
    return internal::LocalAttribute(*_state(), name);
  }
  return _callmethod("__getattribute__", name);
}

void NamespaceProxy::delattr(const std::string& name) const {
  if (!name.empty() && name[0] == '_') {
    std::lock_guard<std::mutex> lock(_state()->mu);
    if (_state()->local_attrs.erase(name) == 0) {
      throw AttributeError(name);
    }
    return;
  }
  _callmethod<void>("__delattr__", name);
}

}  // namespace multiprocessing::managers

namespace multiprocessing::reduction {

void Pickler<managers::slice>::Save(Writer& w, const managers::slice& s) {
  // As CPython pickles a slice, so that CPython's servers understand it too.
  w.save(Slice{s.start, s.stop, s.step});
}

namespace internal {

void SaveProxyRecipe(Writer& w, const managers::internal::ProxyRecipe& r) {
  w.save(managers::internal::RecipeToObject(r));
}

managers::internal::ProxyRecipe LoadProxyRecipe(Reader& r) {
  return managers::internal::RecipeFromObject(r.load<Object>());
}

}  // namespace internal
}  // namespace multiprocessing::reduction
