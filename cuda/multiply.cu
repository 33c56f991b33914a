// Elementwise AM product c[i] = a[i] (x) b[i]: one am_multiply() per element
// (memory-bound; the table is read through the read-only cache).
#include <algorithm>

#include "cuda/launch_util.cuh"
#include "cuda/launchers.h"

namespace amsim {
namespace cuda {

namespace {

constexpr int kMultiplyThreads = 256;

__global__ void __launch_bounds__(kMultiplyThreads)
    multiply_kernel(const Table table, const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c,
                    int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride)
    c[i] = am_multiply(__ldg(a + i), __ldg(b + i), table);
}

}  // namespace

cudaError_t multiply(const Table& table, const float* a, const float* b, float* c, int64_t n, cudaStream_t stream) {
  if (n < 0 || table.entries == nullptr || table.mantissa_bits < kMinMantissaBits ||
      table.mantissa_bits > kMaxMantissaBits)
    return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  DeviceLimits limits;
  cudaError_t err = current_device_limits(&limits);
  if (err != cudaSuccess) return err;
  int64_t blocks = 0;
  err = persistent_blocks(multiply_kernel, kMultiplyThreads, 0, ceil_div(n, kMultiplyThreads), limits, &blocks);
  if (err != cudaSuccess) return err;
  multiply_kernel<<<static_cast<unsigned>(blocks), kMultiplyThreads, 0, stream>>>(table, a, b, c, n);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace amsim
