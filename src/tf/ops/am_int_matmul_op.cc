// AMIntMatMul: batched matrix product of 8-bit operand patterns through an
// integer multiplier's product table, exact int32 sums.
#include "common/matmul_shape.h"
#include "common/status.h"
#include "tensorflow/core/framework/op.h"

namespace approxtrain {
namespace tf {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// products: [256, 256].
absl::Status CheckProductsShape(InferenceContext* c) {
  ShapeHandle products;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &products));
  for (int d = 0; d < 2; ++d) {
    DimensionHandle side;
    if (!c->WithValue(c->Dim(products, d), 256, &side).ok())
      return InvalidArgument("AMIntMatMul: products must have shape [256, 256], got ", c->DebugString(products));
  }
  return absl::OkStatus();
}

absl::Status AMIntMatMulShape(InferenceContext* c) { return BatchedMatMulShape(c, "AMIntMatMul", CheckProductsShape); }

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
