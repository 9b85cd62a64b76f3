// Proxies: handles, in any process, to objects held by a manager's server
// (Python's multiprocessing.managers.BaseProxy and the proxy types of
// SyncManager).
//
//   ListProxy l = manager.list(std::vector<int>{0, 1, 4, 9});
//   std::cout << l << "\n";          // [0, 1, 4, 9]   (str: the referent's)
//   std::cout << l.repr() << "\n";   // <ListProxy object, typeid 'list' at 0x...>
//   Object x = l[2];                 // 4  (a copy, as pickle returns it)
//   l[2] = "four";                   // __setitem__ in the server
//   l.append(d);                     // a proxy of the same manager: the list
//                                    // now holds the shared object itself
//   l._callmethod("__getitem__", managers::slice(1, 3));   // [1, 'four']
//
// Each call is one request over a connection that the calling thread keeps
// to the manager (opened on first use, re-opened in a forked child). A method
// that throws in the server throws the same class here (IndexError, KeyError,
// ...); other failures of the server (an unknown object, a method not
// exposed) raise RemoteError carrying the server's description; a server
// that went away raises EOFError or OSError.
//
// Copies of a proxy share one reference to the shared object; the manager
// frees the object when the last proxy of every process is gone. A proxy
// pickles (reduction/pickle.h) as its token, so it can be a Process argument
// under every start method or travel through a Queue or Connection; the
// receiving process takes a reference of its own. Inherited by a forked
// child, a proxy takes a new reference in the child as well.
#ifndef MULTIPROCESSING_MANAGERS_PROXY_H_
#define MULTIPROCESSING_MANAGERS_PROXY_H_

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "connection/address.h"
#include "errors/errors.h"
#include "reduction/object.h"
#include "reduction/pickle.h"

namespace multiprocessing::managers {

using reduction::Object;
// Seconds; std::nullopt blocks for ever.
using Timeout = std::optional<std::chrono::duration<double>>;

// Identifies a shared object: its type id, its manager's address and its id
// in that manager.
struct Token {
  std::string type_id;
  connection::Address address{"", 0};
  std::string id;
  // "Token(typeid='list', address='/tmp/...', id='7f...')".
  std::string repr() const;
};

// Python's slice(start, stop[, step]), for __getitem__ / __setitem__ /
// __delitem__ of list and array proxies.
struct slice {
  std::optional<int64_t> start;
  std::optional<int64_t> stop;
  std::optional<int64_t> step;
  slice(std::optional<int64_t> start_, std::optional<int64_t> stop_,
        std::optional<int64_t> step_ = std::nullopt)
      : start(start_), stop(stop_), step(step_) {}
};

namespace internal {
struct ManagerLink;
struct ProxyState;

// The state a proxy of another process is rebuilt from.
struct ProxyRecipe {
  Token token;
  std::optional<std::string> authkey;
  std::optional<std::vector<std::string>> exposed;
};

// The result of one request to a server: kind "#RETURN" or "#PROXY".
struct Response {
  std::string kind;
  Object result;
};

// Encodes a method request: (id, method, args, {}).
template <class... A>
std::string EncodeRequest(std::string_view id, std::string_view method,
                          const A&... args) {
  reduction::OutOfBand oob;
  reduction::Writer w(reduction::kDefaultProtocol, &oob);
  w.begin_tuple();
  w.write_str(id);
  w.write_str(method);
  w.begin_tuple();
  (w.save(args), ...);
  w.end_tuple();
  w.begin_dict();
  w.end_dict();
  w.end_tuple();
  return w.finish();
}
// The same with the arguments already as a tuple Object.
std::string EncodeRequestObject(std::string_view id, std::string_view method,
                                const Object& args, const Object& kwds);

// Sends `request` over the calling thread's connection to the proxy's
// manager and decodes the answer (raising what the server reported).
Response Transact(const ProxyState& state, const std::string& request);

// A new proxy state for an object the server just returned by reference
// ("#PROXY"): the reference the server took is adopted.
std::shared_ptr<ProxyState> AdoptReturned(const ProxyState& from,
                                          const Object& result,
                                          const char* proxy_name);

// The value of `o` as T (through pickle), TypeError on a shape mismatch.
template <class T>
T Convert(const Object& o) {
  if constexpr (std::is_same_v<T, Object>) {
    return o;
  } else {
    reduction::OutOfBand oob;
    return reduction::loads<T>(reduction::dumps(o, &oob), &oob);
  }
}

std::string ProxyRepr(const ProxyState& state, const void* self);
const Token& TokenOf(const ProxyState& state);
std::shared_ptr<ProxyState> Rebuild(ProxyRecipe recipe, const char* proxy_name);
ProxyRecipe RecipeOf(const ProxyState& state);
Object LocalAttribute(const ProxyState& state, const std::string& name);
void SetLocalAttribute(ProxyState& state, const std::string& name,
                       Object value);
}  // namespace internal

// Python's BaseProxy: calls methods of the referent by name.
class BaseProxy {
 public:
  static constexpr const char* kProxyName = "BaseProxy";

