// Low-level pieces of the pickle wire format shared by the typed Reader, the
// Writer and the Object decoder: fixed-width little-endian arguments and
// CPython's LONG1/LONG4 integers. Text checks are in utf8.h, the globals a
// pickle may name in globals.h. Internal.
#ifndef MULTIPROCESSING_REDUCTION_INTERNAL_WIRE_H_
#define MULTIPROCESSING_REDUCTION_INTERNAL_WIRE_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/numeric/int128.h"

namespace multiprocessing::reduction::internal {

inline uint16_t LoadLE16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t LoadLE32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // x86-64 and every Linux target this builds for are little-endian
}
inline uint64_t LoadLE64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline double LoadBE64Double(const uint8_t* p) {
  uint64_t v = __builtin_bswap64(LoadLE64(p));
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}

// Decodes CPython's little-endian two's complement LONG1/LONG4 payload. Throws
// UnpicklingError when the value needs more than 128 bits of magnitude.
void DecodeLong(std::string_view payload, bool* negative,
                absl::uint128* magnitude);
// Appends the minimal two's complement encoding of the integer (empty for 0),
// as CPython's encode_long.
void EncodeLong(bool negative, absl::uint128 magnitude, std::string* out);

}  // namespace multiprocessing::reduction::internal

#endif  // MULTIPROCESSING_REDUCTION_INTERNAL_WIRE_H_
