// AMMatMul on the GPU: amsim::cuda::batched_gemm on TF's stream.
#include <vector>

#include "cuda/launchers.h"
#include "kernels/am_matmul_op.h"
#include "kernels/gpu_kernel_util.h"

namespace approxtrain {
namespace tf {

namespace {

// A run of consecutive output batches whose operand offsets advance by
// fixed, non-negative strides: one batched_gemm launch.
struct BatchRun {
  int64_t begin = 0, count = 1;
  int64_t a_stride = 0, b_stride = 0;
};

// Splits a broadcast pattern batched_gemm cannot take at once (e.g. a
// [2, 1, m, k] x b [1, 3, k, n]: A's offsets 0 0 0 1 1 1, B's 0 1 2 0 1 2)
// into uniform runs (here two of three).  Every output element is still
// one GEMM's sum in k order, so the bits do not depend on the split.
std::vector<BatchRun> UniformRuns(const MatMulPlan& plan) {
  std::vector<BatchRun> runs;
  int64_t i = 0;
  while (i < plan.batch) {
    BatchRun run;
    run.begin = i;
    if (i + 1 < plan.batch) {
      run.a_stride = plan.a_offset[i + 1] - plan.a_offset[i];
      run.b_stride = plan.b_offset[i + 1] - plan.b_offset[i];
    }
    if (run.a_stride < 0 || run.b_stride < 0) {
      run.a_stride = run.b_stride = 0;  // a lone batch
    } else {
      while (i + run.count < plan.batch &&
             plan.a_offset[i + run.count] == plan.a_offset[i] + run.count * run.a_stride &&
             plan.b_offset[i + run.count] == plan.b_offset[i] + run.count * run.b_stride) {
        ++run.count;
      }
    }
    runs.push_back(run);
    i += run.count;
  }
  return runs;
}

}  // namespace

template <>
void AMMatMulFunctor<GPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                            const MatMulPlan& plan, const float* a, const float* b, float* c) {
  const amsim::GemmShape& s = plan.shape;
  if (s.k == 0) {  // no products: every output is the empty sum +0
    OP_REQUIRES_OK(ctx, ZeroFill(ctx, c, plan.batch * s.m * s.n));
    return;
  }
  cudaStream_t stream = nullptr;
  OP_REQUIRES_OK(ctx, KernelStream(ctx, &stream));
  amsim::MatrixView va = plan.a, vb = plan.b;
  if (plan.uniform) {
    va.data = a;
    vb.data = b;
    OP_REQUIRES_OK(ctx, CudaStatus(amsim::cuda::batched_gemm(table, s, plan.batch, va, plan.a_stride, vb,
                                                             plan.b_stride, c, stream),
                                   "AMMatMul"));
    return;
  }
  for (const BatchRun& run : UniformRuns(plan)) {
    va.data = a + plan.a_offset[run.begin];
    vb.data = b + plan.b_offset[run.begin];
    OP_REQUIRES_OK(ctx, CudaStatus(amsim::cuda::batched_gemm(table, s, run.count, va, run.a_stride, vb,
                                                             run.b_stride, c + run.begin * s.m * s.n, stream),
                                   "AMMatMul"));
  }
}

// The table is read by the kernels, so it stays in device memory (the default).
REGISTER_KERNEL_BUILDER(Name("AMMatMul").Device(tensorflow::DEVICE_GPU), AMMatMulOp<GPUDevice>);

}  // namespace tf
}  // namespace approxtrain
