// Dense batched GEMM as a Problem of the tiled kernel (gemm_tile.cuh):
// A[b][i, k] = a[b * a_batch_stride + i * a_row_stride + k * a_col_stride]
// (a transpose is swapped strides, batch stride 0 broadcasts), likewise B,
// and C dense row-major [batch, m, n].
#pragma once

#include <cstdint>

#include "cuda/hd.cuh"

namespace amsim {
namespace cuda {

struct DenseGemmProblem {
  int64_t m, n, k, batch;
  const float* a;
  int64_t a_row_stride, a_col_stride, a_batch_stride;
  const float* b;
  int64_t b_row_stride, b_col_stride, b_batch_stride;
  float* c;
  bool c_vec4;

  struct ARow {
    const float* at;
    bool ok;
  };
  struct AK {
    int64_t offset;
    bool ok;
  };
  struct BCol {
    const float* at;
    bool ok;
  };
  struct BK {
    int64_t offset;
    bool ok;
  };

  AMSIM_HD ARow a_row(int64_t bi, int64_t i) const { return {a + bi * a_batch_stride + i * a_row_stride, i < m}; }
  AMSIM_HD AK a_k(int64_t, int64_t kk) const { return {kk * a_col_stride, kk < k}; }
  AMSIM_HD float a_at(const ARow& r, const AK& q) const { return r.ok && q.ok ? load_readonly(r.at + q.offset) : 0.0f; }
  AMSIM_HD BCol b_col(int64_t bi, int64_t j) const { return {b + bi * b_batch_stride + j * b_col_stride, j < n}; }
  AMSIM_HD BK b_k(int64_t, int64_t kk) const { return {kk * b_row_stride, kk < k}; }
  AMSIM_HD float b_at(const BK& q, const BCol& c_) const {
    return q.ok && c_.ok ? load_readonly(c_.at + q.offset) : 0.0f;
  }
  AMSIM_HD float* c_row(int64_t bi, int64_t i) const { return c + (bi * m + i) * n; }
};

}  // namespace cuda
}  // namespace amsim
