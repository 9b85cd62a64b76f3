// ShareableList: a fixed-length list of None, bool, int, float, str and bytes
// values in one named shared-memory block, as Python's
// multiprocessing.shared_memory.ShareableList, with the very same memory
// layout, so a CPython process attaches to a list made here (and the other
// way round):
//
//   namespace sm = multiprocessing::shared_memory;
//   using multiprocessing::reduction::Object;
//   sm::ShareableList a({1, 2.5, "howdy", Object::bytes("xy"), nullptr, true});
//   // elsewhere (C++, or Python's ShareableList(name=...)):
//   sm::ShareableList b({.name = a.shm().name()});
//   b[2] = "hi";            // str / bytes may not outgrow their slot
//   Object v = b[0];        // 1
//   b.shm().close();
//   a.shm().close();
//   a.shm().unlink();       // once, when nobody needs the name any more
//
// Layout (CPython's, native little-endian): the item count N as int64; N + 1
// int64 offsets of the items' slots from the start of the data area; the
// data area (8 bytes per number, bool or None; a multiple of 8 bytes per str
// or bytes, at least one byte longer than the value); N 8-byte struct
// formats ("q", "d", "xxxxxxx?", "xxxxxx?x", "<n>s"); N one-byte codes
// saying how to rebuild the value (0 as is, 1 str, 2 bytes, 3 None).
//
// As in CPython, str and bytes lose trailing NUL characters, an item may
// change type but a str or bytes value must fit its slot (ValueError), and
// the list does no locking: guard concurrent writers with a Lock. A str slot
// is sized like CPython's (by code points), but never smaller than its
// UTF-8 bytes, where CPython would silently truncate. Attaching checks the
// header; items are bounds-checked on every access, so a damaged or hostile
// block gives ValueError, never a crash.
//
// The block is a SharedMemory, registered with the resource tracker by its
// creator as SharedMemory does: call shm().close() in every process and
// shm().unlink() once. A ShareableList pickles by name.
#ifndef MULTIPROCESSING_SHARED_MEMORY_SHAREABLE_LIST_H_
#define MULTIPROCESSING_SHARED_MEMORY_SHAREABLE_LIST_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "reduction/object.h"
#include "reduction/pickle.h"
#include "shared_memory/shared_memory.h"

namespace multiprocessing::shared_memory {

struct ShareableListOptions {
  // With values: the new block's name (unset: a fresh random one). Without
  // values: the name of the list to attach to (unset: a new empty list).
  std::optional<std::string> name;
};

class ShareableList {
 public:
  using Object = reduction::Object;

  // A new list holding `sequence` (None, bool, int within int64, float, str,
  // bytes: TypeError / OverflowError for anything else).
  explicit ShareableList(const std::vector<Object>& sequence,
                         ShareableListOptions options = {});
  ShareableList(std::initializer_list<Object> sequence,
                ShareableListOptions options = {})
      : ShareableList(std::vector<Object>(sequence), std::move(options)) {}
  // Attaches to the list called `options.name` (OSError if there is none,
  // ValueError if the block is not a ShareableList); without a name, a new
  // empty list, as Python's ShareableList().
  explicit ShareableList(ShareableListOptions options = {});

  // An item, read and written in place: `Object v = l[i]; l[i] = "x";`.
  class Item {
   public:
    operator Object() const { return list_->get(index_); }  // NOLINT
    Object get() const { return list_->get(index_); }
    const Item& operator=(const Object& value) const {
      list_->set(index_, value);
      return *this;
    }
    const Item& operator=(const Item& other) const {
      return *this = other.get();
    }
    friend bool operator==(const Item& a, const Object& b) {
      return a.get() == b;
    }

   private:
    friend class ShareableList;
    Item(const ShareableList* list, long long index)
        : list_(list), index_(index) {}
    const ShareableList* list_;
    long long index_;
  };

  // l[i], negative from the end; IndexError outside.
  Item operator[](long long index) const { return Item(this, index); }
  Object get(long long index) const;
  // ValueError when a str / bytes value needs more bytes than the item's
  // slot; TypeError / OverflowError for values the layout cannot hold.
  void set(long long index, const Object& value) const;

  // len(l): the count stored in the block.
  size_t size() const;
  size_t len() const { return size(); }
  // How many items == value (Python's ==: 1 == 1.0 == True).
  size_t count(const Object& value) const;
  // The first position of value; ValueError when absent.
  size_t index(const Object& value) const;
  // The struct format of all items, e.g. "qd8sxxxxxx?x".
  std::string format() const;
  // The block (for close() and unlink()).
  SharedMemory& shm() { return shm_; }
  const SharedMemory& shm() const { return shm_; }
  // All items, as a Python list.
  Object list() const;

  // "ShareableList([1, 'a', None], name='psm_...')".
  std::string repr() const;

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Object;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Object;
    Object operator*() const { return list_->get(static_cast<long long>(i_)); }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++i_;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) {
      return a.i_ == b.i_;
    }

   private:
    friend class ShareableList;
    iterator(const ShareableList* list, size_t i) : list_(list), i_(i) {}
    const ShareableList* list_;
    size_t i_;
  };
  iterator begin() const { return iterator(this, 0); }
  iterator end() const { return iterator(this, length_); }

 private:
  size_t Position(long long index) const;
  size_t DataStart() const { return (length_ + 2) * 8; }
  size_t FormatsStart() const { return DataStart() + offsets_.back(); }
  size_t CodesStart() const { return FormatsStart() + length_ * 8; }
  std::string Format(size_t position) const;

  SharedMemory shm_;
  size_t length_ = 0;              // N, as read when created or attached
  std::vector<uint64_t> offsets_;  // N + 1 slot offsets in the data area
};

std::ostream& operator<<(std::ostream& os, const ShareableList& list);

}  // namespace multiprocessing::shared_memory

namespace multiprocessing::reduction {
// By name, as CPython's: the receiver attaches to the same list.
template <>
struct Pickler<shared_memory::ShareableList> {
  static void Save(Writer& w, const shared_memory::ShareableList& list);
  static shared_memory::ShareableList Load(Reader& r);
};
}  // namespace multiprocessing::reduction

#endif  // MULTIPROCESSING_SHARED_MEMORY_SHAREABLE_LIST_H_
