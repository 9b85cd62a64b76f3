// The shared contents behind an Object (strings and containers), for object.cc
// and the decoder, which builds containers in place and tracks their nesting
// depth. Users of //reduction never see these.
#ifndef MULTIPROCESSING_REDUCTION_INTERNAL_OBJECT_NODES_H_
#define MULTIPROCESSING_REDUCTION_INTERNAL_OBJECT_NODES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "reduction/object.h"

namespace multiprocessing::reduction::internal {

// A cached hash() of an immutable value. Atomic because copies of an Object
// share their contents and may be hashed from several threads; -1 (never a
// Python hash) means not computed yet. Copies start empty.
struct HashCache {
  mutable std::atomic<int64_t> value{-1};
  HashCache() = default;
  HashCache(const HashCache&) {}
  HashCache& operator=(const HashCache&) {
    reset();
    return *this;
  }
  bool has() const { return value.load(std::memory_order_relaxed) != -1; }
  int64_t get() const { return value.load(std::memory_order_relaxed); }
  void set(int64_t h) const { value.store(h, std::memory_order_relaxed); }
  void reset() { value.store(-1, std::memory_order_relaxed); }
};

// str, bytes, bytearray.
struct StrNode {
  std::string data;
  HashCache hash;  // str and bytes are immutable once shared
};

// What every container node has: how deep the structure below it is (the
// decoder refuses deep input before anything recurses over it) and whether the
// decoder handed out a second reference to it (after which mutating it would
// build a cycle or change a shared value).
struct ContainerBase {
  uint32_t depth = 1;
  bool shared_by_memo = false;
  HashCache hash;  // tuple and frozenset only
};

// list, tuple.
struct SeqNode : ContainerBase {
  std::vector<Object> items;
};

struct KeyHash {
  size_t operator()(const Object& key) const {
    return absl::Hash<int64_t>{}(key.hash());
  }
};
struct KeyEq {
  bool operator()(const Object& a, const Object& b) const { return a == b; }
};

// dict, set, frozenset: keys in insertion order (values for dicts only) and an
// index by key.
struct TableNode : ContainerBase {
  std::vector<Object> keys;
  std::vector<Object> values;
  absl::flat_hash_map<Object, uint32_t, KeyHash, KeyEq> index;

  // Inserts or (for dicts) replaces; `key` must be hashable (TypeError
  // otherwise).
  void Insert(Object key, Object value, bool is_dict);
  bool Erase(const Object& key, bool is_dict);
  const Object* Find(const Object& key) const;  // the stored key, or nullptr
};

// slice: its three members (None or int).
struct SliceNode {
  Object start;
  Object stop;
  Object step;
};

struct ObjectAccess {
  static const std::shared_ptr<void>& node(const Object& o) { return o.node_; }
  static std::shared_ptr<void>& node(Object& o) { return o.node_; }
  static Object Make(Object::Type type, std::shared_ptr<void> node) {
    Object o;
    o.type_ = type;
    o.node_ = std::move(node);
    return o;
  }
  static StrNode& str(const Object& o) {
    return *static_cast<StrNode*>(o.node_.get());
  }
  static SeqNode& seq(const Object& o) {
    return *static_cast<SeqNode*>(o.node_.get());
  }
  static TableNode& table(const Object& o) {
    return *static_cast<TableNode*>(o.node_.get());
  }
  static const Range& range(const Object& o) {
    return *static_cast<const Range*>(o.node_.get());
  }
  static const SliceNode& slice(const Object& o) {
    return *static_cast<const SliceNode*>(o.node_.get());
  }
  // The Callable (internal/globals.h) of a type object.
  static uint64_t builtin(const Object& o) { return o.lo_; }
  // The container part of a list/tuple/dict/set/frozenset, nullptr for other
  // kinds.
  static ContainerBase* container(const Object& o);
  // Nesting depth: 0 for scalars and strings.
  static uint32_t depth(const Object& o) {
    ContainerBase* c = container(o);
    return c ? c->depth : 0;
  }
};

bool IsContainer(Object::Type type);

}  // namespace multiprocessing::reduction::internal

#endif  // MULTIPROCESSING_REDUCTION_INTERNAL_OBJECT_NODES_H_
