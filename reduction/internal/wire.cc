#include "reduction/internal/wire.h"

#include "absl/strings/str_cat.h"
#include "errors/errors.h"

namespace multiprocessing::reduction::internal {

void DecodeLong(std::string_view payload, bool* negative,
                absl::uint128* magnitude) {
  *negative = false;
  *magnitude = 0;
  if (payload.empty()) return;
  const auto* b = reinterpret_cast<const uint8_t*>(payload.data());
  size_t n = payload.size();
  bool neg = (b[n - 1] & 0x80) != 0;
  uint8_t fill = neg ? 0xFF : 0x00;
  for (size_t i = 16; i < n; ++i) {
    if (b[i] != fill) {
      throw UnpicklingError(absl::StrCat(
          "int of ", n,
          " bytes is larger than 128 bits; only ints up to 128 bits "
          "can be decoded (send larger numbers as str or bytes)"));
    }
  }
  absl::uint128 v = 0;
  size_t m = n < 16 ? n : 16;
  for (size_t i = m; i-- > 0;) v = (v << 8) | static_cast<uint8_t>(b[i] ^ fill);
  if (neg) {
    if (v == ~absl::uint128(0)) {
      throw UnpicklingError(
          "int is larger than 128 bits; only ints up to 128 bits can be "
          "decoded");
    }
    v += 1;
  }
  *negative = neg;
  *magnitude = v;
}

void EncodeLong(bool negative, absl::uint128 magnitude, std::string* out) {
  if (magnitude == 0) return;
  // Two's complement of the value in 17 bytes, then trimmed to the shortest
  // form that keeps the sign.
  uint8_t bytes[17];
  absl::uint128 v =
      negative ? ~(magnitude - 1) : magnitude;  // low 128 bits of -magnitude
  for (int i = 0; i < 16; ++i) {
    bytes[i] = static_cast<uint8_t>(absl::Uint128Low64(v >> (8 * i)) & 0xFF);
  }
  bytes[16] = negative ? 0xFF : 0x00;
  size_t n = 17;
  while (n > 1) {
    uint8_t top = bytes[n - 1];
    uint8_t below = bytes[n - 2];
    if (!negative && top == 0x00 && (below & 0x80) == 0) {
      --n;
    } else if (negative && top == 0xFF && (below & 0x80) != 0) {
      --n;
    } else {
      break;
    }
  }
  out->append(reinterpret_cast<const char*>(bytes), n);
}

}  // namespace multiprocessing::reduction::internal
