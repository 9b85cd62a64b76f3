// The byte layout of the messages between an MPI pool's master and its
// workers: fixed-width integers in the host's byte order and length-prefixed
// strings. The reader checks every length against what is left and raises
// ValueError on a short or malformed message, never reading past the end.
// Internal to mpi/.
#ifndef MULTIPROCESSING_MPI_INTERNAL_WIRE_H_
#define MULTIPROCESSING_MPI_INTERNAL_WIRE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "errors/errors.h"

namespace multiprocessing::mpi::internal {

// Appends to a string of its own (Take()) or to the caller's.
class Writer {
 public:
  Writer() : out_(&own_) {}
  explicit Writer(std::string* out) : out_(out) {}
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  Writer& u8(uint8_t v) { return Raw(&v, sizeof v); }
  Writer& u32(uint32_t v) { return Raw(&v, sizeof v); }
  Writer& u64(uint64_t v) { return Raw(&v, sizeof v); }
  Writer& i64(int64_t v) { return Raw(&v, sizeof v); }
  // A u64 length, then the bytes.
  Writer& str(std::string_view s) {
    u64(s.size());
    out_->append(s.data(), s.size());
    return *this;
  }
  std::string Take() { return std::move(own_); }

 private:
  Writer& Raw(const void* p, size_t n) {
    out_->append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string own_;
  std::string* out_;
};

// Reads what Writer wrote; views point into the message.
class Reader {
 public:
  explicit Reader(std::string_view message) : rest_(message) {}

  uint8_t u8() { return Fixed<uint8_t>(); }
  uint32_t u32() { return Fixed<uint32_t>(); }
  uint64_t u64() { return Fixed<uint64_t>(); }
  int64_t i64() { return Fixed<int64_t>(); }
  std::string_view str() {
    uint64_t n = u64();
    if (n > rest_.size()) Short();
    std::string_view s = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return s;
  }

 private:
  template <class T>
  T Fixed() {
    if (rest_.size() < sizeof(T)) Short();
    T v;
    std::memcpy(&v, rest_.data(), sizeof v);
    rest_.remove_prefix(sizeof v);
    return v;
  }
  [[noreturn]] static void Short() {
    throw ValueError(
        "a pool message is shorter than its fields say (truncated or not from "
        "this library)");
  }
  std::string_view rest_;
};

}  // namespace multiprocessing::mpi::internal

#endif  // MULTIPROCESSING_MPI_INTERNAL_WIRE_H_
