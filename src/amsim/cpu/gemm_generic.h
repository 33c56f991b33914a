// Internal entry points of the CPU GEMM paths; gemm.cpp picks one at run time.
#pragma once

#include "amsim/gemm.h"

namespace amsim {
namespace cpu {

// Portable path: any M, any CPU.
void gemm_generic(const Table& table, const GemmShape& shape, const MatrixView& a, const MatrixView& b, float* c,
                  int64_t ldc, const ParallelFor& parallel, bool accumulate);

// Computes one C row segment c[0..n) += sum_k a[k] (x) b[k, j] for a left
// operand too large for the fast paths' scales (|a| >= 2^127, inf, NaN):
// the products come from am_multiply(), k by k, in canonical order.
void accumulate_special_left(const Table& table, float a, const MatrixView& b, int64_t k, int64_t col_begin,
                             int64_t col_end, float* c_row);

}  // namespace cpu
}  // namespace amsim
