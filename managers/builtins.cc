// SyncManager's shared objects: Python's list, dict, Namespace, Value, Array,
// queue.Queue, and threading's Event, Lock, RLock, Semaphore,
// BoundedSemaphore, Condition and Barrier, as they behave in Python.
//
// The data containers share one recursive mutex (Python's GIL plays this
// role in CPython's server): operations are short, and a container printing
// another one it holds needs both. The blocking primitives have their own
// mutex and condition variable, so that a blocked call holds nothing else.
#include "managers/internal/builtins.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "errors/errors.h"
#include "managers/internal/wire.h"
#include "pool/pool.h"
#include "queues/queues.h"
#include "reduction/registry.h"

namespace multiprocessing::managers {

using reduction::Object;

// ---------------------------------------------------------------------------
// Referent defaults and helpers of referent.h.

std::string Referent::repr() const {
  return internal::DefaultRepr(type_name(), this);
}

Object Referent::value() const {
  throw TypeError("cannot pickle '" + type_name() + "' object");
}

Object Call::args_tuple() const {
  std::vector<Object> values;
  values.reserve(args.size());
  for (const Item& a : args) values.push_back(ValueOf(a));
  return Object::tuple(std::move(values));
}

void Call::expect(std::string_view what, size_t min, size_t max) const {
  if (args.size() < min || args.size() > max) {
    throw TypeError(absl::StrCat(
        std::string(what.data(), what.size()), " takes from ", min, " to ", max,
        " positional arguments but ", args.size(), " were given"));
  }
}

Object ValueOf(const Item& item) {
  return item.ref ? item.ref->value() : item.object;
}

namespace {
// Referents being printed by this thread, to print a container that holds
// itself as Python does ("[[...]]").
thread_local std::unordered_set<const Referent*>* printing = nullptr;
}  // namespace

std::string ReprOf(const Item& item) {
  if (!item.ref) return reduction::repr(item.object);
  std::unordered_set<const Referent*> local;
  bool outermost = printing == nullptr;
  if (outermost) printing = &local;
  std::string out;
  if (printing->insert(item.ref.get()).second) {
    try {
      out = item.ref->repr();
    } catch (...) {
      printing->erase(item.ref.get());
      if (outermost) printing = nullptr;
      throw;
    }
    printing->erase(item.ref.get());
  } else {
    out = "[...]";
  }
  if (outermost) printing = nullptr;
  return out;
}

namespace internal {

[[noreturn]] void RaiseNoMethod(std::string_view type, std::string_view name) {
  throw AttributeError(absl::StrCat("'", std::string(type),
                                    "' object has no attribute '",
                                    std::string(name), "'"));
}

std::string DefaultRepr(std::string_view type, const void* address) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", address);
  return absl::StrCat("<", std::string(type), " object at ", buf, ">");
}

namespace {
thread_local const Resolver* current_resolver = nullptr;
}  // namespace

void SetResolver(const Resolver* resolver) { current_resolver = resolver; }

Item Resolve(const Object& o) {
  if (current_resolver != nullptr && IsTagged(o, kProxyTag)) {
    return (*current_resolver)(o);
  }
  return Item(o);
}

namespace {

using Seconds = std::optional<double>;
using Clock = std::chrono::steady_clock;

std::recursive_mutex& DataMutex() {
  static auto* mu = new std::recursive_mutex;
  return *mu;
}
using DataLock = std::lock_guard<std::recursive_mutex>;

// Positional argument `index`, else keyword `name`.
std::optional<Item> Arg(const Call& call, size_t index, const char* name) {
  if (index < call.args.size()) return call.args[index];
  if (call.kwds.is_dict()) {
    if (const Object* v = call.kwds.get(Object(name))) return Resolve(*v);
  }
  return std::nullopt;
}
Item RequiredArg(const Call& call, size_t index, const char* name,
                 std::string_view method) {
  std::optional<Item> a = Arg(call, index, name);
  if (!a) {
    throw TypeError(absl::StrCat(std::string(method),
                                 "() missing required argument '", name, "'"));
  }
  return *a;
}
bool BoolArg(const Call& call, size_t index, const char* name, bool fallback) {
  std::optional<Item> a = Arg(call, index, name);
  return a ? ValueOf(*a).truth() : fallback;
}
int64_t IntArg(const Call& call, size_t index, const char* name,
               int64_t fallback) {
  std::optional<Item> a = Arg(call, index, name);
  if (!a) return fallback;
  Object v = ValueOf(*a);
  if (!v.is_int() && !v.is_bool()) {
    throw TypeError(absl::StrCat(
        "'", v.type_name(), "' object cannot be interpreted as an integer"));
  }
  return v.as_int();
}
// A timeout: None (or absent) waits for ever; with `negative_forever` (the
// locks' -1) a negative value does too.
Seconds TimeoutArg(const Call& call, size_t index, bool negative_forever) {
  std::optional<Item> a = Arg(call, index, "timeout");
  if (!a) return std::nullopt;
  Object v = ValueOf(*a);
  if (v.is_none()) return std::nullopt;
  double t = v.as_float();
  if (t < 0) {
    if (negative_forever) return std::nullopt;
    throw ValueError("'timeout' must be a non-negative number");
  }
  return t;
}

// Waits on `cv` until `pred` holds (true), `timeout` passes (false), or the
// server stops (RuntimeError).
template <class Pred>
bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
               const bool& interrupted, Seconds timeout, Pred pred) {
  auto ready = [&] { return interrupted || pred(); };
  if (!timeout) {
    cv.wait(lock, ready);
  } else {
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(*timeout));
    cv.wait_until(lock, deadline, ready);
  }
  if (interrupted) {
    throw RuntimeError("the manager's server is shutting down");
  }
  return pred();
}

// The longest range a server expands into a list.
constexpr size_t kMaxRangeItems = size_t{1} << 24;

// Items of an iterable argument: a list, tuple, set, dict (its keys), range,
// str, or a shared list of this server.
std::vector<Item> ItemsOf(const Item& iterable) {
  std::vector<Item> out;
  Object v;
  if (iterable.ref) {
    v = iterable.ref->value();
  } else {
    v = iterable.object;
  }
  switch (v.type()) {
    case Object::Type::kList:
    case Object::Type::kTuple:
    case Object::Type::kSet:
    case Object::Type::kFrozenSet:
      for (const Object& o : v.items()) out.push_back(Resolve(o));
      return out;
    case Object::Type::kDict:
      for (const Object& o : v.keys()) out.push_back(Item(o));
      return out;
    case Object::Type::kRange: {
      // MemoryError for a range too long to hold.
      const Object list = v.to_list(kMaxRangeItems);
      for (const Object& o : list.items()) out.push_back(Item(o));
      return out;
    }
    case Object::Type::kStr: {
      const std::string& s = v.as_str();
      for (size_t i = 0; i < s.size();) {
        size_t n = 1;
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0xF0) {
          n = 4;
        } else if (c >= 0xE0) {
          n = 3;
        } else if (c >= 0xC0) {
          n = 2;
        }
        out.push_back(Item(Object(s.substr(i, n))));
        i += n;
      }
      return out;
    }
    default:
      throw TypeError(
          absl::StrCat("'", v.type_name(), "' object is not iterable"));
  }
}

