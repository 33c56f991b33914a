// AMMatMul: batched matrix product through a multiplier table.
#include "common/matmul_shape.h"
#include "common/table_shape.h"
#include "tensorflow/core/framework/op.h"

namespace approxtrain {
namespace tf {
namespace {

absl::Status AMMatMulShape(tensorflow::shape_inference::InferenceContext* c) {
  return BatchedMatMulShape(c, "AMMatMul", [](auto* c) { return CheckTableShape(c, 2); });
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
