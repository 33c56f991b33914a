// AMIntMatMul on the CPU: the core's integer GEMM on TF's intra-op threads.
#include "amsim/cpu/int_gemm.h"
#include "kernels/am_int_matmul_op.h"
#include "kernels/cpu_parallel.h"

namespace approxtrain {
namespace tf {

using CPUDevice = Eigen::ThreadPoolDevice;

template <>
void AMIntMatMulFunctor<CPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const int32_t* products,
                                               int64_t /*max_abs*/, const amsim::BatchPlan& plan, const uint8_t* a,
                                               const uint8_t* b, int32_t* c) {
  amsim::batched_int_gemm_cpu(products, plan, a, b, c, IntraOpParallelFor(ctx));
}

REGISTER_KERNEL_BUILDER(Name("AMIntMatMul").Device(tensorflow::DEVICE_CPU), AMIntMatMulOp<CPUDevice>);

}  // namespace tf
}  // namespace approxtrain