bool ItemEquals(const Item& a, const Object& b) {
  if (a.ref) return a.ref->value() == b;
  return a.object == b;
}

// Python's slice.indices(n): the selected positions.
std::vector<int64_t> SliceIndices(const Object& s, int64_t n) {
  const reduction::Slice::Indices ix =
      s.as_slice().indices(static_cast<size_t>(n));
  std::vector<int64_t> out;
  out.reserve(ix.count);
  for (size_t k = 0; k < ix.count; ++k) {
    out.push_back(ix.start + static_cast<int64_t>(k) * ix.step);
  }
  return out;
}

bool IsSlice(const Item& item) { return !item.ref && item.object.is_slice(); }

int64_t IndexArg(const Item& item, int64_t n, const char* what) {
  Object v = ValueOf(item);
  if (!v.is_int() && !v.is_bool()) {
    throw TypeError(absl::StrCat(
        what, " indices must be integers or slices, not ", v.type_name()));
  }
  int64_t i = v.as_int();
  if (i < 0) i += n;
  if (i < 0 || i >= n)
    throw IndexError(absl::StrCat(what, " index out of range"));
  return i;
}

std::string ReprItems(const std::vector<Item>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += ReprOf(items[i]);
  }
  return out;
}

Object ListValue(const std::vector<Item>& items) {
  std::vector<Object> values;
  values.reserve(items.size());
  for (const Item& i : items) values.push_back(ValueOf(i));
  return Object::list(std::move(values));
}

// ---------------------------------------------------------------------------
// list

class ListReferent : public Referent {
 public:
  explicit ListReferent(std::vector<Item> items) : items_(std::move(items)) {}

  std::string type_name() const override { return "list"; }
  std::string repr() const override {
    DataLock lock(DataMutex());
    return "[" + ReprItems(items_) + "]";
  }
  Object value() const override {
    DataLock lock(DataMutex());
    return ListValue(items_);
  }
  std::vector<std::string> methods() const override { return Exposed(); }
  static std::vector<std::string> Exposed() {
    return {"__add__",     "__contains__", "__delitem__",  "__getitem__",
            "__len__",     "__mul__",      "__reversed__", "__rmul__",
            "__setitem__", "append",       "count",        "extend",
            "index",       "insert",       "pop",          "remove",
            "reverse",     "sort",         "__imul__",     "__iadd__"};
  }

  Item call(const std::string& m, Call& c) override {
    DataLock lock(DataMutex());
    const int64_t n = static_cast<int64_t>(items_.size());
    if (m == "__getitem__") {
      c.expect("__getitem__", 1, 1);
      if (IsSlice(c.args[0])) {
        std::vector<Object> out;
        for (int64_t i : SliceIndices(c.args[0].object, n)) {
          out.push_back(ValueOf(items_[static_cast<size_t>(i)]));
        }
        return Item(Object::list(std::move(out)));
      }
      return Item(
          ValueOf(items_[static_cast<size_t>(IndexArg(c.args[0], n, "list"))]));
    }
    if (m == "__setitem__") {
      c.expect("__setitem__", 2, 2);
      if (IsSlice(c.args[0])) {
        SetSlice(c.args[0].object, ItemsOf(c.args[1]));
        return Item();
      }
      items_[static_cast<size_t>(IndexArg(c.args[0], n, "list assignment"))] =
          c.args[1];
      return Item();
    }
    if (m == "__delitem__") {
      c.expect("__delitem__", 1, 1);
      if (IsSlice(c.args[0])) {
        std::vector<int64_t> idx = SliceIndices(c.args[0].object, n);
        std::sort(idx.begin(), idx.end());
        for (auto it = idx.rbegin(); it != idx.rend(); ++it) {
          items_.erase(items_.begin() + *it);
        }
        return Item();
      }
      items_.erase(items_.begin() + IndexArg(c.args[0], n, "list assignment"));
      return Item();
    }
    if (m == "__len__") return Item(Object(n));
    if (m == "__contains__") {
      c.expect("__contains__", 1, 1);
      return Item(Object(Find(ValueOf(c.args[0]), 0) >= 0));
    }
    if (m == "append") {
      c.expect("list.append", 1, 1);
      items_.push_back(c.args[0]);
      return Item();
    }
    if (m == "extend" || m == "__iadd__") {
      c.expect(m, 1, 1);
      for (Item& i : ItemsOf(c.args[0])) items_.push_back(std::move(i));
      return Item();
    }
    if (m == "__imul__") {
      c.expect("__imul__", 1, 1);
      int64_t k = IntArg(c, 0, "value", 1);
      std::vector<Item> copy = items_;
      items_.clear();
      for (int64_t r = 0; r < k; ++r)
        items_.insert(items_.end(), copy.begin(), copy.end());
      return Item();
    }
    if (m == "__mul__" || m == "__rmul__") {
      int64_t k = IntArg(c, 0, "value", 1);
      std::vector<Object> out;
      for (int64_t r = 0; r < k; ++r) {
        for (const Item& i : items_) out.push_back(ValueOf(i));
      }
      return Item(Object::list(std::move(out)));
    }
    if (m == "__add__") {
      c.expect("__add__", 1, 1);
      Object out = ListValue(items_);
      for (const Item& i : ItemsOf(c.args[0])) out.append(ValueOf(i));
      return Item(out);
    }
    if (m == "__reversed__") {
      Object out = ListValue(items_);
      std::reverse(out.mutable_items().begin(), out.mutable_items().end());
      return Item(out);
    }
    if (m == "insert") {
      c.expect("insert", 2, 2);
      int64_t i = IntArg(c, 0, "index", 0);
      if (i < 0) i = std::max<int64_t>(0, i + n);
      i = std::min(i, n);
      items_.insert(items_.begin() + i, c.args[1]);
      return Item();
    }
    if (m == "pop") {
      c.expect("pop", 0, 1);
      if (n == 0) throw IndexError("pop from empty list");
      int64_t i = IntArg(c, 0, "index", -1);
      if (i < 0) i += n;
      if (i < 0 || i >= n) throw IndexError("pop index out of range");
      Item out = items_[static_cast<size_t>(i)];
      items_.erase(items_.begin() + i);
      return Item(ValueOf(out));
    }
    if (m == "remove") {
      c.expect("remove", 1, 1);
      int64_t i = Find(ValueOf(c.args[0]), 0);
      if (i < 0) throw ValueError("list.remove(x): x not in list");
      items_.erase(items_.begin() + i);
      return Item();
    }
    if (m == "index") {
      c.expect("index", 1, 3);
      Object x = ValueOf(c.args[0]);
      int64_t i = Find(x, 0);
      if (i < 0) throw ValueError(reduction::repr(x) + " is not in list");
      return Item(Object(i));
    }
    if (m == "count") {
      c.expect("count", 1, 1);
      Object x = ValueOf(c.args[0]);
      int64_t k = 0;
      for (const Item& i : items_) k += ItemEquals(i, x) ? 1 : 0;
      return Item(Object(k));
    }
    if (m == "reverse") {
      std::reverse(items_.begin(), items_.end());
      return Item();
    }
    if (m == "sort") {
      c.expect("sort", 0, 0);
      bool reverse = false;
      if (const Object* r = c.kwds.get(Object("reverse"))) reverse = r->truth();
      std::vector<std::pair<Object, Item>> keyed;
      for (Item& i : items_) keyed.emplace_back(ValueOf(i), std::move(i));
      std::stable_sort(
          keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
            return reverse ? Less(b.first, a.first) : Less(a.first, b.first);
          });
      items_.clear();
      for (auto& k : keyed) items_.push_back(std::move(k.second));
      return Item();
    }
    RaiseNoMethod("list", m);
  }

 private:
  int64_t Find(const Object& x, int64_t from) const {
    for (size_t i = static_cast<size_t>(from); i < items_.size(); ++i) {
      if (ItemEquals(items_[i], x)) return static_cast<int64_t>(i);
    }
    return -1;
  }
  void SetSlice(const Object& s, std::vector<Item> values) {
    const int64_t n = static_cast<int64_t>(items_.size());
    const reduction::Slice::Indices ix =
        s.as_slice().indices(static_cast<size_t>(n));
    std::vector<int64_t> idx = SliceIndices(s, n);
    if (ix.step == 1) {
      // An empty selection inserts at the clamped start.
      const int64_t lo =
          idx.empty() ? std::clamp<int64_t>(ix.start, 0, n) : idx.front();
      items_.erase(items_.begin() + lo,
                   items_.begin() + lo + static_cast<int64_t>(idx.size()));
      items_.insert(items_.begin() + lo, values.begin(), values.end());
      return;
    }
    if (values.size() != idx.size()) {
      throw ValueError(absl::StrCat("attempt to assign sequence of size ",
                                    values.size(),
                                    " to extended slice of size ", idx.size()));
    }
    for (size_t k = 0; k < idx.size(); ++k)
      items_[static_cast<size_t>(idx[k])] = values[k];
  }

  std::vector<Item> items_;
};

