// How a kernel asks for threads without knowing whose threads they are.
// _core passes its own pool; the TF op library passes TF's intra-op pool.
#pragma once

#include <cstdint>
#include <functional>

#include "amsim/host_device.h"

namespace amsim {

// Runs body(begin, end) over disjoint sub-ranges covering [0, total).
// cost_per_unit is a rough count of cycles per unit of work, for schedulers
// (such as TF's Shard) that size their chunks by cost.
using RangeBody = std::function<void(int64_t begin, int64_t end)>;
using ParallelFor = std::function<void(int64_t total, int64_t cost_per_unit, const RangeBody& body)>;

// How the pools (_core's and the TF kernels' adapter) split a range.
// Below this many (items x cost per item) a range is not worth handing to
// threads: it runs inline.
constexpr int64_t kMinParallelCost = 20000;
inline bool worth_threads(int64_t total, int64_t cost_per_unit) {
  return total > 1 && total * (cost_per_unit > 1 ? cost_per_unit : 1) >= kMinParallelCost;
}
// Otherwise it runs in contiguous blocks, about 4 per thread: enough to
// balance, and consecutive GEMM tasks (which share a packed row block of A)
// stay on one thread.
inline int64_t parallel_block_size(int64_t total, int64_t threads) { return ceil_div(total, 4 * threads); }

// Runs everything on the calling thread.
inline void serial_for(int64_t total, int64_t /*cost_per_unit*/, const RangeBody& body) {
  if (total > 0) body(0, total);
}

}  // namespace amsim
