#include "shared_memory/shareable_list.h"

#include <cstring>
#include <string>
#include <string_view>

#include "errors/errors.h"

namespace multiprocessing::shared_memory {

using reduction::Object;

namespace {

constexpr size_t kAlignment = 8;
// The back-transform codes of CPython's layout.
constexpr int8_t kAsIs = 0;  // int, float, bool
constexpr int8_t kStr = 1;
constexpr int8_t kBytes = 2;
constexpr int8_t kNone = 3;

constexpr char kIntFormat[] = "q";
constexpr char kFloatFormat[] = "d";
constexpr char kBoolFormat[] = "xxxxxxx?";
constexpr char kNoneFormat[] = "xxxxxx?x";

[[noreturn]] void ThrowDamaged(const std::string& what) {
  throw ValueError("the shared memory block is not a valid ShareableList (" +
                   what + ")");
}

[[noreturn]] void ThrowUnsupported(const Object& value) {
  throw TypeError(std::string("ShareableList holds only None, bool, int, "
                              "float, str and bytes, not '") +
                  value.type_name() + "'");
}

uint64_t LoadU64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void StoreU64(std::byte* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }

size_t CodePoints(std::string_view utf8) {
  size_t n = 0;
  for (char c : utf8) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// What CPython's _extract_recreation_code gives for the value.
int8_t CodeOf(const Object& value) {
  if (value.is_str()) return kStr;
  if (value.is_bytes()) return kBytes;
  if (value.is_none()) return kNone;
  return kAsIs;
}

// The slot a str / bytes value gets: CPython's 8 * (len // 8 + 1), len
// counting code points for str; widened to hold the UTF-8 bytes.
size_t SlotFor(const Object& value) {
  size_t length =
      value.is_str() ? CodePoints(value.as_str()) : value.as_bytes().size();
  size_t bytes = value.is_str() ? value.as_str().size() : length;
  size_t slot = kAlignment * (length / kAlignment + 1);
  if (bytes > slot) slot = kAlignment * (bytes / kAlignment + 1);
  return slot;
}

// The fixed format of a value that is not str / bytes.
const char* ScalarFormat(const Object& value) {
  if (value.is_none()) return kNoneFormat;
  if (value.is_bool()) return kBoolFormat;
  if (value.is_int()) {
    value.as_int();  // OverflowError beyond int64, as struct's 'q'
    return kIntFormat;
  }
  if (value.is_float()) return kFloatFormat;
  ThrowUnsupported(value);
}

std::string SlotFormat(size_t slot) {
  std::string format = std::to_string(slot) + "s";
  if (format.size() > 8) {
    throw ValueError("a str / bytes item of " + std::to_string(slot) +
                     " bytes does not fit ShareableList's 8-character format");
  }
  return format;
}

// Writes a value whose format is `format` into the slot at `p` (of at least
// 8 bytes, or the str / bytes slot length the format names).
void Pack(std::byte* p, const std::string& format, const Object& value) {
  if (value.is_str() || value.is_bytes()) {
    const std::string& data =
        value.is_str() ? value.as_str() : value.as_bytes();
    size_t slot = std::stoul(format);  // "<n>s"
    std::memcpy(p, data.data(), data.size());
    std::memset(p + data.size(), 0, slot - data.size());
  } else if (format == kIntFormat) {
    StoreU64(p, static_cast<uint64_t>(value.as_int()));
  } else if (format == kFloatFormat) {
    double d = value.as_float();
    std::memcpy(p, &d, sizeof d);
  } else if (format == kBoolFormat) {
    std::memset(p, 0, 8);
    p[7] = std::byte{value.as_bool()};
  } else {  // kNoneFormat: '?' packs bool(None), False
    std::memset(p, 0, 8);
  }
}

}  // namespace

ShareableList::ShareableList(const std::vector<Object>& sequence,
                             ShareableListOptions options)
    : shm_([&] {
        // Check every value and size the block before creating it.
        size_t data = 0;
        for (const Object& v : sequence) {
          if (v.is_str() || v.is_bytes()) {
            data += SlotFor(v);
          } else {
            ScalarFormat(v);
            data += kAlignment;
          }
        }
        size_t n = sequence.size();
        return SharedMemory({.name = options.name,
                             .create = true,
                             .size = 8 + 8 * (n + 1) + data + 8 * n + n});
      }()),
      length_(sequence.size()) {
  offsets_.reserve(length_ + 1);
  offsets_.push_back(0);
  std::vector<std::string> formats;
  formats.reserve(length_);
  for (const Object& v : sequence) {
    if (v.is_str() || v.is_bytes()) {
      size_t slot = SlotFor(v);
      formats.push_back(SlotFormat(slot));
      offsets_.push_back(offsets_.back() + slot);
    } else {
      formats.push_back(ScalarFormat(v));
      offsets_.push_back(offsets_.back() + kAlignment);
    }
  }
  std::byte* base = shm_.buf().data();
  StoreU64(base, length_);
  for (size_t i = 0; i <= length_; ++i) StoreU64(base + 8 + 8 * i, offsets_[i]);
  for (size_t i = 0; i < length_; ++i) {
    Pack(base + DataStart() + offsets_[i], formats[i], sequence[i]);
    std::byte* f = base + FormatsStart() + 8 * i;
    std::memset(f, 0, 8);
    std::memcpy(f, formats[i].data(), formats[i].size());
    base[CodesStart() + i] = static_cast<std::byte>(CodeOf(sequence[i]));
  }
}

ShareableList::ShareableList(ShareableListOptions options)
    : shm_(options.name ? SharedMemory({.name = options.name})
                        : SharedMemory({.create = true, .size = 16})) {
  std::byte* base = shm_.buf().data();
  size_t size = shm_.size();
  if (!options.name) {
    StoreU64(base, 0);
    StoreU64(base + 8, 0);
    offsets_.push_back(0);
    return;
  }
  if (size < 16) ThrowDamaged("too small");
  uint64_t n = LoadU64(base);
  if (n > (size - 16) / 17) ThrowDamaged("bad item count");
  length_ = static_cast<size_t>(n);
  offsets_.resize(length_ + 1);
  for (size_t i = 0; i <= length_; ++i) {
    offsets_[i] = LoadU64(base + 8 + 8 * i);
    if (i > 0 && offsets_[i] < offsets_[i - 1]) ThrowDamaged("bad offsets");
  }
  if (offsets_[0] > offsets_.back() ||
      offsets_.back() > size - DataStart() - 9 * length_) {
    ThrowDamaged("offsets beyond the block");
  }
}

size_t ShareableList::Position(long long index) const {
  long long n = static_cast<long long>(length_);
  long long i = index < 0 ? index + n : index;
  if (i < 0 || i >= n) {
    throw IndexError("ShareableList index " + std::to_string(index) +
                     " out of range (length " + std::to_string(length_) + ")");
  }
  return static_cast<size_t>(i);
}

std::string ShareableList::Format(size_t position) const {
  const char* f =
      reinterpret_cast<const char*>(shm_.buf().data() + FormatsStart()) +
      8 * position;
  return std::string(f, strnlen(f, 8));
}

Object ShareableList::get(long long index) const {
  size_t i = Position(index);
  std::string format = Format(i);
  const std::byte* base = shm_.buf().data();
  size_t size = shm_.size();
  size_t offset = DataStart() + offsets_[i];
  int8_t code = static_cast<int8_t>(base[CodesStart() + i]);
  auto need = [&](size_t n) {
    if (offset > size || n > size - offset) ThrowDamaged("item beyond block");
  };
  if (!format.empty() && format.back() == 's') {
    size_t slot = 0;
    for (size_t k = 0; k + 1 < format.size(); ++k) {
      if (format[k] < '0' || format[k] > '9') ThrowDamaged("bad format");
      slot = slot * 10 + static_cast<size_t>(format[k] - '0');
    }
    if (format.size() == 1) slot = 1;  // "s" is one byte
    need(slot);
    std::string data(reinterpret_cast<const char*>(base + offset), slot);
    while (!data.empty() && data.back() == '\0') data.pop_back();
    if (code == kStr) {
      if (!ValidUtf8(data)) {
        throw ValueError("ShareableList item " + std::to_string(i) +
                         " is not valid UTF-8");
      }
      return Object(std::move(data));
    }
    if (code == kBytes) return Object::bytes(data);
    if (code == kNone) return Object();
    ThrowDamaged("bytes item with a numeric code");
  }
  if (code == kNone) return Object();
  if (code != kAsIs) ThrowDamaged("bad item code");
  need(8);
  if (format == kIntFormat) {
    return Object(static_cast<int64_t>(LoadU64(base + offset)));
  }
  if (format == kFloatFormat) {
    double d;
    std::memcpy(&d, base + offset, sizeof d);
    return Object(d);
  }
  if (format == kBoolFormat) return Object(base[offset + 7] != std::byte{0});
  if (format == kNoneFormat) return Object(base[offset + 6] != std::byte{0});
  ThrowDamaged("unsupported format '" + format + "'");
}

void ShareableList::set(long long index, const Object& value) const {
  size_t i = Position(index);
  std::string current = Format(i);
  std::string format;
  size_t allocated = offsets_[i + 1] - offsets_[i];
  if (value.is_str() || value.is_bytes()) {
    size_t bytes =
        value.is_str() ? value.as_str().size() : value.as_bytes().size();
    if (bytes > allocated) {
      throw ValueError("bytes/str item exceeds available storage (" +
                       std::to_string(bytes) + " bytes for a slot of " +
                       std::to_string(allocated) + ")");
    }
    format = !current.empty() && current.back() == 's' &&
                     current == std::to_string(allocated) + "s"
                 ? current
                 : SlotFormat(allocated);
  } else {
    format = ScalarFormat(value);
    if (allocated < kAlignment) ThrowDamaged("slot smaller than 8 bytes");
  }
  std::byte* base = shm_.buf().data();
  std::byte* f = base + FormatsStart() + 8 * i;
  std::memset(f, 0, 8);
  std::memcpy(f, format.data(), format.size());
  base[CodesStart() + i] = static_cast<std::byte>(CodeOf(value));
  Pack(base + DataStart() + offsets_[i], format, value);
}

size_t ShareableList::size() const {
  return static_cast<size_t>(LoadU64(shm_.buf().data()));
}

size_t ShareableList::count(const Object& value) const {
  size_t n = 0;
  for (const Object& v : *this) n += v == value;
  return n;
}

size_t ShareableList::index(const Object& value) const {
  size_t i = 0;
  for (const Object& v : *this) {
    if (v == value) return i;
    ++i;
  }
  throw ValueError(reduction::repr(value) + " not in this container");
}

std::string ShareableList::format() const {
  std::string out;
  for (size_t i = 0; i < length_; ++i) out += Format(i);
  return out;
}

Object ShareableList::list() const {
  std::vector<Object> items;
  items.reserve(length_);
  for (const Object& v : *this) items.push_back(v);
  return Object::list(std::move(items));
}

std::string ShareableList::repr() const {
  return "ShareableList(" + reduction::repr(list()) +
         ", name=" + reduction::repr(Object(shm_.name())) + ")";
}

std::ostream& operator<<(std::ostream& os, const ShareableList& list) {
  return os << list.repr();
}

}  // namespace multiprocessing::shared_memory

namespace multiprocessing::reduction {

void Pickler<shared_memory::ShareableList>::Save(
    Writer& w, const shared_memory::ShareableList& list) {
  w.write_str(list.shm().name());
}

shared_memory::ShareableList Pickler<shared_memory::ShareableList>::Load(
    Reader& r) {
  return shared_memory::ShareableList({.name = r.read_str()});
}

}  // namespace multiprocessing::reduction
