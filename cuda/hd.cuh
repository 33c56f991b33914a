// What the kernels' building blocks share beyond amsim/host_device.h: they
// also compile as host code (AMSIM_HD), and tests/cuda/host_emulation.cu runs
// them on the CPU against the CPU kernels, so their index math and arithmetic
// are checked without a GPU.
#pragma once

#include <cuda_runtime.h>

#include "amsim/host_device.h"

namespace amsim {
namespace cuda {

// A load through the read-only data cache on the device; a plain load on the host.
template <class T>
AMSIM_HD T load_readonly(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

}  // namespace cuda
}  // namespace amsim
