// Depthwise input-gradient kernel: block = 32 input channels (lanes) x 8
// positions at a time (warps); the block's weights (all Og of each channel)
// are packed once into shared memory beside the table.  Per element:
// depthwise_input_grad_element().
#include "cuda/depthwise.cuh"

namespace amsim {
namespace cuda {

namespace {

template <bool kShared>
__global__ void __launch_bounds__(kDepthwiseThreads)
    depthwise_input_grad_kernel(const Table table, const ConvDims d, const float* __restrict__ dy,
                                const float* __restrict__ w, float* __restrict__ dx) {
  extern __shared__ __align__(16) unsigned char shared[];
  unsigned char* rest;
  const StagedTable t = depthwise_table<kShared>(table, shared, &rest);
  StagedRight* weights = reinterpret_cast<StagedRight*>(rest);  // [tap][q][lane]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t c0 = int64_t{blockIdx.x} * 32;
  for (int i = threadIdx.x; i < d.kh * d.kw * d.og * 32; i += blockDim.x) {
    const int64_t c = c0 + i % 32;
    const int tap_q = i / 32, tap = tap_q / d.og, q = tap_q - tap * d.og;
    const float wv = c < d.c ? __ldg(w + int64_t{tap} * d.o + c * d.og + q) : 0.0f;
    weights[i] = stage_right<kShared>(wv, t.mantissa_bits, t.rounding);
  }
  __syncthreads();

  const int64_t c = c0 + lane;
  if (c >= d.c) return;
  const auto weight = [&](int tap, int q) { return weights[(tap * d.og + q) * 32 + lane]; };
  const int64_t positions = d.in_positions();
  for (int64_t pos = int64_t{blockIdx.y} * kDepthwiseWarps + warp; pos < positions;
       pos += int64_t{gridDim.y} * kDepthwiseWarps)
    dx[pos * d.c + c] = depthwise_input_grad_element<kShared>(d, t, dy, pos, c, weight);
}

}  // namespace

cudaError_t depthwise_input_grad(const Table& table, const ConvDims& d, const float* dy, const float* w, float* dx,
                                 cudaStream_t stream) {
  const size_t weight_bytes = size_t{32} * d.kh * d.kw * d.og * sizeof(StagedRight);
  return launch_depthwise(depthwise_input_grad_kernel<true>, depthwise_input_grad_kernel<false>, table,
                          ceil_div(d.c, 32), ceil_div(d.in_positions(), kDepthwiseWarps), weight_bytes, stream, d, dy,
                          w, dx);
}

}  // namespace cuda
}  // namespace amsim
