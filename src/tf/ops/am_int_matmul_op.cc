// AMIntMatMul: batched matrix product of 8-bit operand patterns through an
// integer multiplier's product table, exact int32 sums.
#include "common/status.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"

namespace approxtrain {
namespace tf {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

absl::Status AMIntMatMulShape(InferenceContext* c) {
  ShapeHandle a, b, products;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 2, &a));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 2, &b));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &products));
  for (int d = 0; d < 2; ++d) {
    DimensionHandle side;
    if (!c->WithValue(c->Dim(products, d), 256, &side).ok())
      return InvalidArgument("AMIntMatMul: products must have shape [256, 256], got ", c->DebugString(products));
  }
  bool transpose_a = false, transpose_b = false;
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_a", &transpose_a));
  TF_RETURN_IF_ERROR(c->GetAttr("transpose_b", &transpose_b));
  const DimensionHandle m = c->Dim(a, transpose_a ? -1 : -2);
  const DimensionHandle ka = c->Dim(a, transpose_a ? -2 : -1);
  const DimensionHandle kb = c->Dim(b, transpose_b ? -1 : -2);
  const DimensionHandle n = c->Dim(b, transpose_b ? -2 : -1);
  DimensionHandle k;
  if (!c->Merge(ka, kb, &k).ok()) {
    return InvalidArgument("AMIntMatMul: inner dimensions differ: ", c->DebugString(a), " x ", c->DebugString(b),
                           " (transpose_a=", BoolName(transpose_a), ", transpose_b=", BoolName(transpose_b), ")");
  }
  ShapeHandle batch_a, batch_b, batch;
  TF_RETURN_IF_ERROR(c->Subshape(a, 0, -2, &batch_a));
  TF_RETURN_IF_ERROR(c->Subshape(b, 0, -2, &batch_b));
  if (!tensorflow::shape_inference::BroadcastBinaryOpOutputShapeFnHelper(c, batch_a, batch_b, true, &batch).ok()) {
    return InvalidArgument("AMIntMatMul: batch dimensions of ", c->DebugString(a), " and ", c->DebugString(b),
                           " do not broadcast");
  }
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Matrix(m, n), &out));
  c->set_output(0, out);
  return absl::OkStatus();
}

}  // namespace

// product[..., i, j] = sum over k of products[op(a)[..., i, k], op(b)[..., k, j]]
// (a, b: uint8 bit patterns, the table row from a), exact in int32; batch
// dimensions broadcast as in numpy.  Fails with InvalidArgument when
// K * max|products| >= 2^31 (an int32 sum could overflow): split K and add
// the parts in int64.
REGISTER_OP("AMIntMatMul")
    .Input("a: uint8")
    .Input("b: uint8")
    .Input("products: int32")
    .Output("product: int32")
    .Attr("transpose_a: bool = false")
    .Attr("transpose_b: bool = false")
    .SetShapeFn(AMIntMatMulShape);

}  // namespace tf
}  // namespace approxtrain
