// The bucket GEMM: every AM product is an exact float, so the right
// operand's row k is expanded once into T_k[s][j] = b(k, j)'s sign and scale
// times the table entry P[s][ib(k, j)] (for all 2^M left fractions s), and
// the GEMM becomes row-selected scaled adds C[i, :] += scale_a(i, k) *
// T_k[ia(i, k), :]: plain vector loads on any ISA, no gather, no shuffle.
//
// Why the bits are the canonical ones:
//   P[s][ib]  = (1 + fraction / 2^15) * 2^carry   (the entry as a float, exact),
//   scale_b   = sign(b) * 2^(eb - 127),  scale_a = sign(a) * 2^(ea - 127)
//               (reduced exponents; +-0 for a zero or subnormal operand),
//   T         = scale_b * P  exact for eb <= 253 (an operand whose reduced
//               exponent is >= 254 would overflow T: such a right operand
//               sends the GEMM to another path),
//   scale_a * T = the AMSim product: exact while its exponent is in range,
//               +-inf past it, and (flush-to-zero) a signed zero below it.
// So multiply then add, from +0 with k ascending, gives the canonical sum;
// a fused multiply-add gives the same bits while every product stays normal
// (products_stay_normal, gemm_blocked.h), which the driver checks on both
// operands' exponent ranges before it lets the kernels fuse.  inf/NaN in the
// right operand make T inf/NaN, which gives NaN against a zero left operand
// and +-inf/NaN otherwise, as the contract wants; a left operand that is
// inf/NaN or rounds to infinity makes its row "special": that row is summed
// from am_multiply() instead.
//
// Cost: expanding is 2^M x N x K, the adds M_rows x N x K: the method wins
// when rows >> 2^M.  A table that ignores the selecting operand's low
// fraction bits (MBM forces the lowest kept bit to 1: rows s and s + 1 are
// the same) needs T rows only for the bits it reads: 2^(M - ignored).  For
// a short, wide C the driver expands along the other side: C^T = B^T . A^T
// with the table transposed (operand order kept).
#pragma once

#include <cstdint>

#include "amsim/gemm.h"

namespace amsim {
namespace cpu {

// A selecting (left) operand as the panel reads it, in 32 bits: its scale
// sign * 2^(e - 127) (+-0 for a zero) has a zero fraction, so the top 16
// bits hold it and the low 16 bits its reduced fraction s (its T row).
using BucketLeft = uint32_t;

// One K block of one column block, as the panel kernel reads it.
struct BucketPanel {
  const float* t = nullptr;  // [kc][2^M][ldt]: T for k0 .. k0 + kc
  int64_t kc = 0;
  int64_t t_k_stride = 0;  // 2^M * ldt
  int64_t ldt = 0;  // a multiple of the kernels' vector_cols
  int64_t ncols = 0;  // valid columns (<= ldt)
  const BucketLeft* const* a_rows = nullptr;  // [rows]: packed A row i at k0
  float* const* c_rows = nullptr;  // [rows]: C row i at the block's first column
  int64_t rows = 0;
  bool fused = false;  // multiply-add may fuse (every product normal)
};

// T for one K block of one column block: out[kk][s][j] = scale[kk][j] *
// table_t[index[kk][j]][s] for j < ncols, +0 for ncols <= j < ldt.
struct BucketExpansion {
  const float* table_t = nullptr;  // [2^M][2^S]: row x = the expanded operand's fraction
  int selecting_bits = 0;  // S: T has 2^S rows (bucket_selecting_bits)
  const uint16_t* index = nullptr;  // [kc][ld_in]
  const float* scale = nullptr;  // [kc][ld_in]
  int64_t ld_in = 0;
  int64_t kc = 0, ncols = 0, ldt = 0;
  float* out = nullptr;
};

// A block of the selecting operand to pack: rows x n values, value (i, kk)
// at x[i * row_stride + kk * col_stride], packed to out[i * out_stride + kk].
struct BucketLeftBlock {
  const float* x;
  int64_t row_stride, col_stride, rows, n;
  BucketLeft* out;
  int64_t out_stride;
};

// The ISA-specific part: packing the selecting operand, expansion and the
// panel of row-selected adds, with what the driver's blocking and cost rule
// need to know of them.  pack_left packs a block (T row: the reduced
// fraction without its `ignored_bits` low bits), sets special[i] to whether
// row i holds an inf, a NaN or a value that rounds to infinity (that row's
// products then come from am_multiply()), and widens [*lo, *hi] by the
// reduced exponents of the other nonzero values.
struct BucketKernels {
  void (*pack_left)(const BucketLeftBlock& block, int mantissa_bits, int ignored_bits, Rounding rounding,
                    uint8_t* special, uint32_t* lo, uint32_t* hi);
  void (*expand)(const BucketExpansion& e);
  void (*panel)(const BucketPanel& p);
  const char* name;  // the path gemm_cpu_path() reports
  int64_t vector_cols;  // T rows pad to whole vectors (a narrow C to one vector, not a tile)
  int64_t tile_cols;  // columns one register tile covers at most
  // The panel's cost per row x k of one tile of V vectors: tile_ns + V *
  // vector_ns (the selecting operand's offset and scale, then the adds).
  double tile_ns, vector_ns;
};

// AVX2 + FMA (gemm_bucket_avx2.cpp), its packing and expansion with an
// AVX-512 panel (gemm_bucket_avx512.cpp) -- nullptr where the build has
// none -- and plain C++ that the compiler vectorizes for any target
// (gemm_bucket_portable.cpp).
const BucketKernels* bucket_kernels_avx2();
const BucketKernels* bucket_kernels_avx512();
const BucketKernels* bucket_kernels_portable();

// C = op(A) . op(B) by the bucket method (same contract as gemm_cpu).
// Returns false, having done nothing, when an operand holds a value the
// method cannot take exactly (a right-side operand -- B, or A when it runs
// transposed -- whose reduced exponent is >= 254, NaN/inf excepted); the
// caller then takes another path.
bool gemm_bucket(const BucketKernels& kernels, const Table& table, const GemmShape& shape, const MatrixView& a,
                 const MatrixView& b, float* c, int64_t ldc, const ParallelFor& parallel, bool accumulate);

// How many fraction bits of the selecting operand the table reads: M less
// the low bits no entry depends on (entries of fractions s and s ^ low bits
// all equal; MBM: one).  The selecting operand is A, or B when `left_is_b`
// (the GEMM runs transposed).  M for a Table without entries (a path
// asked for by width alone).
int bucket_selecting_bits(const Table& table, bool left_is_b);

// The cost model of the dispatch (cycles, one thread, rough): the bucket
// method on this shape (either orientation, whichever is cheaper), and the
// other paths per multiply-add.
double bucket_cost(const BucketKernels& kernels, const Table& table, const GemmShape& shape);
// The least the method can cost per multiply-add with these kernels (full
// tiles, nothing else): a path cheaper than this needs no cost estimate.
double bucket_least_ns_per_mac(const BucketKernels& kernels);

}  // namespace cpu
}  // namespace amsim
