// The one plan of a batched GEMM with numpy batch broadcasting, for every
// caller: the TF op kernels (CPU and GPU), _core (CPU and CUDA) and the
// CPU scheduling rule in gemm.cpp.
//
//   C[..., m, n] = op(A)[..., m, k] . op(B)[..., k, n]
//
// Batch dimensions are right-aligned; a size-1 (or missing) dimension
// broadcasts, also against 0.  Operands are dense row-major tensors and
// broadcast batches are read in place (stride 0), never copied; C is dense
// [batch..., m, n].  Every output element is one GEMM's sum in k order, so
// how the batches are grouped and scheduled never changes a bit.
#pragma once

#include <cstdint>
#include <vector>

#include "amsim/shapes.h"

namespace amsim {

// Consecutive output batches [begin, begin + count) whose operands advance
// by fixed non-negative strides: one strided batched GEMM.  Offsets and
// strides count floats from the start of the operand's data.
struct BatchRun {
  int64_t begin = 0, count = 0;
  int64_t a_offset = 0, a_stride = 0;  // stride 0: one A for the whole run
  int64_t b_offset = 0, b_stride = 0;
};

struct BatchPlan {
  GemmShape shape;
  MatrixView a, b;  // one matrix's strides (transposes); data is not used
  std::vector<int64_t> batch_dims;  // the broadcast batch shape of C
  int64_t batch = 1;  // their product
  std::vector<BatchRun> runs;  // cover [0, batch) in order; empty when batch == 0

  // C's shape: batch_dims, m, n.
  std::vector<int64_t> output_dims() const;
  // One run for the whole batch (or none, for batch == 0).
  bool uniform() const { return runs.size() <= 1; }
};

// What is wrong with a pair of operand shapes; the caller words the message
// (the values it needs are in `left` and `right`).
struct BatchPlanError {
  enum Kind {
    kNone,
    kRank,  // an operand of rank < 2
    kInnerDims,  // k of op(A) (left) != k of op(B) (right)
    kBatchDims,  // batch dimensions left (A) vs right (B) do not broadcast
  } kind = kNone;
  int64_t left = 0, right = 0;
  explicit operator bool() const { return kind != kNone; }
};

// Plans op(A) . op(B) for dense row-major A of dims a_dims and B of dims
// b_dims (rank >= 2, the last two are the matrix).
BatchPlanError plan_batched_gemm(const std::vector<int64_t>& a_dims, const std::vector<int64_t>& b_dims,
                                 bool transpose_a, bool transpose_b, BatchPlan* plan);

}  // namespace amsim
