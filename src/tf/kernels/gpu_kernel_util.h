// What the GPU OpKernels share: TF's CUDA stream for the kernel, launch
// errors as TF statuses, and zero fills for sums without products.
//
// Compiled with g++ against TensorFlow's headers and the CUDA headers TF
// ships (GOOGLE_CUDA=1); the launchers of cuda/launchers.h are linked in from
// amsim_cuda with their own static CUDA runtime.  Both runtimes work in the
// device's primary context (TF makes it current before Compute), so TF's
// streams and TF-allocated device memory are valid for the launchers.
#pragma once

#define EIGEN_USE_GPU
#include <cuda_runtime_api.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "xla/stream_executor/device_address.h"
#include "xla/stream_executor/stream.h"
#include "xla/stream_executor/stream_executor.h"

namespace approxtrain {
namespace tf {

using GPUDevice = Eigen::GpuDevice;

// Internal error naming the launch and CUDA's reason.  The kernels run on
// the CUDA runtime of the nvcc that built them (CUDA 13 here), which needs a
// driver at least that new: an older one is named as such.
inline absl::Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  std::string hint;
  if (err == cudaErrorInsufficientDriver) {
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    hint = absl::StrCat("; approxtrain's GPU kernels were built with CUDA ", runtime / 1000, ".", runtime % 1000 / 10,
                        " and need a driver for that version (or a rebuild with an older nvcc)");
  }
  return absl::InternalError(
      absl::StrCat(what, " failed on the GPU: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")", hint));
}

// The CUDA stream TF runs this kernel on.  The CUDA runtime of the launchers
// is made to target the stream's device (it normally already does: TF has
// made that device's context current).
inline absl::Status KernelStream(tensorflow::OpKernelContext* ctx, cudaStream_t* stream) {
  stream_executor::Stream* s = ctx->op_device_context() ? ctx->op_device_context()->stream() : nullptr;
  if (s == nullptr) return absl::InternalError("no GPU stream for an AM op placed on a GPU");
  *stream = static_cast<cudaStream_t>(s->platform_specific_handle().stream);
  const int ordinal = s->parent()->device_ordinal();
  int current = -1;
  TF_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&current), "cudaGetDevice"));
  if (ordinal >= 0 && current != ordinal) {
    TF_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(ordinal), "cudaSetDevice"));
  }
  return absl::OkStatus();
}

// +0.0f in n floats of device memory, queued on the kernel's stream: the
// result of a sum that has no products (k == 0 and the like).
inline absl::Status ZeroFill(tensorflow::OpKernelContext* ctx, float* data, int64_t n) {
  stream_executor::DeviceAddressBase where(data, static_cast<uint64_t>(n) * sizeof(float));
  return ctx->op_device_context()->stream()->MemZero(&where, where.size());
}

}  // namespace tf
}  // namespace approxtrain
