// Spelling shared by the kernels' building blocks, which also compile as
// host code: tests/cuda/host_emulation.cu runs them on the CPU against the
// CPU kernels, so their index math and arithmetic are checked without a GPU.
#pragma once

#include <cuda_runtime.h>

#if defined(__CUDACC__)
#define AMSIM_CUDA_HD __host__ __device__ __forceinline__
#else
#define AMSIM_CUDA_HD inline
#endif

namespace amsim {
namespace cuda {

// A load through the read-only data cache on the device; a plain load on the host.
template <class T>
AMSIM_CUDA_HD T load_readonly(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

}  // namespace cuda
}  // namespace amsim
