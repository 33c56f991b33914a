// AMMatMul on the GPU: amsim::cuda::batched_gemm on TF's stream.
#include "cuda/launchers.h"
#include "kernels/am_matmul_op.h"
#include "kernels/gpu_kernel_util.h"

namespace approxtrain {
namespace tf {

template <>
void AMMatMulFunctor<GPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                            const amsim::BatchPlan& plan, const float* a, const float* b, float* c) {
  const amsim::GemmShape& s = plan.shape;
  if (s.k == 0) {  // no products: every output is the empty sum +0
    OP_REQUIRES_OK(ctx, ZeroFill(ctx, c, plan.batch * s.m * s.n));
    return;
  }
  cudaStream_t stream = nullptr;
  OP_REQUIRES_OK(ctx, KernelStream(ctx, &stream));
  OP_REQUIRES_OK(ctx, CudaStatus(amsim::cuda::batched_gemm(table, plan, a, b, c, stream), "AMMatMul"));
}

// The table is read by the kernels, so it stays in device memory (the default).
REGISTER_KERNEL_BUILDER(Name("AMMatMul").Device(tensorflow::DEVICE_GPU), AMMatMulOp<GPUDevice>);

}  // namespace tf
}  // namespace approxtrain