  // A proxy to nothing; any call raises ValueError.
  BaseProxy() = default;
  explicit BaseProxy(std::shared_ptr<internal::ProxyState> state)
      : state_(std::move(state)) {}

  // Calls `method` of the referent with `args` in the manager's process and
  // returns a copy of the result as R (Object by default, void to ignore
  // it), or a proxy when R is a proxy type and the method's result is
  // registered to be returned by reference (method_to_typeid).
  template <class R = Object, class... A>
  R _callmethod(std::string_view method, const A&... args) const {
    const std::string request = internal::EncodeRequest(id(), method, args...);
    internal::Response response = internal::Transact(state(), request);
    return Finish<R>(std::move(response));
  }
  // With the positional arguments as a tuple and keywords as a dict, as in
  // Python's _callmethod(methodname, args, kwds).
  template <class R = Object>
  R _callmethod_args(std::string_view method, const Object& args,
                     const Object& kwds = Object::dict()) const {
    internal::Response response = internal::Transact(
        state(), internal::EncodeRequestObject(id(), method, args, kwds));
    return Finish<R>(std::move(response));
  }

  // A copy of the referent.
  template <class R = Object>
  R _getvalue() const {
    return _callmethod<R>("#GETVALUE");
  }
  // The methods this proxy may call (what the server exposes).
  std::vector<std::string> _exposed_() const;
  const Token& _token() const { return internal::TokenOf(state()); }
  const std::string& _id() const { return _token().id; }

  // "<ListProxy object, typeid 'list' at 0x...>".
  std::string repr() const { return internal::ProxyRepr(state(), this); }
  // The referent's repr() (Python's str(proxy)).
  std::string str() const;

  explicit operator bool() const { return state_ != nullptr; }
  // Proxies are equal when they are the same handle (Python compares
  // identity); they never compare equal to a value.
  friend bool operator==(const BaseProxy& a, const BaseProxy& b) {
    return a.state_ == b.state_;
  }
  friend bool operator==(const BaseProxy&, const Object&) { return false; }

  const std::shared_ptr<internal::ProxyState>& _state() const { return state_; }

 protected:
  const internal::ProxyState& state() const;
  const std::string& id() const { return _token().id; }

 private:
  template <class R>
  R Finish(internal::Response response) const {
    if constexpr (std::derived_from<R, BaseProxy>) {
      return R(
          internal::AdoptReturned(state(), response.result, R::kProxyName));
    } else if constexpr (std::is_void_v<R>) {
      return;
    } else {
      return internal::Convert<R>(response.result);
    }
  }

  std::shared_ptr<internal::ProxyState> state_;
};

std::ostream& operator<<(std::ostream& os, const BaseProxy& proxy);

// A proxy for any registered type: call methods with _callmethod.
class AutoProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "AutoProxy";
  using BaseProxy::BaseProxy;
};

// An element (or attribute) of a shared object: reading it asks the server
// for a copy, assigning stores the value in the server.
class ItemRef {
 public:
  ItemRef(const BaseProxy& proxy, Object key, const char* getter,
          const char* setter)
      : proxy_(proxy), key_(std::move(key)), getter_(getter), setter_(setter) {}