// ---------------------------------------------------------------------------
// dict (insertion-ordered)

class DictReferent : public Referent {
 public:
  std::string type_name() const override { return "dict"; }
  std::string repr() const override {
    DataLock lock(DataMutex());
    std::string out = "{";
    bool first = true;
    for (const auto& e : entries_) {
      if (!e) continue;
      if (!first) out += ", ";
      first = false;
      out += reduction::repr(e->first) + ": " + ReprOf(e->second);
    }
    return out + "}";
  }
  Object value() const override {
    DataLock lock(DataMutex());
    return ValueLocked();
  }
  std::vector<std::string> methods() const override { return Exposed(); }
  static std::vector<std::string> Exposed() {
    return {"__contains__", "__delitem__", "__getitem__", "__len__",
            "__setitem__",  "clear",       "copy",        "get",
            "items",        "keys",        "pop",         "popitem",
            "setdefault",   "update",      "values"};
  }

  void Set(Object key, Item value) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      entries_[it->second]->second = std::move(value);
      return;
    }
    index_.emplace(key, entries_.size());
    entries_.emplace_back(std::in_place, std::move(key), std::move(value));
  }
  void Update(const Item& arg) {
    Object v = arg.ref ? arg.ref->value() : arg.object;
    if (v.is_dict()) {
      for (size_t i = 0; i < v.keys().size(); ++i) {
        Set(v.keys()[i], Resolve(v.values()[i]));
      }
      return;
    }
    for (const Item& pair : ItemsOf(arg)) {
      Object p = ValueOf(pair);
      if (!(p.is_tuple() || p.is_list()) || p.size() != 2) {
        throw ValueError(
            "dictionary update sequence element has the wrong length; 2 is "
            "required");
      }
      Set(p.items()[0], Resolve(p.items()[1]));
    }
  }

  Item call(const std::string& m, Call& c) override {
    DataLock lock(DataMutex());
    if (m == "__getitem__") {
      c.expect("__getitem__", 1, 1);
      const Item* v = Find(ValueOf(c.args[0]));
      if (!v) throw KeyError(reduction::repr(ValueOf(c.args[0])));
      return Item(ValueOf(*v));
    }
    if (m == "__setitem__") {
      c.expect("__setitem__", 2, 2);
      Object key = ValueOf(c.args[0]);
      key.hash();  // TypeError for unhashable keys
      Set(std::move(key), c.args[1]);
      return Item();
    }
    if (m == "__delitem__" || m == "pop") {
      c.expect(m, 1, m == "pop" ? 2 : 1);
      Object key = ValueOf(c.args[0]);
      auto it = index_.find(key);
      if (it == index_.end()) {
        if (m == "pop" && c.args.size() == 2) return Item(ValueOf(c.args[1]));
        throw KeyError(reduction::repr(key));
      }
      Item out = std::move(entries_[it->second]->second);
      entries_[it->second].reset();
      index_.erase(it);
      Compact();
      return m == "pop" ? Item(ValueOf(out)) : Item();
    }
    if (m == "__len__")
      return Item(Object(static_cast<int64_t>(index_.size())));
    if (m == "__contains__") {
      c.expect("__contains__", 1, 1);
      return Item(Object(Find(ValueOf(c.args[0])) != nullptr));
    }
    if (m == "get") {
      c.expect("get", 1, 2);
      const Item* v = Find(ValueOf(c.args[0]));
      if (v) return Item(ValueOf(*v));
      return Item(c.args.size() == 2 ? ValueOf(c.args[1]) : Object());
    }
    if (m == "setdefault") {
      c.expect("setdefault", 1, 2);
      Object key = ValueOf(c.args[0]);
      if (const Item* v = Find(key)) return Item(ValueOf(*v));
      Item dflt = c.args.size() == 2 ? c.args[1] : Item();
      key.hash();
      Set(key, dflt);
      return Item(ValueOf(dflt));
    }
    if (m == "keys" || m == "values" || m == "items") {
      std::vector<Object> out;
      for (const auto& e : entries_) {
        if (!e) continue;
        if (m == "keys") {
          out.push_back(e->first);
        } else if (m == "values") {
          out.push_back(ValueOf(e->second));
        } else {
          out.push_back(Object::tuple({e->first, ValueOf(e->second)}));
        }
      }
      return Item(Object::list(std::move(out)));
    }
    if (m == "copy") return Item(ValueLocked());
    if (m == "clear") {
      entries_.clear();
      index_.clear();
      return Item();
    }
    if (m == "popitem") {
      for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
        if (!*it) continue;
        Object out = Object::tuple({(*it)->first, ValueOf((*it)->second)});
        index_.erase((*it)->first);
        it->reset();
        Compact();
        return Item(out);
      }
      throw KeyError("'popitem(): dictionary is empty'");
    }
    if (m == "update") {
      c.expect("update", 0, 1);
      if (!c.args.empty()) Update(c.args[0]);
      for (size_t i = 0; i < c.kwds.keys().size(); ++i) {
        Set(c.kwds.keys()[i], Resolve(c.kwds.values()[i]));
      }
      return Item();
    }
    RaiseNoMethod("dict", m);
  }

 private:
  const Item* Find(const Object& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &entries_[it->second]->second;
  }
  Object ValueLocked() const {
    std::vector<std::pair<Object, Object>> out;
    for (const auto& e : entries_) {
      if (e) out.emplace_back(e->first, ValueOf(e->second));
    }
    return Object::dict(std::move(out));
  }
  // Drops the holes left by deletions once they are the majority.
  void Compact() {
    if (entries_.size() < 16 || index_.size() * 2 > entries_.size()) return;
    std::vector<std::optional<std::pair<Object, Item>>> kept;
    index_.clear();
    for (auto& e : entries_) {
      if (!e) continue;
      index_.emplace(e->first, kept.size());
      kept.push_back(std::move(e));
    }
    entries_ = std::move(kept);
  }

  std::vector<std::optional<std::pair<Object, Item>>> entries_;
  absl::flat_hash_map<Object, size_t> index_;
};

