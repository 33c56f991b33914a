// How a kernel asks for threads without knowing whose threads they are.
// _core passes its own pool; the TF op library passes TF's intra-op pool.
#pragma once

#include <cstdint>
#include <functional>

namespace amsim {

// Runs body(begin, end) over disjoint sub-ranges covering [0, total).
// cost_per_unit is a rough count of cycles per unit of work, for schedulers
// (such as TF's Shard) that size their chunks by cost.
using RangeBody = std::function<void(int64_t begin, int64_t end)>;
using ParallelFor = std::function<void(int64_t total, int64_t cost_per_unit, const RangeBody& body)>;

// Below this many (items x cost per item) a range is not worth handing to
// threads: the pools run it inline.
constexpr int64_t kMinParallelCost = 20000;

// Runs everything on the calling thread.
inline void serial_for(int64_t total, int64_t /*cost_per_unit*/, const RangeBody& body) {
  if (total > 0) body(0, total);
}

}  // namespace amsim