  Object get() const { return proxy_._callmethod(getter_, key_); }
  operator Object() const { return get(); }  // NOLINT: reads like Python
  template <class T>
  T as() const {
    return proxy_._callmethod<T>(getter_, key_);
  }
  template <class T>
  ItemRef& operator=(const T& value) {
    proxy_._callmethod<void>(setter_, key_, value);
    return *this;
  }
  ItemRef& operator=(const ItemRef& other) { return *this = other.get(); }
  friend std::ostream& operator<<(std::ostream& os, const ItemRef& ref);

 private:
  BaseProxy proxy_;
  Object key_;
  const char* getter_;
  const char* setter_;
};

// Proxy of a shared list.
class ListProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "ListProxy";
  using BaseProxy::BaseProxy;

  ItemRef operator[](int64_t index) const {
    return ItemRef(*this, Object(index), "__getitem__", "__setitem__");
  }
  // l[start:stop:step], a copy.
  Object operator[](const slice& s) const {
    return _callmethod("__getitem__", s);
  }
  template <class T>
  void set_slice(const slice& s, const T& values) const {
    _callmethod<void>("__setitem__", s, values);
  }
  void del(int64_t index) const { _callmethod<void>("__delitem__", index); }
  void del(const slice& s) const { _callmethod<void>("__delitem__", s); }

  template <class T>
  void append(const T& value) const {
    _callmethod<void>("append", value);
  }
  template <class T>
  void extend(const T& values) const {
    _callmethod<void>("extend", values);
  }
  template <class T>
  void insert(int64_t index, const T& value) const {
    _callmethod<void>("insert", index, value);
  }
  Object pop(int64_t index = -1) const { return _callmethod("pop", index); }
  template <class T>
  void remove(const T& value) const {
    _callmethod<void>("remove", value);
  }
  template <class T>
  int64_t index(const T& value) const {
    return _callmethod<int64_t>("index", value);
  }
  template <class T>
  int64_t count(const T& value) const {
    return _callmethod<int64_t>("count", value);
  }
  template <class T>
  bool contains(const T& value) const {
    return _callmethod<bool>("__contains__", value);
  }
  void reverse() const { _callmethod<void>("reverse"); }
  void sort(bool reverse = false) const {
    _callmethod_args<void>("sort", Object::tuple(),
                           Object::dict({{"reverse", reverse}}));
  }
  int64_t len() const { return _callmethod<int64_t>("__len__"); }
  int64_t size() const { return len(); }
  template <class T>
  const ListProxy& operator+=(const T& values) const {
    _callmethod<void>("__iadd__", values);
    return *this;
  }
  const ListProxy& operator*=(int64_t n) const {
    _callmethod<void>("__imul__", n);
    return *this;
  }

  // Iteration as Python does for a list proxy: l[0], l[1], ... until
  // IndexError (each element one request).
  class iterator {
   public:
    using value_type = Object;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(const ListProxy* list, int64_t index)
        : list_(list), index_(index) {
      Fetch();
    }
    const Object& operator*() const { return current_; }
    const Object* operator->() const { return &current_; }
    iterator& operator++() {
      ++index_;
      Fetch();
      return *this;
    }
    friend bool operator==(const iterator& a, const iterator& b) {
      return a.list_ == b.list_;
    }

   private:
    void Fetch();
    const ListProxy* list_ = nullptr;
    int64_t index_ = 0;
    Object current_;
  };
  iterator begin() const { return iterator(this, 0); }
  iterator end() const { return iterator(); }
};

