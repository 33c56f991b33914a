// The narrowest integer type that holds every entry of an integer product
// table (256 x 256 int32).  Published 8-bit circuits return 16-bit products
// (signed or unsigned), so the CUDA kernels keep such a table in shared
// memory at 16 bits; any other table is read as int32.  Host and device code.
#pragma once

#include <cstdint>

namespace amsim {

enum class IntTableWidth : int { kInt16 = 0, kUint16 = 1, kInt32 = 2 };

inline IntTableWidth int_table_width(const int32_t* products, int64_t count) {
  bool fits_int16 = true, fits_uint16 = true;
  for (int64_t e = 0; e < count; ++e) {
    const int32_t v = products[e];
    fits_int16 &= v >= -32768 && v <= 32767;
    fits_uint16 &= v >= 0 && v <= 65535;
  }
  if (fits_int16) return IntTableWidth::kInt16;
  if (fits_uint16) return IntTableWidth::kUint16;
  return IntTableWidth::kInt32;
}

}  // namespace amsim
