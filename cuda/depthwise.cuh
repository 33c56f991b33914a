// Dedicated depthwise kernels (groups == C: one input channel per group,
// channel multiplier Og = O / C).  Lanes run over channels (NHWC's contiguous
// dimension: coalesced loads and stores), warps over positions; each thread
// owns its output elements and sums their products in conv.h's canonical
// order.  The multiplier's table sits in shared memory for M <= 8, with the
// block's packed weights beside it.
//
// Each launcher returns cudaErrorNotSupported when the packed weights do not
// fit in shared memory (huge filters); the caller then uses the implicit GEMM.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "amsim/amsim.h"
#include "cuda/conv_dims.cuh"
#include "cuda/launch_util.cuh"

namespace amsim {
namespace cuda {

constexpr int kDepthwiseThreads = 256;  // 8 warps x 32 channels
constexpr int kDepthwiseWarps = kDepthwiseThreads / 32;

cudaError_t depthwise_forward(const Table& table, const ConvDims& d, const float* x, const float* w, float* y,
                              cudaStream_t stream);
cudaError_t depthwise_input_grad(const Table& table, const ConvDims& d, const float* dy, const float* w, float* dx,
                                 cudaStream_t stream);
cudaError_t depthwise_filter_grad(const Table& table, const ConvDims& d, const float* x, const float* dy, float* dw,
                                  cudaStream_t stream);

// Launches kernel<true> (table in shared memory) or kernel<false> over a grid
// of `channel_chunks` x (up to `position_groups`) blocks, with `extra_bytes`
// of shared memory beside the table.  The kernels loop over position groups
// blockIdx.y, blockIdx.y + gridDim.y, ...
template <class SharedKernel, class GlobalKernel, class... Args>
cudaError_t launch_depthwise(SharedKernel shared_kernel, GlobalKernel global_kernel, const Table& table,
                             int64_t channel_chunks, int64_t position_groups, size_t extra_bytes, cudaStream_t stream,
                             Args... args) {
  if (channel_chunks <= 0 || position_groups <= 0) return cudaSuccess;
  if (table.entries == nullptr || table.mantissa_bits < kMinMantissaBits || table.mantissa_bits > kMaxMantissaBits)
    return cudaErrorInvalidValue;
  if (channel_chunks > 0x7fffffff) return cudaErrorInvalidValue;
  DeviceLimits limits;
  cudaError_t err = current_device_limits(&limits);
  if (err != cudaSuccess) return err;
  if (extra_bytes > limits.shared_per_block_optin) return cudaErrorNotSupported;
  const bool shared = table_fits_shared(table.mantissa_bits, extra_bytes, limits);
  const size_t bytes = extra_bytes + (shared ? shared_table_bytes(table.mantissa_bits) : 0);
  int64_t resident = 0;
  err = shared ? persistent_blocks(shared_kernel, kDepthwiseThreads, bytes, int64_t{1} << 40, limits, &resident)
               : persistent_blocks(global_kernel, kDepthwiseThreads, bytes, int64_t{1} << 40, limits, &resident);
  if (err != cudaSuccess) return err;
  // Enough position groups to fill the device, never more than there are.
  const int64_t groups_y =
      std::min<int64_t>({position_groups, std::max<int64_t>(1, ceil_div(resident, channel_chunks)), 65535});
  const dim3 grid(static_cast<unsigned>(channel_chunks), static_cast<unsigned>(groups_y));
  if (shared)
    shared_kernel<<<grid, kDepthwiseThreads, bytes, stream>>>(table, args...);
  else
    global_kernel<<<grid, kDepthwiseThreads, bytes, stream>>>(table, args...);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace amsim

#include "cuda/depthwise_elements.cuh"
#include "cuda/shared_table.cuh"

namespace amsim {
namespace cuda {

// Kernel prologue: the table to shared memory (kShared) and where the rest of
// the dynamic shared memory starts.  The caller syncs after staging its own data.
template <bool kShared>
__device__ __forceinline__ StagedTable depthwise_table(const Table& table, unsigned char* shared,
                                                       unsigned char** rest) {
  if constexpr (kShared) {
    load_shared_table(table.entries, table.mantissa_bits, reinterpret_cast<uint16_t*>(shared));
    *rest = shared + shared_table_bytes(table.mantissa_bits);
    return {reinterpret_cast<const uint16_t*>(shared), table.mantissa_bits, table.rounding,
            zero_row_bytes(table.mantissa_bits)};
  } else {
    *rest = shared;
    return {table.entries, table.mantissa_bits, table.rounding, 0};
  }
}

}  // namespace cuda
}  // namespace amsim
