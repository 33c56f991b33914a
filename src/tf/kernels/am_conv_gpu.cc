// AMConv2D and its gradient ops on the GPU: the amsim::cuda conv kernels on
// TF's stream.  input_sizes / filter_sizes are read on the host.
#include "cuda/launchers.h"
#include "kernels/am_conv_ops.h"
#include "kernels/gpu_kernel_util.h"

namespace approxtrain {
namespace tf {

namespace {

// Shapes past the kernels' 32-bit indexing are rejected before any launch.
absl::Status CheckSupported(tensorflow::OpKernelContext* ctx, const amsim::Conv2DShape& s) {
  if (const char* why = amsim::cuda::conv2d_unsupported(s)) {
    return InvalidArgument(ctx->op_kernel().name(), ": the GPU kernels do not take this convolution: ", why, " (batch ",
                           s.batch, ", input ", s.in_h, "x", s.in_w, "x", s.in_c, ", filter ", s.filter_h, "x",
                           s.filter_w, ", output ", s.out_h, "x", s.out_w, "x", s.out_c, ")");
  }
  return absl::OkStatus();
}

}  // namespace

template <>
void AMConvFunctor<GPUDevice>::Forward(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                       const amsim::Conv2DShape& s, const float* x, const float* w, float* y) {
  cudaStream_t stream = nullptr;
  OP_REQUIRES_OK(ctx, CheckSupported(ctx, s));
  OP_REQUIRES_OK(ctx, KernelStream(ctx, &stream));
  OP_REQUIRES_OK(ctx, CudaStatus(amsim::cuda::conv2d_forward(table, s, x, w, y, stream), "AMConv2D"));
}

template <>
void AMConvFunctor<GPUDevice>::InputGrad(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                         const amsim::Conv2DShape& s, const float* dy, const float* w, float* dx) {
  if (s.out_c == 0) {  // no output channels: dx is the empty sum +0
    OP_REQUIRES_OK(ctx, ZeroFill(ctx, dx, s.batch * s.in_h * s.in_w * s.in_c));
    return;
  }
  cudaStream_t stream = nullptr;
  OP_REQUIRES_OK(ctx, CheckSupported(ctx, s));
  OP_REQUIRES_OK(ctx, KernelStream(ctx, &stream));
  OP_REQUIRES_OK(ctx, CudaStatus(amsim::cuda::conv2d_input_grad(table, s, dy, w, dx, stream), "AMConv2DBackpropInput"));
}

template <>
void AMConvFunctor<GPUDevice>::FilterGrad(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                          const amsim::Conv2DShape& s, const float* x, const float* dy, float* dw) {
  if (s.batch * s.out_h * s.out_w == 0) {  // no output positions: dw is the empty sum +0
    OP_REQUIRES_OK(ctx, ZeroFill(ctx, dw, s.filter_h * s.filter_w * (s.in_c / s.groups) * s.out_c));
    return;
  }
  cudaStream_t stream = nullptr;
  OP_REQUIRES_OK(ctx, CheckSupported(ctx, s));
  OP_REQUIRES_OK(ctx, KernelStream(ctx, &stream));
  OP_REQUIRES_OK(ctx,
                 CudaStatus(amsim::cuda::conv2d_filter_grad(table, s, x, dy, dw, stream), "AMConv2DBackpropFilter"));
}

// The table and the tensors stay in device memory; the two size vectors are
// read on the host to shape the output.
REGISTER_KERNEL_BUILDER(Name("AMConv2D").Device(tensorflow::DEVICE_GPU), AMConv2DOp<GPUDevice>);
REGISTER_KERNEL_BUILDER(Name("AMConv2DBackpropInput").Device(tensorflow::DEVICE_GPU).HostMemory("input_sizes"),
                        AMConv2DBackpropInputOp<GPUDevice>);
REGISTER_KERNEL_BUILDER(Name("AMConv2DBackpropFilter").Device(tensorflow::DEVICE_GPU).HostMemory("filter_sizes"),
                        AMConv2DBackpropFilterOp<GPUDevice>);

}  // namespace tf
}  // namespace approxtrain