// Proxy of a shared dict.
class DictProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "DictProxy";
  using BaseProxy::BaseProxy;

  template <class K>
  ItemRef operator[](const K& key) const {
    return ItemRef(*this, internal::Convert<Object>(ToObject(key)),
                   "__getitem__", "__setitem__");
  }
  template <class K>
  Object get(const K& key, const Object& fallback = Object()) const {
    return _callmethod("get", key, fallback);
  }
  template <class K>
  bool contains(const K& key) const {
    return _callmethod<bool>("__contains__", key);
  }
  template <class K>
  void del(const K& key) const {
    _callmethod<void>("__delitem__", key);
  }
  template <class K>
  Object pop(const K& key) const {
    return _callmethod("pop", key);
  }
  template <class K, class V>
  Object setdefault(const K& key, const V& value) const {
    return _callmethod("setdefault", key, value);
  }
  template <class M>
  void update(const M& mapping) const {
    _callmethod<void>("update", mapping);
  }
  Object popitem() const { return _callmethod("popitem"); }
  // Lists, as copies.
  Object keys() const { return _callmethod("keys"); }
  Object values() const { return _callmethod("values"); }
  Object items() const { return _callmethod("items"); }
  Object copy() const { return _callmethod("copy"); }
  void clear() const { _callmethod<void>("clear"); }
  int64_t len() const { return _callmethod<int64_t>("__len__"); }
  int64_t size() const { return len(); }

 private:
  template <class K>
  static Object ToObject(const K& key) {
    if constexpr (std::is_convertible_v<const K&, Object>) {
      return Object(key);
    } else {
      return internal::Convert<Object>(Object(key));
    }
  }
};

// Proxy of a shared Namespace: ns["x"] = 10 sets the referent's attribute x;
// names starting with '_' are attributes of this proxy (shared by its
// copies), not of the referent.
class NamespaceProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "NamespaceProxy";
  using BaseProxy::BaseProxy;

  class AttrRef;
  AttrRef operator[](std::string name) const;
  // AttributeError when unset.
  Object getattr(const std::string& name) const;
  template <class T>
  void setattr(const std::string& name, const T& value) const {
    if (!name.empty() && name[0] == '_') {
      internal::SetLocalAttribute(
          *_state(), name, internal::Convert<Object>(ToObjectValue(value)));
    } else {
      _callmethod<void>("__setattr__", name, value);
    }
  }
  void delattr(const std::string& name) const;

 private:
  template <class T>
  static Object ToObjectValue(const T& value) {
    reduction::OutOfBand oob;
    return reduction::loads<Object>(reduction::dumps(value, &oob), &oob);
  }
};

class NamespaceProxy::AttrRef {
 public:
  AttrRef(const NamespaceProxy& ns, std::string name)
      : ns_(ns), name_(std::move(name)) {}
  Object get() const { return ns_.getattr(name_); }
  operator Object() const { return get(); }  // NOLINT
  template <class T>
  T as() const {
    return internal::Convert<T>(get());
  }
  template <class T>
  AttrRef& operator=(const T& value) {
    ns_.setattr(name_, value);
    return *this;
  }
  friend std::ostream& operator<<(std::ostream& os, const AttrRef& ref);

 private:
  NamespaceProxy ns_;
  std::string name_;
};

inline NamespaceProxy::AttrRef NamespaceProxy::operator[](
    std::string name) const {
  return AttrRef(*this, std::move(name));
}

// Proxy of a shared Value(typecode, value).
class ValueProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "ValueProxy";
  using BaseProxy::BaseProxy;
  template <class T = Object>
  T get() const {
    return _callmethod<T>("get");
  }
  template <class T>
  void set(const T& value) const {
    _callmethod<void>("set", value);
  }
  // Python's `.value`.
  Object value() const { return get(); }
  template <class T>
  void set_value(const T& v) const {
    set(v);
  }
};

// Proxy of a shared Array(typecode, sequence).
class ArrayProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "ArrayProxy";
  using BaseProxy::BaseProxy;
  ItemRef operator[](int64_t index) const {
    return ItemRef(*this, Object(index), "__getitem__", "__setitem__");
  }
  Object operator[](const slice& s) const {
    return _callmethod("__getitem__", s);
  }
  int64_t len() const { return _callmethod<int64_t>("__len__"); }
};

