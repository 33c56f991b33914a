// The multiplier's table in shared memory: 2^(2M) entries, then an all-zero
// row of 2^M entries (the row of zero / inf / NaN left operands, see
// staged_operands.cuh), padded to 16 bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace amsim {
namespace cuda {

__host__ __device__ constexpr size_t shared_table_bytes(int mantissa_bits) {
  return ((size_t{2} << (2 * mantissa_bits)) + (size_t{2} << mantissa_bits) + 15) & ~size_t{15};
}

// Byte offset of the zero row.
__host__ __device__ constexpr uint32_t zero_row_bytes(int mantissa_bits) {
  return uint32_t{2} << (2 * mantissa_bits);
}

// Whole block copies the table to dst (16-byte aligned) and zeroes the rest;
// the caller syncs before use.
__device__ inline void load_shared_table(const uint16_t* __restrict__ src, int mantissa_bits, uint16_t* dst) {
  const uint32_t entries = uint32_t{1} << (2 * mantissa_bits);
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
