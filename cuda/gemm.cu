// Batched dense AM GEMM: C[b] = op(A[b]) . op(B[b]), transposes as strides.
#include "cuda/gemm_launch.cuh"
#include "cuda/gemm_problem.cuh"
#include "cuda/launchers.h"

namespace amsim {
namespace cuda {

namespace {

struct DenseGemmProblem {
  int64_t m, n, k, batch;
  const float* a;
  int64_t a_row_stride, a_col_stride, a_batch_stride;
  const float* b;
  int64_t b_row_stride, b_col_stride, b_batch_stride;
  float* c;
  bool c_vec4;

  struct ARow { const float* at; bool ok; };
  struct AK { int64_t offset; bool ok; };
  struct BCol { const float* at; bool ok; };
  struct BK { int64_t offset; bool ok; };

  __device__ ARow a_row(int64_t bi, int64_t i) const { return {a + bi * a_batch_stride + i * a_row_stride, i < m}; }
  __device__ AK a_k(int64_t, int64_t kk) const { return {kk * a_col_stride, kk < k}; }
  __device__ float a_at(const ARow& r, const AK& q) const { return r.ok && q.ok ? __ldg(r.at + q.offset) : 0.0f; }
  __device__ BCol b_col(int64_t bi, int64_t j) const { return {b + bi * b_batch_stride + j * b_col_stride, j < n}; }
  __device__ BK b_k(int64_t, int64_t kk) const { return {kk * b_row_stride, kk < k}; }
  __device__ float b_at(const BK& q, const BCol& c_) const { return q.ok && c_.ok ? __ldg(c_.at + q.offset) : 0.0f; }
  __device__ float* c_row(int64_t bi, int64_t i) const { return c + (bi * m + i) * n; }
};

}  // namespace

cudaError_t batched_gemm(const Table& table, const GemmShape& shape, int64_t batch, const MatrixView& a,
                         int64_t batch_stride_a, const MatrixView& b, int64_t batch_stride_b, float* c,
                         cudaStream_t stream) {
  if (shape.m < 0 || shape.n < 0 || shape.k < 0 || batch < 0) return cudaErrorInvalidValue;
  const DenseGemmProblem p{shape.m, shape.n, shape.k, batch,
                           a.data, a.row_stride, a.col_stride, batch_stride_a,
                           b.data, b.row_stride, b.col_stride, batch_stride_b,
                           c, shape.n % 4 == 0 && (reinterpret_cast<uintptr_t>(c) & 15u) == 0};
  return launch_gemm(p, table, stream);
}

const char* gemm_variant(int mantissa_bits, const GemmShape& shape, int64_t batch) {
  DeviceLimits limits;
  if (current_device_limits(&limits) != cudaSuccess) return "unavailable";
  return gemm_plan_name(plan_gemm(mantissa_bits, shape.m, shape.n, batch, limits));
}

}  // namespace cuda
}  // namespace amsim