// ---------------------------------------------------------------------------
// Namespace

class NamespaceReferent : public Referent {
 public:
  std::string type_name() const override { return "Namespace"; }
  std::string repr() const override {
    DataLock lock(DataMutex());
    std::vector<std::string> parts;
    for (const auto& [name, item] : attrs_) {
      if (!name.empty() && name[0] == '_') continue;
      parts.push_back(name + "=" + ReprOf(item));
    }
    std::sort(parts.begin(), parts.end());
    return "Namespace(" + absl::StrJoin(parts, ", ") + ")";
  }
  // A dict of the attributes (a Namespace instance has no pickle here).
  Object value() const override {
    DataLock lock(DataMutex());
    std::vector<std::pair<Object, Object>> out;
    for (const auto& [name, item] : attrs_)
      out.emplace_back(Object(name), ValueOf(item));
    return Object::dict(std::move(out));
  }
  std::vector<std::string> methods() const override {
    return {"__getattribute__", "__setattr__", "__delattr__"};
  }
  Item call(const std::string& m, Call& c) override {
    DataLock lock(DataMutex());
    std::string name = ValueOf(RequiredArg(c, 0, "name", m)).as_str();
    auto it = std::find_if(attrs_.begin(), attrs_.end(),
                           [&](const auto& a) { return a.first == name; });
    if (m == "__getattribute__") {
      if (it == attrs_.end()) {
        throw AttributeError("'Namespace' object has no attribute '" + name +
                             "'");
      }
      return Item(ValueOf(it->second));
    }
    if (m == "__setattr__") {
      c.expect("__setattr__", 2, 2);
      if (it == attrs_.end()) {
        attrs_.emplace_back(name, c.args[1]);
      } else {
        it->second = c.args[1];
      }
      return Item();
    }
    if (m == "__delattr__") {
      if (it == attrs_.end()) throw AttributeError(name);
      attrs_.erase(it);
      return Item();
    }
    RaiseNoMethod("Namespace", m);
  }

 private:
  std::vector<std::pair<std::string, Item>> attrs_;
};

// ---------------------------------------------------------------------------
// Value and Array

class ValueReferent : public Referent {
 public:
  ValueReferent(std::string typecode, Item value)
      : typecode_(std::move(typecode)), value_(std::move(value)) {}
  std::string type_name() const override { return "Value"; }
  std::string repr() const override {
    DataLock lock(DataMutex());
    return "Value(" + reduction::repr(Object(typecode_)) + ", " +
           ReprOf(value_) + ")";
  }
  Object value() const override {
    DataLock lock(DataMutex());
    return ValueOf(value_);
  }
  std::vector<std::string> methods() const override { return {"get", "set"}; }
  Item call(const std::string& m, Call& c) override {
    DataLock lock(DataMutex());
    if (m == "get") return Item(ValueOf(value_));
    if (m == "set") {
      c.expect("set", 1, 1);
      value_ = c.args[0];
      return Item();
    }
    RaiseNoMethod("Value", m);
  }

 private:
  std::string typecode_;
  Item value_;
};

bool FloatTypecode(const std::string& t) { return t == "d" || t == "f"; }

Object ArrayElement(const std::string& typecode, const Object& v) {
  if (FloatTypecode(typecode)) {
    if (!v.is_float() && !v.is_int()) {
      throw TypeError(absl::StrCat("must be real number, not ", v.type_name()));
    }
    return Object(v.as_float());
  }
  if (typecode == "u") {
    if (!v.is_str() || v.size() != 1)
      throw TypeError("array item must be unicode character");
    return v;
  }
  if (!v.is_int()) {
    throw TypeError(absl::StrCat(
        "'", v.type_name(), "' object cannot be interpreted as an integer"));
  }
  return v;
}

class ArrayReferent : public Referent {
 public:
  ArrayReferent(std::string typecode, std::vector<Object> items)
      : typecode_(std::move(typecode)), items_(std::move(items)) {}
  std::string type_name() const override { return "array"; }
  std::string repr() const override {
    DataLock lock(DataMutex());
    std::string out = "array(" + reduction::repr(Object(typecode_));
    if (items_.empty()) return out + ")";
    return out + ", " + reduction::repr(Object::list(items_)) + ")";
  }
  Object value() const override {
    DataLock lock(DataMutex());
    return Object::list(items_);
  }
  std::vector<std::string> methods() const override {
    return {"__len__", "__getitem__", "__setitem__"};
  }
  Item call(const std::string& m, Call& c) override {
    DataLock lock(DataMutex());
    const int64_t n = static_cast<int64_t>(items_.size());
    if (m == "__len__") return Item(Object(n));
    if (m == "__getitem__") {
      c.expect("__getitem__", 1, 1);
      if (IsSlice(c.args[0])) {
        std::vector<Object> out;
        for (int64_t i : SliceIndices(c.args[0].object, n))
          out.push_back(items_[static_cast<size_t>(i)]);
        return Item(Object::list(std::move(out)));
      }
      return Item(items_[static_cast<size_t>(IndexArg(c.args[0], n, "array"))]);
    }
    if (m == "__setitem__") {
      c.expect("__setitem__", 2, 2);
      if (IsSlice(c.args[0])) {
        std::vector<int64_t> idx = SliceIndices(c.args[0].object, n);
        std::vector<Item> values = ItemsOf(c.args[1]);
        if (values.size() != idx.size()) {
          throw ValueError(
              "can only assign array of the same length to a slice");
        }
        for (size_t k = 0; k < idx.size(); ++k) {
          items_[static_cast<size_t>(idx[k])] =
              ArrayElement(typecode_, ValueOf(values[k]));
        }
        return Item();
      }
      int64_t i = IndexArg(c.args[0], n, "array assignment");
      items_[static_cast<size_t>(i)] =
          ArrayElement(typecode_, ValueOf(c.args[1]));
      return Item();
    }
    RaiseNoMethod("array", m);
  }

