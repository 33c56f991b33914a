// Host-side helpers shared by the launchers: device limits, the table's
// placement and grid sizing for persistent kernels.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "amsim/host_device.h"
#include "cuda/shared_table.cuh"

namespace amsim {
namespace cuda {

struct DeviceLimits {
  int sm_count = 1;
  size_t shared_per_block_optin = 48 * 1024;  // the most dynamic shared memory a block may opt in to
};

// The current device's limits (cached per device).
cudaError_t current_device_limits(DeviceLimits* out);

// The table goes to shared memory when M <= 8 and it fits beside `other_bytes`.
inline bool table_fits_shared(int mantissa_bits, size_t other_bytes, const DeviceLimits& limits) {
  return mantissa_bits <= 8 && shared_table_bytes(mantissa_bits) + other_bytes <= limits.shared_per_block_optin;
}

// Allows `kernel` `shared_bytes` of dynamic shared memory and returns in
// *blocks the grid of a persistent kernel: as many blocks as fit on the
// device at once, at most `work_items`, at least 1.
template <class Kernel>
cudaError_t persistent_blocks(Kernel kernel, int threads, size_t shared_bytes, int64_t work_items,
                              const DeviceLimits& limits, int64_t* blocks) {
  cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes));
  if (err != cudaSuccess) return err;
  int per_sm = 0;
  err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared_bytes);
  if (err != cudaSuccess) return err;
  if (per_sm < 1) return cudaErrorInvalidConfiguration;
  *blocks = std::max<int64_t>(1, std::min<int64_t>(work_items, int64_t{per_sm} * limits.sm_count));
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace amsim
