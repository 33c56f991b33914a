// The multiplier's table in shared memory: 2^(2M) entries, then an all-zero
// row of 2^M entries (the row of zero / inf / NaN left operands, see
// staged_operands.cuh), padded to 16 bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "amsim/amsim.h"

namespace amsim {
namespace cuda {

// Byte offset of the zero row: right after the entries.
AMSIM_HD constexpr uint32_t zero_row_bytes(int mantissa_bits) {
  return static_cast<uint32_t>(table_size(mantissa_bits) * sizeof(uint16_t));
}

AMSIM_HD constexpr size_t shared_table_bytes(int mantissa_bits) {
  return (zero_row_bytes(mantissa_bits) + (size_t{2} << mantissa_bits) + 15) & ~size_t{15};
}

// Whole block copies the table to dst (16-byte aligned) and zeroes the rest;
// the caller syncs before use.
__device__ inline void load_shared_table(const uint16_t* __restrict__ src, int mantissa_bits, uint16_t* dst) {
  const uint32_t entries = static_cast<uint32_t>(table_size(mantissa_bits));
  const uint32_t total = static_cast<uint32_t>(shared_table_bytes(mantissa_bits) / 2);
  uint32_t copied = 0;
  if ((reinterpret_cast<uintptr_t>(src) & 15u) == 0) {
    const uint32_t vectors = entries / 8;
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (uint32_t v = threadIdx.x; v < vectors; v += blockDim.x) d[v] = __ldg(s + v);
    copied = vectors * 8;
  }
  for (uint32_t e = copied + threadIdx.x; e < entries; e += blockDim.x) dst[e] = __ldg(src + e);
  for (uint32_t e = entries + threadIdx.x; e < total; e += blockDim.x) dst[e] = 0;
}

}  // namespace cuda
}  // namespace amsim