 private:
  std::string typecode_;
  std::vector<Object> items_;
};

// ---------------------------------------------------------------------------
// Blocking primitives.

class Blocking : public Referent {
 public:
  void interrupt() override {
    std::lock_guard<std::mutex> lock(mu_);
    interrupted_ = true;
    cv_.notify_all();
  }

 protected:
  template <class Pred>
  bool Wait(std::unique_lock<std::mutex>& lock, Seconds timeout, Pred pred) {
    return WaitUntil(lock, cv_, interrupted_, timeout, pred);
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool interrupted_ = false;
};

class QueueReferent : public Blocking {
 public:
  QueueReferent(int64_t maxsize, bool joinable)
      : maxsize_(maxsize), joinable_(joinable) {}
  std::string type_name() const override {
    return joinable_ ? "JoinableQueue" : "Queue";
  }
  std::vector<std::string> methods() const override {
    return {"empty", "full",       "get",   "get_nowait", "join",
            "put",   "put_nowait", "qsize", "task_done"};
  }
  Item call(const std::string& m, Call& c) override {
    std::unique_lock<std::mutex> lock(mu_);
    auto full = [&] {
      return maxsize_ > 0 && static_cast<int64_t>(items_.size()) >= maxsize_;
    };
    if (m == "put" || m == "put_nowait") {
      Object item = ValueOf(RequiredArg(c, 0, "item", m));
      bool block = m == "put" && BoolArg(c, 1, "block", true);
      Seconds timeout = m == "put" ? TimeoutArg(c, 2, false) : std::nullopt;
      if (full()) {
        if (!block || !Wait(lock, timeout, [&] { return !full(); }))
          throw queues::Full("");
      }
      items_.push_back(std::move(item));
      ++unfinished_;
      cv_.notify_all();
      return Item();
    }
    if (m == "get" || m == "get_nowait") {
      bool block = m == "get" && BoolArg(c, 0, "block", true);
      Seconds timeout = m == "get" ? TimeoutArg(c, 1, false) : std::nullopt;
      if (items_.empty()) {
        if (!block || !Wait(lock, timeout, [&] { return !items_.empty(); })) {
          throw queues::Empty("");
        }
      }
      Object out = std::move(items_.front());
      items_.pop_front();
      cv_.notify_all();
      return Item(std::move(out));
    }
    if (m == "qsize") return Item(Object(static_cast<int64_t>(items_.size())));
    if (m == "empty") return Item(Object(items_.empty()));
    if (m == "full") return Item(Object(full()));
    if (m == "task_done") {
      if (unfinished_ <= 0)
        throw ValueError("task_done() called too many times");
      if (--unfinished_ == 0) cv_.notify_all();
      return Item();
    }
    if (m == "join") {
      Wait(lock, std::nullopt, [&] { return unfinished_ == 0; });
      return Item();
    }
    RaiseNoMethod(type_name(), m);
  }

 private:
  int64_t maxsize_;
  bool joinable_;
  std::deque<Object> items_;
  int64_t unfinished_ = 0;
};

class EventReferent : public Blocking {
 public:
  std::string type_name() const override { return "Event"; }
  std::vector<std::string> methods() const override {
    return {"is_set", "set", "clear", "wait"};
  }
  Item call(const std::string& m, Call& c) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (m == "is_set") return Item(Object(flag_));
    if (m == "set") {
      flag_ = true;
      cv_.notify_all();
      return Item();
    }
    if (m == "clear") {
      flag_ = false;
      return Item();
    }
    if (m == "wait")
      return Item(
          Object(Wait(lock, TimeoutArg(c, 0, false), [&] { return flag_; })));
    RaiseNoMethod("Event", m);
  }

 private:
  bool flag_ = false;
};

// Lock-like referents, usable by Condition.
class LockLike : public Blocking {
 public:
  virtual bool Acquire(bool blocking, Seconds timeout) = 0;
  virtual void Release() = 0;
  virtual bool IsOwned() = 0;
  virtual int64_t ReleaseAll() = 0;
  virtual void Restore(int64_t count) = 0;

  std::vector<std::string> methods() const override {
    return {"acquire", "release"};
  }
  Item call(const std::string& m, Call& c) override {
    if (m == "acquire") {
      bool blocking = BoolArg(c, 0, "blocking", true);
      Seconds timeout = TimeoutArg(c, 1, true);
      if (!blocking && timeout)
        throw ValueError("can't specify a timeout for a non-blocking call");
      return Item(Object(Acquire(blocking, timeout)));
    }
    if (m == "release") {
      Release();
      return Item();
    }
    RaiseNoMethod(type_name(), m);
  }
};

class LockReferent : public LockLike {
 public:
  std::string type_name() const override { return "Lock"; }
  std::string repr() const override {
    return std::string("<") + (locked_ ? "locked" : "unlocked") +
           " _thread.lock object>";
  }
  bool Acquire(bool blocking, Seconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (locked_ &&
        (!blocking || !Wait(lock, timeout, [&] { return !locked_; })))
      return false;
    locked_ = true;
    return true;
  }
  void Release() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!locked_) throw RuntimeError("release unlocked lock");
    locked_ = false;
    cv_.notify_one();
  }
  bool IsOwned() override {
    std::lock_guard<std::mutex> lock(mu_);
    return locked_;
  }
  int64_t ReleaseAll() override {
    Release();
    return 1;
  }
  void Restore(int64_t) override { Acquire(true, std::nullopt); }

 private:
  bool locked_ = false;
};

