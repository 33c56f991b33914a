// Packing the bucket GEMM's selecting operand (gemm_bucket.h), one value at
// a time, and the panel's strip loop: included by each kernel translation
// unit, which vectorizes around them.  `static`, so no copy compiled for a wider ISA can stand in for the
// baseline one (gemm_blocked.h, top).
#pragma once

#include <algorithm>
#include <cstdint>

#include "amsim/amsim.h"
#include "amsim/cpu/gemm_bucket.h"

namespace amsim {
namespace cpu {

// The top 16 bits of a float whose fraction is zero: sign and exponent.
constexpr uint32_t kBucketScaleMask = 0xffff0000u;

// The index kept is the reduced fraction without the `ignored_bits` low
// bits the table does not look at (bucket_selecting_bits): its T row.
struct BucketLeftPacker {
  int shift;  // 23 - M: where the reduced fraction starts (rounding)
  int index_shift;  // 23 - M + ignored bits
  uint32_t index_mask;  // 2^(M - ignored bits) - 1
  uint32_t bias;  // nearest-even: half - 1 (plus the kept lsb, added per value)
  bool nearest;
  uint32_t special = 0, lo = 255, hi = 0;

  BucketLeftPacker(int mantissa_bits, int ignored_bits, Rounding rounding)
      : shift(23 - mantissa_bits),
        index_shift(23 - mantissa_bits + ignored_bits),
        index_mask((1u << (mantissa_bits - ignored_bits)) - 1u),
        bias((1u << (22 - mantissa_bits)) - 1u),
        nearest(rounding == Rounding::kNearestEven) {}

  // Nearest-even rounding as one integer add (a carry out of the fraction
  // lands in the exponent, as reduce_operand() carries it).
  uint32_t pack(uint32_t u) {
    const uint32_t e0 = (u >> 23) & 0xffu;
    const uint32_t r = u + (nearest ? bias + ((u >> shift) & 1u) : 0u);
    const uint32_t e = (r >> 23) & 0xffu;
    const bool zero = e0 == 0;
    const bool bad = e0 == 0xffu || e == 0xffu;
    special |= bad;
    const bool counts = !zero && !bad;
    lo = counts && e < lo ? e : lo;
    hi = counts && e > hi ? e : hi;
    return zero ? (u & kSignMask) : ((r & 0xff800000u) | ((r >> index_shift) & index_mask));
  }
};

// The panel's loop over column strips of up to four vectors, shared by the
// kernel translation units: Strips::run<V, kFused>(p, c0, width) runs every
// row over columns [c0, c0 + width), width <= V vectors.  Strips is each
// unit's own (anonymous-namespace) type, so every instantiation is too.
template <class Strips, bool kFused>
static inline void bucket_panel_strips(const BucketPanel& p, int64_t vector_cols) {
  for (int64_t c0 = 0; c0 < p.ncols; c0 += 4 * vector_cols) {
    const int64_t width = std::min(4 * vector_cols, p.ncols - c0);
    switch (ceil_div(width, vector_cols)) {
      case 1:
        Strips::template run<1, kFused>(p, c0, width);
        break;
      case 2:
        Strips::template run<2, kFused>(p, c0, width);
        break;
      case 3:
        Strips::template run<3, kFused>(p, c0, width);
        break;
      default:
        Strips::template run<4, kFused>(p, c0, width);
        break;
    }
  }
}

template <class Strips>
static inline void bucket_panel(const BucketPanel& p, int64_t vector_cols) {
  if (p.fused)
    bucket_panel_strips<Strips, true>(p, vector_cols);
  else
    bucket_panel_strips<Strips, false>(p, vector_cols);
}

// How many rows ahead the packers prefetch, and the prefetch of one row's
// n contiguous values (every cache line they touch).
constexpr int64_t kPrefetchRows = 32;
static inline void prefetch_run(const float* x, int64_t n) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(x) & ~uintptr_t{63};
  const uintptr_t last = reinterpret_cast<uintptr_t>(x + n - 1);
  for (uintptr_t line = first; line <= last; line += 64) __builtin_prefetch(reinterpret_cast<const void*>(line));
}

// Packs a block row by row: for a contiguous row, vector_part(x, out, n,
// &bad) packs a prefix with SIMD, returns its length and sets bad when one
// of those values is special; the rest go through packer.pack().  Rows are
// prefetched kPrefetchRows ahead.
template <class VectorPart>
static inline void pack_left_rows(const BucketLeftBlock& b, BucketLeftPacker& packer, uint8_t* special,
                                  VectorPart&& vector_part) {
  for (int64_t i = 0; i < b.rows; ++i) {
    const float* x = b.x + i * b.row_stride;
    BucketLeft* out = b.out + i * b.out_stride;
    // Rows far apart (a K block of a long row-major operand) defeat the
    // hardware prefetcher, which stays within a page.
    if (i + kPrefetchRows < b.rows && b.col_stride == 1) prefetch_run(x + kPrefetchRows * b.row_stride, b.n);
    bool bad = false;
    int64_t kk = b.col_stride == 1 ? vector_part(x, out, b.n, &bad) : 0;
    packer.special = bad;
    for (; kk < b.n; ++kk) out[kk] = packer.pack(float_bits(x[kk * b.col_stride]));
    special[i] = packer.special != 0;
  }
}

}  // namespace cpu
}  // namespace amsim
