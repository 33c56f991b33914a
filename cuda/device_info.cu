// Per-device limits, read once per device.
#include <mutex>
#include <vector>

#include "cuda/launch_util.cuh"

namespace amsim {
namespace cuda {

cudaError_t current_device_limits(DeviceLimits* out) {
  static std::mutex mutex;
  static std::vector<std::pair<bool, DeviceLimits>> cache;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<size_t>(device) < cache.size() && cache[device].first) {
    *out = cache[device].second;
    return cudaSuccess;
  }
  DeviceLimits limits;
  int value = 0;
  if ((err = cudaDeviceGetAttribute(&value, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess) return err;
  limits.sm_count = value;
  if ((err = cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) != cudaSuccess)
    return err;
  limits.shared_per_block_optin = static_cast<size_t>(value);
  if (cache.size() <= static_cast<size_t>(device)) cache.resize(device + 1);
  cache[device] = {true, limits};
  *out = limits;
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace amsim