// Owned by the server thread serving one client thread's connection.
class RLockReferent : public LockLike {
 public:
  std::string type_name() const override { return "RLock"; }
  bool Acquire(bool blocking, Seconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    auto me = std::this_thread::get_id();
    if (count_ > 0 && owner_ == me) {
      ++count_;
      return true;
    }
    if (count_ > 0 &&
        (!blocking || !Wait(lock, timeout, [&] { return count_ == 0; })))
      return false;
    owner_ = me;
    count_ = 1;
    return true;
  }
  void Release() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (count_ == 0 || owner_ != std::this_thread::get_id()) {
      throw RuntimeError("cannot release un-acquired lock");
    }
    if (--count_ == 0) cv_.notify_one();
  }
  bool IsOwned() override {
    std::lock_guard<std::mutex> lock(mu_);
    return count_ > 0 && owner_ == std::this_thread::get_id();
  }
  int64_t ReleaseAll() override {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t n = count_;
    count_ = 0;
    cv_.notify_one();
    return n;
  }
  void Restore(int64_t count) override {
    Acquire(true, std::nullopt);
    std::lock_guard<std::mutex> lock(mu_);
    count_ = count;
  }

 private:
  std::thread::id owner_;
  int64_t count_ = 0;
};

class SemaphoreReferent : public LockLike {
 public:
  SemaphoreReferent(int64_t value, bool bounded)
      : value_(value), initial_(value), bounded_(bounded) {
    if (value < 0) throw ValueError("semaphore initial value must be >= 0");
  }
  std::string type_name() const override {
    return bounded_ ? "BoundedSemaphore" : "Semaphore";
  }
  bool Acquire(bool blocking, Seconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (value_ == 0 &&
        (!blocking || !Wait(lock, timeout, [&] { return value_ > 0; }))) {
      return false;
    }
    --value_;
    return true;
  }
  void Release() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (bounded_ && value_ >= initial_)
      throw ValueError("Semaphore released too many times");
    ++value_;
    cv_.notify_one();
  }
  bool IsOwned() override { return true; }
  int64_t ReleaseAll() override {
    Release();
    return 1;
  }
  void Restore(int64_t) override { Acquire(true, std::nullopt); }

 private:
  int64_t value_;
  int64_t initial_;
  bool bounded_;
};

class ConditionReferent : public Blocking {
 public:
  explicit ConditionReferent(std::shared_ptr<LockLike> lock)
      : lock_(std::move(lock)) {}
  std::string type_name() const override { return "Condition"; }
  std::vector<std::string> methods() const override {
    return {"acquire", "release", "wait", "wait_for", "notify", "notify_all"};
  }
  void interrupt() override {
    Blocking::interrupt();
    lock_->interrupt();
  }
  Item call(const std::string& m, Call& c) override {
    if (m == "acquire" || m == "release") return lock_->call(m, c);
    if (m == "wait") {
      Seconds timeout = TimeoutArg(c, 0, false);
      if (!lock_->IsOwned())
        throw RuntimeError("cannot wait on un-acquired lock");
      auto waiter = std::make_shared<bool>(false);
      {
        std::lock_guard<std::mutex> lock(mu_);
        waiters_.push_back(waiter);
      }
      int64_t saved = lock_->ReleaseAll();
      bool notified = false;
      try {
        std::unique_lock<std::mutex> lock(mu_);
        notified = Wait(lock, timeout, [&] { return *waiter; });
        if (!notified)
          waiters_.erase(std::find(waiters_.begin(), waiters_.end(), waiter));
      } catch (...) {
        lock_->Restore(saved);
        throw;
      }
      lock_->Restore(saved);
      return Item(Object(notified));
    }
    if (m == "notify" || m == "notify_all") {
      if (!lock_->IsOwned())
        throw RuntimeError("cannot notify on un-acquired lock");
      std::lock_guard<std::mutex> lock(mu_);
      int64_t n = m == "notify_all" ? static_cast<int64_t>(waiters_.size())
                                    : IntArg(c, 0, "n", 1);
      while (n-- > 0 && !waiters_.empty()) {
        *waiters_.front() = true;
        waiters_.pop_front();
      }
      cv_.notify_all();
      return Item();
    }
    RaiseNoMethod("Condition", m);
  }

 private:
  std::shared_ptr<LockLike> lock_;
  std::deque<std::shared_ptr<bool>> waiters_;
};

// A function argument (a Barrier's action, a Pool's func): None or a
// registered function, (kFunctionTag, name).
const reduction::RegisteredFunction* FunctionArg(const Call& call, size_t index,
                                                 const char* name) {
  std::optional<Item> a = Arg(call, index, name);
  if (!a) return nullptr;
  Object v = ValueOf(*a);
  if (v.is_none()) return nullptr;
  if (!IsTagged(v, kFunctionTag) || v.size() != 2 || !v.items()[1].is_str()) {
    throw TypeError(absl::StrCat(
        "'", name,
        "' must be a function registered with MP_REGISTER_FUNCTION, got ",
        reduction::repr(v).substr(0, 100)));
  }
  const std::string& fn = v.items()[1].as_str();
  const reduction::RegisteredFunction* f = reduction::FindFunction(fn);
  if (f == nullptr) {
    throw UnpicklingError("the function '" + fn +
                          "' is not registered in the manager's server "
                          "program (MP_REGISTER_FUNCTION)");
  }
  return f;
}

// --- Pool: a process pool living in the server (Python's manager.Pool()).

// One task for the server's pool: (function name, args tuple). The pool's
// workers call the registered function with the pickled arguments.
Object RunRegisteredTask(Object task) {
  const reduction::RegisteredFunction* f =
      reduction::FindFunction(task.items()[0].as_str());
  if (f == nullptr) {
    throw UnpicklingError("the function '" + task.items()[0].as_str() +
                          "' is not registered in the pool worker's program");
  }
  reduction::OutOfBand args_oob, result_oob;
  std::string result = f->call_pickled(reduction::dumps(task.items()[1]),
                                       &args_oob, &result_oob);
  return reduction::loads<Object>(result, &result_oob);
}

Object ToObject(Object o) { return o; }
Object ToObject(std::vector<Object> v) { return Object::list(std::move(v)); }

// Python's pool.AsyncResult, for apply_async and map_async.
template <class T>
class AsyncResultReferent : public Referent {
 public:
  explicit AsyncResultReferent(pool::AsyncResult<T> result)
      : result_(std::move(result)) {}
  std::string type_name() const override { return "AsyncResult"; }
  std::vector<std::string> methods() const override {
    return {"get", "wait", "ready", "successful"};
  }
  Item call(const std::string& m, Call& c) override {
    if (m == "get") return Item(ToObject(result_.get(Duration(c))));
    if (m == "wait") {
      result_.wait(Duration(c));
      return Item();
    }
    if (m == "ready") return Item(Object(result_.ready()));
    if (m == "successful") return Item(Object(result_.successful()));
    RaiseNoMethod("AsyncResult", m);
  }

 private:
  static pool::Timeout Duration(const Call& c) {
    Seconds t = TimeoutArg(c, 0, true);
    if (!t) return std::nullopt;
    return std::chrono::duration<double>(*t);
  }
  pool::AsyncResult<T> result_;
};

