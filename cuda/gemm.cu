// Batched dense AM GEMM: C[b] = op(A[b]) . op(B[b]), transposes as strides.
#include "cuda/gemm_launch.cuh"
#include "cuda/gemm_problem.cuh"
#include "cuda/launchers.h"

namespace amsim {
namespace cuda {

cudaError_t batched_gemm(const Table& table, const GemmShape& shape, int64_t batch, const MatrixView& a,
                         int64_t batch_stride_a, const MatrixView& b, int64_t batch_stride_b, float* c,
                         cudaStream_t stream) {
  if (shape.m < 0 || shape.n < 0 || shape.k < 0 || batch < 0) return cudaErrorInvalidValue;
  const DenseGemmProblem p{shape.m,
                           shape.n,
                           shape.k,
                           batch,
                           a.data,
                           a.row_stride,
                           a.col_stride,
                           batch_stride_a,
                           b.data,
                           b.row_stride,
                           b.col_stride,
                           batch_stride_b,
                           c,
                           shape.n % 4 == 0 && (reinterpret_cast<uintptr_t>(c) & 15u) == 0};
  return launch_gemm(p, table, stream);
}

cudaError_t batched_gemm(const Table& table, const BatchPlan& plan, const float* a, const float* b, float* c,
                         cudaStream_t stream) {
  const GemmShape& s = plan.shape;
  for (const BatchRun& r : plan.runs) {
    MatrixView va = plan.a, vb = plan.b;
    va.data = a + r.a_offset;
    vb.data = b + r.b_offset;
    const cudaError_t err =
        batched_gemm(table, s, r.count, va, r.a_stride, vb, r.b_stride, c + r.begin * s.m * s.n, stream);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

const char* gemm_variant(int mantissa_bits, const GemmShape& shape, int64_t batch) {
  DeviceLimits limits;
  if (current_device_limits(&limits) != cudaSuccess) return "unavailable";
  return tile_choice_name(choose_tile(mantissa_bits, shape.m, shape.n, batch, limits));
}

}  // namespace cuda
}  // namespace amsim
