// AMConv2D and its gradient ops on the CPU: the core's im2col + GEMM kernels
// on TF's intra-op threads.
#include "kernels/am_conv_ops.h"
#include "kernels/cpu_parallel.h"

namespace approxtrain {
namespace tf {

using CPUDevice = Eigen::ThreadPoolDevice;

template <>
void AMConvFunctor<CPUDevice>::Forward(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                       const amsim::Conv2DShape& s, const float* x, const float* w, float* y) {
  amsim::conv2d_forward_cpu(table, s, x, w, y, IntraOpParallelFor(ctx));
}

template <>
void AMConvFunctor<CPUDevice>::InputGrad(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                         const amsim::Conv2DShape& s, const float* dy, const float* w, float* dx) {
  amsim::conv2d_input_grad_cpu(table, s, dy, w, dx, IntraOpParallelFor(ctx));
}

template <>
void AMConvFunctor<CPUDevice>::FilterGrad(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                          const amsim::Conv2DShape& s, const float* x, const float* dy, float* dw) {
  amsim::conv2d_filter_grad_cpu(table, s, x, dy, dw, IntraOpParallelFor(ctx));
}

REGISTER_KERNEL_BUILDER(Name("AMConv2D").Device(tensorflow::DEVICE_CPU), AMConv2DOp<CPUDevice>);
REGISTER_KERNEL_BUILDER(Name("AMConv2DBackpropInput").Device(tensorflow::DEVICE_CPU),
                        AMConv2DBackpropInputOp<CPUDevice>);
REGISTER_KERNEL_BUILDER(Name("AMConv2DBackpropFilter").Device(tensorflow::DEVICE_CPU),
                        AMConv2DBackpropFilterOp<CPUDevice>);

}  // namespace tf
}  // namespace approxtrain