// imap's results, as a shared iterator.
class PoolIteratorReferent : public Referent {
 public:
  explicit PoolIteratorReferent(pool::IMapIterator<Object> it)
      : it_(std::move(it)) {}
  std::string type_name() const override { return "IMapIterator"; }
  std::vector<std::string> methods() const override { return {"__next__"}; }
  Item call(const std::string& m, Call&) override {
    if (m != "__next__") RaiseNoMethod("IMapIterator", m);
    std::optional<Object> v = it_.next();
    if (!v) throw StopIteration();
    return Item(std::move(*v));
  }

 private:
  pool::IMapIterator<Object> it_;
};

class PoolReferent : public Referent {
 public:
  explicit PoolReferent(std::optional<int> processes)
      : pool_(pool::PoolOptions{.processes = processes}) {}
  std::string type_name() const override { return "Pool"; }
  std::vector<std::string> methods() const override {
    return {"apply",          "apply_async",   "close",    "imap",
            "imap_unordered", "join",          "map",      "map_async",
            "starmap",        "starmap_async", "terminate"};
  }
  Item call(const std::string& m, Call& c) override {
    if (m == "apply" || m == "apply_async") {
      Object task = Task(c, m);
      std::optional<Item> a = Arg(c, 1, "args");
      task =
          Object::tuple({task, a ? ArgsTuple(ValueOf(*a)) : Object::tuple()});
      auto result = pool_.apply_async(&RunRegisteredTask, {task});
      if (m == "apply_async")
        return Item(std::make_shared<AsyncResultReferent<Object>>(result));
      return Item(result.get());
    }
    if (m == "map" || m == "map_async" || m == "starmap" ||
        m == "starmap_async" || m == "imap" || m == "imap_unordered") {
      const bool star = m.starts_with("starmap");
      Object fn = Task(c, m);
      Object iterable = ValueOf(RequiredArg(c, 1, "iterable", m));
      const Object items = iterable.to_list();
      std::vector<Object> tasks;
      tasks.reserve(items.size());
      for (const Object& item : items.items()) {
        tasks.push_back(Object::tuple(
            {fn, star ? ArgsTuple(item) : Object::tuple({item})}));
      }
      std::optional<Item> cs = Arg(c, 2, "chunksize");
      std::optional<size_t> chunksize;
      if (cs && !ValueOf(*cs).is_none()) {
        int64_t n = ValueOf(*cs).as_int();
        if (n < 1) throw ValueError("chunksize must be at least 1");
        chunksize = static_cast<size_t>(n);
      }
      if (m.starts_with("imap")) {
        auto it = m == "imap" ? pool_.imap(&RunRegisteredTask, tasks,
                                           chunksize.value_or(1))
                              : pool_.imap_unordered(&RunRegisteredTask, tasks,
                                                     chunksize.value_or(1));
        return Item(std::make_shared<PoolIteratorReferent>(std::move(it)));
      }
      auto result = pool_.map_async(&RunRegisteredTask, tasks, chunksize);
      if (m.ends_with("_async")) {
        return Item(
            std::make_shared<AsyncResultReferent<std::vector<Object>>>(result));
      }
      return Item(Object::list(result.get()));
    }
    if (m == "close") {
      pool_.close();
      return Item();
    }
    if (m == "terminate") {
      pool_.terminate();
      return Item();
    }
    if (m == "join") {
      pool_.join();
      return Item();
    }
    RaiseNoMethod("Pool", m);
  }

 private:
  // The function argument as the first half of a task.
  static Object Task(const Call& c, const std::string& m) {
    const reduction::RegisteredFunction* f = FunctionArg(c, 0, "func");
    if (f == nullptr)
      throw TypeError(m +
                      "() needs a function registered with "
                      "MP_REGISTER_FUNCTION");
    return Object(f->name);
  }
  static Object ArgsTuple(const Object& args) {
    if (args.is_tuple()) return args;
    if (args.is_list()) return Object::tuple(args.items());
    throw TypeError("the arguments must be a tuple, got " +
                    std::string(args.type_name()));
  }
  pool::Pool pool_;
};

class BarrierReferent : public Blocking {
 public:
  BarrierReferent(int64_t parties, const reduction::RegisteredFunction* action,
                  Seconds timeout)
      : parties_(parties), action_(action), timeout_(timeout) {
    if (parties < 1) throw ValueError("parties must be >= 1");
  }
  std::string type_name() const override { return "Barrier"; }
  std::vector<std::string> methods() const override {
    return {"__getattribute__", "wait", "abort", "reset"};
  }
  Item call(const std::string& m, Call& c) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (m == "wait") {
      Seconds timeout = TimeoutArg(c, 0, false);
      if (!timeout) timeout = timeout_;
      if (broken_) throw BrokenBarrierError("");
      std::shared_ptr<Generation> gen = gen_;
      int64_t index = count_++;
      if (count_ == parties_) {
        if (action_ != nullptr) {
          // Run before anyone is released; a failure breaks the barrier.
          try {
            reduction::OutOfBand args_oob, result_oob;
            action_->call_pickled(reduction::dumps(std::tuple<>()), &args_oob,
                                  &result_oob);
          } catch (...) {
            Break();
            throw;
          }
        }
        gen->released = true;
        count_ = 0;
        gen_ = std::make_shared<Generation>();
        cv_.notify_all();
        return Item(Object(index));
      }
      bool done =
          Wait(lock, timeout, [&] { return gen->released || gen->broken; });
      if (!done) {
        Break();
        throw BrokenBarrierError("");
      }
      if (gen->broken) throw BrokenBarrierError("");
      return Item(Object(index));
    }
    if (m == "abort") {
      Break();
      return Item();
    }
    if (m == "reset") {
      if (count_ > 0) gen_->broken = true;
      gen_ = std::make_shared<Generation>();
      count_ = 0;
      broken_ = false;
      cv_.notify_all();
      return Item();
    }
    if (m == "__getattribute__") {
      std::string name = ValueOf(RequiredArg(c, 0, "name", m)).as_str();
      if (name == "parties") return Item(Object(parties_));
      if (name == "n_waiting") return Item(Object(count_));
      if (name == "broken") return Item(Object(broken_));
      throw AttributeError("'Barrier' object has no attribute '" + name + "'");
    }
    RaiseNoMethod("Barrier", m);
  }

 private:
  struct Generation {
    bool released = false;
    bool broken = false;
  };
  void Break() {
    broken_ = true;
    gen_->broken = true;
    count_ = 0;
    gen_ = std::make_shared<Generation>();
    cv_.notify_all();
  }
  int64_t parties_;
  const reduction::RegisteredFunction* action_;
  Seconds timeout_;
  int64_t count_ = 0;
  bool broken_ = false;
  std::shared_ptr<Generation> gen_ = std::make_shared<Generation>();
};

std::vector<Item> InitialItems(const Call& c, const char* what) {
  c.expect(what, 0, 1);
  if (c.args.empty()) return {};
  return ItemsOf(c.args[0]);
}

}  // namespace

