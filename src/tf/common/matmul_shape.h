// Shape function of the batched matmul ops (AMMatMul, AMIntMatMul): a and b
// (inputs 0 and 1) of rank >= 2, attrs transpose_a / transpose_b, batch
// dimensions broadcast as in numpy; output 0 is [batch..., m, n].  Each op
// passes the check of its own table input, run after the operands' ranks.
#pragma once

#include "common/status.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace approxtrain {
namespace tf {

// `op` names the op in the error messages; check_table(c) -> absl::Status.
template <class CheckTable>
absl::Status BatchedMatMulShape(tensorflow::shape_inference::InferenceContext* c, const char* op,
                                CheckTable check_table) {
  using tensorflow::shape_inference::DimensionHandle;
  using tensorflow::shape_inference::ShapeHandle;
  ShapeHandle a, b;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &a));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 2, &b));
  TF_RETURN_IF_ERROR(check_table(c));
  bool transpose_a = false, transpose_b = false;
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_a", &transpose_a));
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_b", &transpose_b));
  const DimensionHandle m = c->Dim(a, transpose_a ? -1 : -2);
  const DimensionHandle ka = c->Dim(a, transpose_a ? -2 : -1);
  const DimensionHandle kb = c->Dim(b, transpose_b ? -1 : -2);
  const DimensionHandle n = c->Dim(b, transpose_b ? -2 : -1);
  DimensionHandle k;
  if (!c->Merge(ka, kb, &k).ok()) {
    return InvalidArgument(op, ": inner dimensions differ: ", c->DebugString(a), " x ", c->DebugString(b),
                           " (transpose_a=", BoolName(transpose_a), ", transpose_b=", BoolName(transpose_b), ")");
  }
  ShapeHandle batch_a, batch_b, batch;
  TF_RETURN_IF_ERROR(c->Subshape(a, 0, -2, &batch_a));
  TF_RETURN_IF_ERROR(c->Subshape(b, 0, -2, &batch_b));
  if (!tensorflow::shape_inference::BroadcastBinaryOpOutputShapeFnHelper(c, batch_a, batch_b, true, &batch).ok()) {
    return InvalidArgument(op, ": batch dimensions of ", c->DebugString(a), " and ", c->DebugString(b),
                           " do not broadcast");
  }
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Matrix(m, n), &out));
  c->set_output(0, out);
  return absl::OkStatus();
}

}  // namespace tf
}  // namespace approxtrain