// Proxy of a shared queue.Queue (SyncManager.Queue, JoinableQueue).
class QueueProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "AutoProxy";
  using BaseProxy::BaseProxy;
  // queues::Full when full and not blocking (or after `timeout`).
  template <class T>
  void put(const T& item, bool block = true,
           Timeout timeout = std::nullopt) const {
    _callmethod<void>("put", item, block, Seconds(timeout));
  }
  template <class T>
  void put_nowait(const T& item) const {
    _callmethod<void>("put_nowait", item);
  }
  // queues::Empty when empty and not blocking (or after `timeout`).
  template <class T = Object>
  T get(bool block = true, Timeout timeout = std::nullopt) const {
    return _callmethod<T>("get", block, Seconds(timeout));
  }
  template <class T = Object>
  T get_nowait() const {
    return _callmethod<T>("get_nowait");
  }
  int64_t qsize() const { return _callmethod<int64_t>("qsize"); }
  bool empty() const { return _callmethod<bool>("empty"); }
  bool full() const { return _callmethod<bool>("full"); }
  void task_done() const { _callmethod<void>("task_done"); }
  void join() const { _callmethod<void>("join"); }

 private:
  static std::optional<double> Seconds(Timeout t) {
    if (!t) return std::nullopt;
    return t->count();
  }
};

// Proxy of a shared Lock, RLock, Semaphore or BoundedSemaphore (Python's
// AcquirerProxy). Meets Lockable, so std::lock_guard works.
class AcquirerProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "AcquirerProxy";
  using BaseProxy::BaseProxy;
  bool acquire(bool blocking = true, Timeout timeout = std::nullopt) const {
    return _callmethod<bool>("acquire", blocking, Seconds(timeout));
  }
  void release() const { _callmethod<void>("release"); }
  void lock() const { acquire(); }
  bool try_lock() const { return acquire(false); }
  void unlock() const { release(); }

 protected:
  static std::optional<double> Seconds(Timeout t) {
    if (!t) return std::nullopt;
    return t->count();
  }
};

// Proxy of a shared Condition.
class ConditionProxy : public AcquirerProxy {
 public:
  static constexpr const char* kProxyName = "ConditionProxy";
  using AcquirerProxy::AcquirerProxy;
  // False when `timeout` passed without a notification.
  bool wait(Timeout timeout = std::nullopt) const {
    return _callmethod<bool>("wait", Seconds(timeout));
  }
  void notify(int64_t n = 1) const { _callmethod<void>("notify", n); }
  void notify_all() const { _callmethod<void>("notify_all"); }
  // Waits until predicate() holds (checked in this process), or `timeout`.
  template <class P>
  bool wait_for(P predicate, Timeout timeout = std::nullopt) const {
    using Clock = std::chrono::steady_clock;
    std::optional<Clock::time_point> deadline;
    if (timeout) {
      deadline =
          Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout);
    }
    bool result = predicate();
    while (!result) {
      Timeout left;
      if (deadline) {
        left = *deadline - Clock::now();
        if (left->count() <= 0) break;
      }
      wait(left);
      result = predicate();
    }
    return result;
  }
};

// Proxy of a shared Event.
class EventProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "EventProxy";
  using BaseProxy::BaseProxy;
  bool is_set() const { return _callmethod<bool>("is_set"); }
  void set() const { _callmethod<void>("set"); }
  void clear() const { _callmethod<void>("clear"); }
  bool wait(Timeout timeout = std::nullopt) const {
    std::optional<double> seconds;
    if (timeout) seconds = timeout->count();
    return _callmethod<bool>("wait", seconds);
  }
};

// Proxy of a shared Barrier.
class BarrierProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "BarrierProxy";
  using BaseProxy::BaseProxy;
  // The arrival index; BrokenBarrierError when the barrier breaks.
  int64_t wait(Timeout timeout = std::nullopt) const {
    std::optional<double> seconds;
    if (timeout) seconds = timeout->count();
    return _callmethod<int64_t>("wait", seconds);
  }
  void abort() const { _callmethod<void>("abort"); }
  void reset() const { _callmethod<void>("reset"); }
  int64_t parties() const {
    return _callmethod<int64_t>("__getattribute__", "parties");
  }
  int64_t n_waiting() const {
    return _callmethod<int64_t>("__getattribute__", "n_waiting");
  }
  bool broken() const {
    return _callmethod<bool>("__getattribute__", "broken");
  }
};

