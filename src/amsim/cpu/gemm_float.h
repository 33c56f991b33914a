// The float GEMM of separable tables (separable_table.h): C = A' . B' as a
// plain float32 GEMM of the transformed operands.
//
// Why the bits are the canonical ones (flush-to-zero and denormals-are-zero
// on, as every fast kernel runs):
//   a' = sign(a) 2^ea left[ia]  (ea, ia: the reduced exponent and fraction;
//        a zero or subnormal a gives a signed zero -- zeroed before rounding,
//        so a subnormal never rounds up to a normal; inf and NaN pass as
//        they are, never through the rounding add),
//   a' * b' = sign 2^(ea + eb - 254) P[ia][ib]: the AM product's value, exact
//        (<= 16 significant bits); past the normal range it overflows to
//        +-inf, and below it the exact subnormal result flushes to a signed
//        zero: both what compose_product() gives.  inf x 0 = NaN and
//        inf x nonzero = +-inf, NaN in -> NaN: the contract's step 1.
// The one difference: an operand that nearest rounding makes infinite
// meeting a zero must give a signed zero (the contract looks at the operands
// as given) where inf * 0 gives NaN.  The transform reports such operands:
// a row of the selecting side holding one is summed from am_multiply(), and
// one on the other side (packed whole, first) makes gemm_float() decline
// the call (the table paths take it).
// Sums: per C element from +0, k ascending, a multiply then a separate add
// (never fused), in register tiles stored and reloaded between K blocks.
#pragma once

#include <cstdint>

#include "amsim/cpu/separable_table.h"
#include "amsim/gemm.h"

namespace amsim {
namespace cpu {

// How one operand is transformed: fraction fields of its factors, indexed
// by the reduced fraction (bits 23 - M .. 22 after rounding).
struct OperandTransform {
  const uint32_t* factors = nullptr;
  int shift = 0;  // 23 - M
  uint32_t mask = 0;  // 2^M - 1
  bool nearest = false;
  // factors[i] == i << shift | set_bits for every i (bf16: 0; DRUM: the bit
  // it sets below the kept ones): the fraction needs no lookup, only an and
  // and an or (a gather costs as much as the rest of the transform).
  bool affine = false;
  uint32_t set_bits = 0;
};

// The transform of the operands whose factors are `factors` (one side of a
// separable table's SeparableFactors, which must outlive it).
OperandTransform operand_transform(const Table& table, const std::vector<uint32_t>& factors);

// One ISA's kernels.  transform: n floats in place, true when one rounds to
// infinity.  tile: C (mr x nr, ldc) = [C, or +0 when !load_c] + sum over kk
// < kc of a[kk * mr + r] * b[kk * nr + j], k ascending, multiply then add.
struct FloatGemmKernels {
  const char* name;  // the path's name (gemm_cpu_path, APPROXTRAIN_CPU_PATH)
  int64_t mr, nr;
  bool (*transform)(float* x, int64_t n, const OperandTransform& t);
  void (*tile)(const float* a, const float* b, int64_t kc, float* c, int64_t ldc, bool load_c);
};

// AVX-512F, AVX2 (nullptr where the build has none) and plain C++.
const FloatGemmKernels* float_kernels_avx512();
const FloatGemmKernels* float_kernels_avx2();
const FloatGemmKernels* float_kernels_portable();

// The kernels separable tables run on this CPU under APPROXTRAIN_CPU_PATH
// (gemm.cpp; the GEMMs and the depthwise convs), nullptr where it has none
// or a table path is forced.
const FloatGemmKernels* float_gemm_kernels();

// C = op(A) . op(B) (gemm_cpu's contract) for a separable table.  Returns
// false, having written nothing, when a value of the packed-whole side (B,
// or A where C runs transposed) rounds to infinity.
bool gemm_float(const FloatGemmKernels& kernels, const Table& table, const SeparableFactors& factors,
                const GemmShape& shape, const MatrixView& a, const MatrixView& b, float* c, int64_t ldc,
                const ParallelFor& parallel, bool accumulate);

// The float GEMM's cost in ns on one core (rough: padded multiply-adds and
// packed operands, measured on Zen 4 with the AVX2 kernels), for the choice
// between it and the table paths' conv helpers (gemm.cpp).
double gemm_float_cost(const FloatGemmKernels& kernels, const GemmShape& shape);

}  // namespace cpu
}  // namespace amsim
