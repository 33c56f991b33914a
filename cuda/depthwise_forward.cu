// Depthwise forward kernel: block = 32 output channels (lanes) x 8 positions
// at a time (warps); the block's weights are packed once into shared memory
// beside the table.  Per element: depthwise_forward_element().
#include "cuda/depthwise.cuh"

namespace amsim {
namespace cuda {

namespace {

template <bool kShared>
__global__ void __launch_bounds__(kDepthwiseThreads)
    depthwise_forward_kernel(const Table table, const ConvDims d, const float* __restrict__ x,
                             const float* __restrict__ w, float* __restrict__ y) {
  extern __shared__ __align__(16) unsigned char shared[];
  unsigned char* rest;
  const StagedTable t = depthwise_table<kShared>(table, shared, &rest);
  StagedRight* weights = reinterpret_cast<StagedRight*>(rest);  // [tap][lane]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t o0 = int64_t{blockIdx.x} * 32;
  for (int i = threadIdx.x; i < d.kh * d.kw * 32; i += blockDim.x) {
    const int64_t o = o0 + i % 32;
    const float wv = o < d.o ? __ldg(w + int64_t{i / 32} * d.o + o) : 0.0f;
    weights[i] = stage_right<kShared>(wv, t.mantissa_bits, t.rounding);
  }
  __syncthreads();

  const int64_t o = o0 + lane;
  if (o >= d.o) return;
  const auto weight = [&](int tap) { return weights[tap * 32 + lane]; };
  const int64_t positions = d.out_positions();
  for (int64_t pos = int64_t{blockIdx.y} * kDepthwiseWarps + warp; pos < positions;
       pos += int64_t{gridDim.y} * kDepthwiseWarps)
    y[pos * d.o + o] = depthwise_forward_element<kShared>(d, t, x, pos, o, weight);
}

}  // namespace

cudaError_t depthwise_forward(const Table& table, const ConvDims& d, const float* x, const float* w, float* y,
                              cudaStream_t stream) {
  const size_t weight_bytes = size_t{32} * d.kh * d.kw * sizeof(StagedRight);
  return launch_depthwise(depthwise_forward_kernel<true>, depthwise_forward_kernel<false>, table, ceil_div(d.o, 32),
                          ceil_div(d.out_positions(), kDepthwiseWarps), weight_bytes, stream, d, x, w, y);
}

}  // namespace cuda
}  // namespace amsim