namespace internal {
// How a function travels to a server that calls it (a Barrier's action): by
// its MP_REGISTER_FUNCTION name, as pickle sends a function by its qualified
// name. PicklingError for a function that is not registered. `address` null:
// None (no function).
reduction::Object FunctionReference(const void* address);
[[noreturn]] void CallableNotSendable(const char* what);

// The plain function a std::function holds; null for anything else.
template <class R, class... A>
const void* FunctionHeld(const std::function<R(A...)>& f) {
  auto* const* fn = f.template target<R (*)(A...)>();
  return fn ? reinterpret_cast<const void*>(*fn) : nullptr;
}

template <class F>
reduction::Object FunctionReference(const F& f) {
  using D = std::decay_t<F>;
  if constexpr (std::is_same_v<D, std::nullptr_t>) {
    return reduction::Object();
  } else if constexpr (std::is_pointer_v<D> &&
                       std::is_function_v<std::remove_pointer_t<D>>) {
    return FunctionReference(reinterpret_cast<const void*>(f));
  } else if constexpr (std::is_function_v<F>) {
    return FunctionReference(reinterpret_cast<const void*>(&f));
  } else if constexpr (requires { requires std::is_pointer_v<decltype(+f)>; }) {
    // A lambda without captures: the function it converts to.
    return FunctionReference(reinterpret_cast<const void*>(+f));
  } else if constexpr (requires { FunctionHeld(f); }) {
    // A std::function: only one holding a plain function can travel.
    if (!f) return reduction::Object();
    if (const void* fn = FunctionHeld(f)) return FunctionReference(fn);
    CallableNotSendable("a std::function holding a lambda or functor");
  } else {
    CallableNotSendable("a lambda with captures or a functor");
  }
}
}  // namespace internal

// Python's pool.AsyncResult of a manager's Pool: the result of
// apply_async / map_async, held by the server.
class AsyncResultProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "AsyncResultProxy";
  using BaseProxy::BaseProxy;
  // The result, or the call's exception; TimeoutError after `timeout`.
  template <class R = Object>
  R get(Timeout timeout = std::nullopt) const {
    return _callmethod<R>("get", Seconds(timeout));
  }
  void wait(Timeout timeout = std::nullopt) const {
    _callmethod<void>("wait", Seconds(timeout));
  }
  bool ready() const { return _callmethod<bool>("ready"); }
  bool successful() const { return _callmethod<bool>("successful"); }

 private:
  static std::optional<double> Seconds(Timeout timeout) {
    if (!timeout) return std::nullopt;
    return timeout->count();
  }
};

// Python's IteratorProxy: a shared iterator or generator, such as what a
// Pool's imap() returns through a manager. next() raises StopIteration at
// the end, and a range-for stops there:
//   for (const Object& x : it) ...
class IteratorProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "IteratorProxy";
  using BaseProxy::BaseProxy;

  template <class R = Object>
  R next() const {
    return _callmethod<R>("__next__");
  }
  // A generator's send(value) and close().
  template <class R = Object, class T>
  R send(const T& value) const {
    return _callmethod<R>("send", value);
  }
  void close() const { _callmethod<void>("close"); }

  class iterator {
   public:
    using value_type = Object;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(const IteratorProxy* proxy) : proxy_(proxy) { Fetch(); }
    const Object& operator*() const { return current_; }
    const Object* operator->() const { return &current_; }
    iterator& operator++() {
      Fetch();
      return *this;
    }
    friend bool operator==(const iterator& a, const iterator& b) {
      return a.proxy_ == b.proxy_;
    }

   private:
    void Fetch();
    const IteratorProxy* proxy_ = nullptr;
    Object current_;
  };
  // Each step is one next() request; the referent advances, so a second
  // loop continues where the first stopped (as in Python).
  iterator begin() const { return iterator(this); }
  iterator end() const { return iterator(); }
};

