// AMMatMul on the CPU: the core's batched GEMM on TF's intra-op threads.
#include "amsim/gemm.h"
#include "kernels/am_matmul_op.h"
#include "kernels/cpu_parallel.h"

namespace approxtrain {
namespace tf {

using CPUDevice = Eigen::ThreadPoolDevice;

template <>
void AMMatMulFunctor<CPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                            const amsim::BatchPlan& plan, const float* a, const float* b, float* c) {
  amsim::batched_gemm_cpu(table, plan, a, b, c, IntraOpParallelFor(ctx), IntraOpThreads(ctx));
}

REGISTER_KERNEL_BUILDER(Name("AMMatMul").Device(tensorflow::DEVICE_CPU), AMMatMulOp<CPUDevice>);

}  // namespace tf
}  // namespace approxtrain
