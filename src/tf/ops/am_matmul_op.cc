// AMMatMul: batched matrix product through a multiplier table.
#include "common/table_shape.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"

namespace approxtrain {
namespace tf {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

absl::Status AMMatMulShape(InferenceContext* c) {
  ShapeHandle a, b;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &a));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 2, &b));
  TF_RETURN_IF_ERROR(CheckTableShape(c, 2));
  bool transpose_a = false, transpose_b = false;
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_a", &transpose_a));
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_b", &transpose_b));
  const DimensionHandle m = c->Dim(a, transpose_a ? -1 : -2);
  const DimensionHandle ka = c->Dim(a, transpose_a ? -2 : -1);
  const DimensionHandle kb = c->Dim(b, transpose_b ? -1 : -2);
  const DimensionHandle n = c->Dim(b, transpose_b ? -2 : -1);
  DimensionHandle k;
  if (!c->Merge(ka, kb, &k).ok()) {
    return InvalidArgument("AMMatMul: inner dimensions differ: ", c->DebugString(a), " x ", c->DebugString(b),
                           " (transpose_a=", BoolName(transpose_a), ", transpose_b=", BoolName(transpose_b), ")");
  }
  ShapeHandle batch_a, batch_b, batch;
  TF_RETURN_IF_ERROR(c->Subshape(a, 0, -2, &batch_a));
  TF_RETURN_IF_ERROR(c->Subshape(b, 0, -2, &batch_b));
  if (!tensorflow::shape_inference::BroadcastBinaryOpOutputShapeFnHelper(c, batch_a, batch_b, true, &batch).ok()) {
    return InvalidArgument("AMMatMul: batch dimensions of ", c->DebugString(a), " and ", c->DebugString(b),
                           " do not broadcast");
  }
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Matrix(m, n), &out));
  c->set_output(0, out);
  return absl::OkStatus();
}

}  // namespace

// product[..., i, j] = sum over k ascending of op(a)[..., i, k] (x) op(b)[..., k, j],
// (x) the AMSim product with a as the table row; batch dimensions broadcast
// as in numpy; the table's length 4^M gives the mantissa width M.
REGISTER_OP("AMMatMul")
    .Input("a: float")
    .Input("b: float")
    .Input("table: uint16")
    .Output("product: float")
    .Attr("transpose_a: bool = false")
    .Attr("transpose_b: bool = false")
    .Attr(kRoundingAttr)
    .SetShapeFn(AMMatMulShape);

}  // namespace tf
}  // namespace approxtrain