// Python's PoolProxy: a manager's Pool (SyncManager::Pool()). `fn` is a
// function registered with MP_REGISTER_FUNCTION (PicklingError otherwise);
// R is the type the results are read as (Object by default).
//
//   auto pool = manager.Pool(4);
//   std::vector<int> squares = pool.map<int>(square, std::vector{1, 2, 3});
//   auto r = pool.apply_async(add, 2, 3);   // r.get<int>() == 5
class PoolProxy : public BaseProxy {
 public:
  static constexpr const char* kProxyName = "PoolProxy";
  using BaseProxy::BaseProxy;

  template <class R = Object, class F, class... A>
  R apply(const F& fn, const A&... args) const {
    return _callmethod<R>("apply", internal::FunctionReference(fn),
                          std::make_tuple(args...));
  }
  template <class F, class... A>
  AsyncResultProxy apply_async(const F& fn, const A&... args) const {
    return _callmethod<AsyncResultProxy>("apply_async",
                                         internal::FunctionReference(fn),
                                         std::make_tuple(args...));
  }
  template <class R = Object, class F, class S>
  std::vector<R> map(const F& fn, const S& iterable,
                     std::optional<int64_t> chunksize = std::nullopt) const {
    return _callmethod<std::vector<R>>("map", internal::FunctionReference(fn),
                                       iterable, chunksize);
  }
  template <class F, class S>
  AsyncResultProxy map_async(
      const F& fn, const S& iterable,
      std::optional<int64_t> chunksize = std::nullopt) const {
    return _callmethod<AsyncResultProxy>(
        "map_async", internal::FunctionReference(fn), iterable, chunksize);
  }
  // fn(*args) for each tuple of `iterable`.
  template <class R = Object, class F, class S>
  std::vector<R> starmap(
      const F& fn, const S& iterable,
      std::optional<int64_t> chunksize = std::nullopt) const {
    return _callmethod<std::vector<R>>(
        "starmap", internal::FunctionReference(fn), iterable, chunksize);
  }
  template <class F, class S>
  AsyncResultProxy starmap_async(
      const F& fn, const S& iterable,
      std::optional<int64_t> chunksize = std::nullopt) const {
    return _callmethod<AsyncResultProxy>(
        "starmap_async", internal::FunctionReference(fn), iterable, chunksize);
  }
  // Results one by one, in order (imap) or as they come (imap_unordered).
  template <class F, class S>
  IteratorProxy imap(const F& fn, const S& iterable,
                     int64_t chunksize = 1) const {
    return _callmethod<IteratorProxy>("imap", internal::FunctionReference(fn),
                                      iterable, chunksize);
  }
  template <class F, class S>
  IteratorProxy imap_unordered(const F& fn, const S& iterable,
                               int64_t chunksize = 1) const {
    return _callmethod<IteratorProxy>(
        "imap_unordered", internal::FunctionReference(fn), iterable, chunksize);
  }
  void close() const { _callmethod<void>("close"); }
  void terminate() const { _callmethod<void>("terminate"); }
  void join() const { _callmethod<void>("join"); }
};

}  // namespace multiprocessing::managers

namespace multiprocessing::reduction {

// A slice travels as CPython's slice object.
template <>
struct Pickler<managers::slice> {
  static void Save(Writer& w, const managers::slice& s);
};

namespace internal {
void SaveProxyRecipe(Writer& w, const managers::internal::ProxyRecipe& r);
managers::internal::ProxyRecipe LoadProxyRecipe(Reader& r);
}  // namespace internal

// A proxy pickles as its token (with its authkey when it differs from the
// receiving side's default, current_process().authkey()); unpickling it in
// another process makes a proxy with a reference of its own, and in its own
// manager's server it stands for the referent.
template <class P>
requires std::derived_from<P, managers::BaseProxy>
struct Pickler<P> {
  static void Save(Writer& w, const P& proxy) {
    if (!proxy) throw PicklingError("cannot pickle an empty proxy");
    internal::SaveProxyRecipe(w, managers::internal::RecipeOf(*proxy._state()));
  }
  static P Load(Reader& r) {
    return P(managers::internal::Rebuild(internal::LoadProxyRecipe(r),
                                         P::kProxyName));
  }
};

}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_MANAGERS_PROXY_H_
