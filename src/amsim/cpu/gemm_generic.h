// Internal entry points of the CPU GEMM paths; gemm.cpp picks one at run time.
#pragma once

#include <vector>

#include "amsim/cpu/aligned_buffer.h"
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

// A GEMM with nothing to multiply (m, n or k = 0): C = +0 where k = 0 and
// not accumulating (an empty sum); true when the shape was such.
bool gemm_empty(const GemmShape& shape, float* c, int64_t ldc, bool accumulate);

// The transposed view: its rows are the columns of x.
inline MatrixView transposed(const MatrixView& x) { return MatrixView{x.data, x.col_stride, x.row_stride}; }

// C (m x n, ldc) of a GEMM that runs as C^T = op(B)^T . op(A)^T:
// `run_transposed(ct)` computes C^T (n x m, leading dimension m) into a
// scratch that holds C^T first where accumulating; when it returns false, C
// is left as it was and so is the result.
template <class Run>
bool gemm_through_transposed_c(const GemmShape& shape, float* c, int64_t ldc, bool accumulate,
                               const ParallelFor& parallel, const Run& run_transposed) {
  const int64_t m = shape.m, n = shape.n;
  AlignedBuffer<float> ct(n * m);
  if (accumulate)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) ct.data()[j * m + i] = c[i * ldc + j];
  if (!run_transposed(ct.data())) return false;
  parallel(m, n * 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = ct.data()[j * m + i];
  });
  return true;
}

// Rows `rows` of C (cols x k sums) = L . R summed element by element from
// am_multiply() (k ascending, from C where accumulate, else +0): the rows a
// fast path leaves out (an operand it cannot take exactly).  left_is_b: L is
// B^T (C runs transposed), so R's value is the table row.
void gemm_rows_exactly(const Table& table, const MatrixView& left, const MatrixView& right, bool left_is_b,
                       const std::vector<int64_t>& rows, int64_t cols, int64_t k, float* c, int64_t ldc,
                       bool accumulate, const ParallelFor& parallel);

}  // namespace cpu
}  // namespace amsim