bool Less(const Object& a, const Object& b) {
  auto numeric = [](const Object& o) {
    return o.is_int() || o.is_bool() || o.is_float();
  };
  if (numeric(a) && numeric(b)) {
    if (!a.is_float() && !b.is_float()) return a.as_int128() < b.as_int128();
    return a.as_float() < b.as_float();
  }
  if (a.is_str() && b.is_str()) return a.as_str() < b.as_str();
  if ((a.is_bytes() || a.is_bytearray()) &&
      (b.is_bytes() || b.is_bytearray())) {
    return a.as_bytes() < b.as_bytes();
  }
  if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (x[i] == y[i]) continue;
      return Less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  throw TypeError(absl::StrCat("'<' not supported between instances of '",
                               a.type_name(), "' and '", b.type_name(), "'"));
}

const std::vector<Builtin>& Builtins() {
  static const auto* builtins = new std::vector<Builtin>{
      {"list",
       [](Call& c) -> std::shared_ptr<Referent> {
         return std::make_shared<ListReferent>(InitialItems(c, "list"));
       },
       ListReferent::Exposed()},
      {"dict",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("dict", 0, 1);
         auto d = std::make_shared<DictReferent>();
         DataLock lock(DataMutex());
         if (!c.args.empty()) d->Update(c.args[0]);
         for (size_t i = 0; i < c.kwds.keys().size(); ++i) {
           d->Set(c.kwds.keys()[i], Resolve(c.kwds.values()[i]));
         }
         return d;
       },
       DictReferent::Exposed()},
      {"Namespace",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Namespace", 0, 0);
         auto ns = std::make_shared<NamespaceReferent>();
         for (size_t i = 0; i < c.kwds.keys().size(); ++i) {
           Call set;
           set.args = {Item(c.kwds.keys()[i]), Resolve(c.kwds.values()[i])};
           ns->call("__setattr__", set);
         }
         return ns;
       },
       {"__getattribute__", "__setattr__", "__delattr__"}},
      {"Value",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Value", 2, 3);
         return std::make_shared<ValueReferent>(ValueOf(c.args[0]).as_str(),
                                                c.args[1]);
       },
       {"get", "set"}},
      {"Array",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Array", 2, 3);
         std::string typecode = ValueOf(c.args[0]).as_str();
         std::vector<Object> items;
         for (const Item& i : ItemsOf(c.args[1]))
           items.push_back(ArrayElement(typecode, ValueOf(i)));
         return std::make_shared<ArrayReferent>(typecode, std::move(items));
       },
       {"__len__", "__getitem__", "__setitem__"}},
      {"Queue",
       [](Call& c) -> std::shared_ptr<Referent> {
         return std::make_shared<QueueReferent>(IntArg(c, 0, "maxsize", 0),
                                                false);
       },
       {"empty", "full", "get", "get_nowait", "join", "put", "put_nowait",
        "qsize", "task_done"}},
      {"JoinableQueue",
       [](Call& c) -> std::shared_ptr<Referent> {
         return std::make_shared<QueueReferent>(IntArg(c, 0, "maxsize", 0),
                                                true);
       },
       {"empty", "full", "get", "get_nowait", "join", "put", "put_nowait",
        "qsize", "task_done"}},
      {"Event",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Event", 0, 0);
         return std::make_shared<EventReferent>();
       },
       {"is_set", "set", "clear", "wait"}},
      {"Lock",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Lock", 0, 0);
         return std::make_shared<LockReferent>();
       },
       {"acquire", "release"}},
      {"RLock",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("RLock", 0, 0);
         return std::make_shared<RLockReferent>();
       },
       {"acquire", "release"}},
      {"Semaphore",
       [](Call& c) -> std::shared_ptr<Referent> {
         return std::make_shared<SemaphoreReferent>(IntArg(c, 0, "value", 1),
                                                    false);
       },
       {"acquire", "release"}},
      {"BoundedSemaphore",
       [](Call& c) -> std::shared_ptr<Referent> {
         return std::make_shared<SemaphoreReferent>(IntArg(c, 0, "value", 1),
                                                    true);
       },
       {"acquire", "release"}},
      {"Condition",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Condition", 0, 1);
         std::shared_ptr<LockLike> lock;
         if (!c.args.empty() &&
             !(c.args[0].object.is_none() && !c.args[0].ref)) {
           lock = std::dynamic_pointer_cast<LockLike>(c.args[0].ref);
           if (!lock) {
             throw TypeError(
                 "Condition(lock): lock must be a Lock or RLock proxy of the "
                 "same manager");
           }
         } else {
           lock = std::make_shared<RLockReferent>();
         }
         return std::make_shared<ConditionReferent>(std::move(lock));
       },
       {"acquire", "release", "wait", "wait_for", "notify", "notify_all"}},
      {"Barrier",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Barrier", 1, 3);
         return std::make_shared<BarrierReferent>(IntArg(c, 0, "parties", 1),
                                                  FunctionArg(c, 1, "action"),
                                                  TimeoutArg(c, 2, false));
       },
       {"__getattribute__", "wait", "abort", "reset"}},
      {"Pool",
       [](Call& c) -> std::shared_ptr<Referent> {
         c.expect("Pool", 0, 4);
         std::optional<Item> n = Arg(c, 0, "processes");
         std::optional<int> processes;
         if (n && !ValueOf(*n).is_none())
           processes = static_cast<int>(ValueOf(*n).as_int());
         for (size_t i = 1; i < c.args.size(); ++i) {
           if (!ValueOf(c.args[i]).is_none() &&
               !(i == 2 && ValueOf(c.args[i]) == Object::tuple())) {
             throw ValueError(
                 "a manager's Pool takes only 'processes' (initializer and "
                 "maxtasksperchild are not supported)");
           }
         }
         return std::make_shared<PoolReferent>(processes);
       },
       {"apply", "apply_async", "close", "imap", "imap_unordered", "join",
        "map", "map_async", "starmap", "starmap_async", "terminate"},
       {{"apply_async", "AsyncResult"},
        {"map_async", "AsyncResult"},
        {"starmap_async", "AsyncResult"},
        {"imap", "Iterator"},
        {"imap_unordered", "Iterator"}}},
      {"AsyncResult",
       nullptr,
       {"get", "wait", "ready", "successful"},
       {},
       false},
      {"Iterator", nullptr, {"__next__"}, {}, false},
  };
  return *builtins;
}

}  // namespace internal

std::shared_ptr<Referent> MakeNamespace() {
  return std::make_shared<internal::NamespaceReferent>();
}

std::shared_ptr<Referent> MakeQueue(int64_t maxsize) {
  return std::make_shared<internal::QueueReferent>(maxsize, false);
}

}  // namespace multiprocessing::managers

MP_REGISTER_FUNCTION(multiprocessing::managers::internal::RunRegisteredTask);
