// Integer approximate GEMM: 8-bit operands multiplied through a 256 x 256
// table of exact integer products (an IntegerMultiplier's `products`), summed
// exactly.
//
//   C[i, j] = sum over k of products[pa(i, k)][pb(k, j)]
//
// pa, pb: the operands' 8-bit patterns (uint8; two's complement for signed
// circuits), the table row from A.  Integer sums are exact in any order, so
// the kernels are free to block, reorder and vectorize: only overflow needs
// care.  Sums are kept in int32 over blocks of k short enough that they
// cannot overflow (int_safe_block_k) and widened to int64 across blocks; the
// int32 entry points require K * max|products| < 2^31 (the TF op checks it).
//
// Two methods, picked per shape by one cost rule (int_gemm_cpu_path):
//  - direct: one table read per product (small shapes);
//  - bucket: for each k the right operand's row is expanded once into
//    T_k[s][j] = products[s][pb(k, j)] for all 256 left patterns s, and each
//    output row adds T_k[pa(i, k)][:]: exact int32 vector adds, no gather.
//    Expanding costs 256 x N per k against M x N for the adds, so for a
//    short, wide C the roles swap (C^T = B^T . A^T through products^T).
// The bucket adds run with AVX-512 or AVX2 where the CPU has them (checked at
// run time), else with plain C++ the compiler vectorizes.  APPROXTRAIN_CPU_PATH
// (cpu_features.h) forces a path for tests: "generic" the direct path,
// "bucket-portable" / "avx2" / "avx512" the bucket method with those kernels
// for every shape (never what the CPU lacks), "no-avx512" the choice of a CPU
// without AVX-512.
#pragma once

#include <cstdint>

#include "amsim/batch_plan.h"
#include "amsim/parallel.h"
#include "amsim/shapes.h"

namespace amsim {

constexpr int kIntTableSide = 256;

// One uint8 operand: element (r, c) of op(X) at data[r * row_stride + c * col_stride].
struct IntMatrixView {
  const uint8_t* data = nullptr;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
};

// max |products[x][y]| over the table (int64: |INT32_MIN| fits).
int64_t int_products_max_abs(const int32_t* products);

// The most products whose sum fits int32 whatever they are: the largest kc
// with kc * max_abs <= 2^31 - 1, at least 1 (INT64_MAX for an all-zero table).
int64_t int_safe_block_k(int64_t max_abs);

// Which path int_gemm_cpu takes for this shape now: "direct",
// "bucket-portable", "bucket-avx2" or "bucket-avx512", with "/transposed"
// when the bucket method runs on C^T.
const char* int_gemm_cpu_path(const GemmShape& shape);

// C (m x n, row stride ldc) = op(A) . op(B) through `products` (256 x 256,
// row-major, row = A's pattern).  The int32 form requires
// K * int_products_max_abs(products) < 2^31.
void int_gemm_cpu(const int32_t* products, const GemmShape& shape, const IntMatrixView& a, const IntMatrixView& b,
                  int64_t* c, int64_t ldc, const ParallelFor& parallel);
void int_gemm_cpu(const int32_t* products, const GemmShape& shape, const IntMatrixView& a, const IntMatrixView& b,
                  int32_t* c, int64_t ldc, const ParallelFor& parallel);

// The GEMMs of `plan` (amsim/batch_plan.h; its views' strides, in elements,
// apply to the uint8 operands a and b) into dense C [plan.batch, m, n].
void batched_int_gemm_cpu(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                          int64_t* c, const ParallelFor& parallel);
void batched_int_gemm_cpu(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                          int32_t* c, const ParallelFor& parallel);

// The GEMMs of `plan` with zero points, as an integer accelerator computes
// sum_k (pa(i, k) - za)(pb(k, j) - zb[j]): the table sees the patterns as
// stored and the zero-point terms are exact integer sums, added as each
// GEMM's output is written (no pass over the operands besides one row sum
// of A and one column sum of B):
//   C[i, j] = sum_k products[pa][pb] - zb[j] * sum_k pa + za * (K * zb[j] - sum_k pb).
// zb: one zero point (zb_count == 1) or one per column (zb_count == n), the
// same for every batch.  With za == 0 and every zb == 0 this is
// batched_int_gemm_cpu widened to int64 (K needs no int32 bound: sums are
// split into int32-safe blocks and added in int64).
void batched_int_gemm_zero_point_cpu(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                                     int32_t za, const int32_t* zb, int64_t zb_count, int64_t* c,
                                     const ParallelFor& parallel);

}  // namespace amsim
