// Depthwise filter-gradient kernel: one thread per output element (lanes over
// o, warps over taps) walks the whole (n, oh, ow) range in order
// (depthwise_filter_grad_element).  The canonical order allows no split of
// that sum, so this kernel's speed is bounded by its KH*KW*O long chains.
#include "cuda/depthwise.cuh"

namespace amsim {
namespace cuda {

namespace {

template <bool kShared>
__global__ void __launch_bounds__(kDepthwiseThreads)
    depthwise_filter_grad_kernel(const Table table, const ConvDims d, const float* __restrict__ x,
                                 const float* __restrict__ dy, float* __restrict__ dw) {
  extern __shared__ __align__(16) unsigned char shared[];
  unsigned char* rest;
  const StagedTable t = depthwise_table<kShared>(table, shared, &rest);
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t o = int64_t{blockIdx.x} * 32 + lane;
  if (o >= d.o) return;
  for (int tap = blockIdx.y * kDepthwiseWarps + warp; tap < d.kh * d.kw; tap += gridDim.y * kDepthwiseWarps)
    dw[int64_t{tap} * d.o + o] = depthwise_filter_grad_element<kShared>(d, t, x, dy, tap, o);
}

}  // namespace

cudaError_t depthwise_filter_grad(const Table& table, const ConvDims& d, const float* x, const float* dy, float* dw,
                                  cudaStream_t stream) {
  return launch_depthwise(depthwise_filter_grad_kernel<true>, depthwise_filter_grad_kernel<false>, table,
                          ceil_div(d.o, 32), ceil_div(int64_t{d.kh} * d.kw, kDepthwiseWarps), 0, stream, d, x, dy, dw);
}

}  // namespace cuda
}  // namespace amsim
