// The spelling of code that runs on the host and, under nvcc, on the device
// too (amsim.h, the operand packing, the shapes, the CUDA kernels' building
// blocks), and the one integer helper all of them use.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define AMSIM_HD __host__ __device__ __forceinline__
#else
#define AMSIM_HD inline
#endif

namespace amsim {

// ceil(a / b) for a >= 0, b > 0: tiles, strips, chunks and blocks covering a extent.
AMSIM_HD constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace amsim
