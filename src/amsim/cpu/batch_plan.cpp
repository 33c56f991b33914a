#include "amsim/batch_plan.h"

#include <algorithm>

namespace amsim {

std::vector<int64_t> BatchPlan::output_dims() const {
  std::vector<int64_t> dims = batch_dims;
  dims.push_back(shape.m);
  dims.push_back(shape.n);
  return dims;
}

namespace {

// Appends output batch i, whose operands start at a_offset and b_offset, to
// the runs: it extends the last run when its offsets continue that run's
// strides (a run's second batch sets them, if neither is negative).
void add_batch(int64_t i, int64_t a_offset, int64_t b_offset, std::vector<BatchRun>* runs) {
  if (!runs->empty()) {
    BatchRun& r = runs->back();
    if (r.count == 1 && a_offset >= r.a_offset && b_offset >= r.b_offset) {
      r.a_stride = a_offset - r.a_offset;
      r.b_stride = b_offset - r.b_offset;
      r.count = 2;
      return;
    }
    if (r.count > 1 && a_offset == r.a_offset + r.count * r.a_stride && b_offset == r.b_offset + r.count * r.b_stride) {
      ++r.count;
      return;
    }
  }
  runs->push_back(BatchRun{i, 1, a_offset, 0, b_offset, 0});
}

}  // namespace

BatchPlanError plan_batched_gemm(const std::vector<int64_t>& a_dims, const std::vector<int64_t>& b_dims,
                                 bool transpose_a, bool transpose_b, BatchPlan* plan) {
  const int ra = static_cast<int>(a_dims.size()), rb = static_cast<int>(b_dims.size());
  if (ra < 2 || rb < 2) return {BatchPlanError::kRank, ra, rb};
  const int64_t a_rows = a_dims[ra - 2], a_cols = a_dims[ra - 1];
  const int64_t b_rows = b_dims[rb - 2], b_cols = b_dims[rb - 1];
  const int64_t m = transpose_a ? a_cols : a_rows, k = transpose_a ? a_rows : a_cols;
  const int64_t kb = transpose_b ? b_cols : b_rows, n = transpose_b ? b_rows : b_cols;
  if (k != kb) return {BatchPlanError::kInnerDims, k, kb};

  // Batch dimensions, right-aligned; size-1 dimensions broadcast (stride 0).
  const int rank = std::max(ra, rb) - 2;
  std::vector<int64_t> dims(rank), a_stride(rank, 0), b_stride(rank, 0);
  int64_t sa = a_rows * a_cols, sb = b_rows * b_cols;
  for (int d = rank - 1; d >= 0; --d) {
    const int da_index = d - (rank - (ra - 2)), db_index = d - (rank - (rb - 2));
    const int64_t da = da_index >= 0 ? a_dims[da_index] : 1, db = db_index >= 0 ? b_dims[db_index] : 1;
    if (da != db && da != 1 && db != 1) return {BatchPlanError::kBatchDims, da, db};
    dims[d] = da == 1 ? db : da;  // numpy: 1 broadcasts, also against 0
    if (da != 1) a_stride[d] = sa;
    if (db != 1) b_stride[d] = sb;
    sa *= da;
    sb *= db;
  }

  plan->shape = GemmShape{m, n, k};
  plan->a = MatrixView{nullptr, transpose_a ? 1 : a_cols, transpose_a ? a_cols : 1};
  plan->b = MatrixView{nullptr, transpose_b ? 1 : b_cols, transpose_b ? b_cols : 1};
  plan->batch_dims = dims;
  plan->batch = 1;
  for (int64_t d : dims) plan->batch *= d;
  plan->runs.clear();
  // Walk the output batches in order, their operand offsets kept by an odometer.
  std::vector<int64_t> index(rank, 0);
  int64_t a_offset = 0, b_offset = 0;
  for (int64_t i = 0; i < plan->batch; ++i) {
    add_batch(i, a_offset, b_offset, &plan->runs);
    for (int d = rank - 1; d >= 0; --d) {
      a_offset += a_stride[d];
      b_offset += b_stride[d];
      if (++index[d] < dims[d]) break;
      a_offset -= a_stride[d] * dims[d];
      b_offset -= b_stride[d] * dims[d];
      index[d] = 0;
    }
  }
  return {};
}

}  // namespace amsim
