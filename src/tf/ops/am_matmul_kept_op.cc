// AMMatMulKept and its two gradient ops: the AM product of a row-dropped Dense layer
// (docs/approx-dropout.md), on the kept rows and columns of the kernel only, gathered
// by the kernel instead of by TensorFlow ops.
#include "common/table_shape.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace approxtrain {
namespace tf {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// Checks the int32 vectors rows, cols (and their sizes against a's columns) and the matrix b.
absl::Status KeptOperands(InferenceContext* c, int b_input, int rows_input, DimensionHandle* rows,
                          DimensionHandle* cols) {
  ShapeHandle b, r, k;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(b_input), 2, &b));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(rows_input), 1, &r));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(rows_input + 1), 1, &k));
  *rows = c->Dim(r, 0);
  *cols = c->Dim(k, 0);
  return absl::OkStatus();
}

absl::Status ForwardShape(InferenceContext* c) {
  ShapeHandle a, dropped;
  DimensionHandle rows, cols, unused;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &a));
  TF_RETURN_IF_ERROR(KeptOperands(c, 1, 3, &rows, &cols));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(a, 1), rows, &unused));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(5), 1, &dropped));
  TF_RETURN_IF_ERROR(CheckTableShape(c, 2));
  c->set_output(0, c->Matrix(c->Dim(a, 0), cols));
  c->set_output(1, c->Vector(cols));
  return absl::OkStatus();
}

absl::Status GradAShape(InferenceContext* c) {
  ShapeHandle dy, poisoned;
  DimensionHandle rows, cols, unused;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &dy));
  TF_RETURN_IF_ERROR(KeptOperands(c, 1, 3, &rows, &cols));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(dy, 1), cols, &unused));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(5), 1, &poisoned));
  TF_RETURN_IF_ERROR(CheckTableShape(c, 2));
  c->set_output(0, c->Matrix(c->Dim(dy, 0), rows));
  return absl::OkStatus();
}

absl::Status GradBShape(InferenceContext* c) {
  ShapeHandle a, dy, poisoned;
  DimensionHandle rows, cols, unused;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &a));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &dy));
  TF_RETURN_IF_ERROR(KeptOperands(c, 2, 4, &rows, &cols));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(a, 1), rows, &unused));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(dy, 1), cols, &unused));
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(a, 0), c->Dim(dy, 0), &unused));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(6), 1, &poisoned));
  TF_RETURN_IF_ERROR(CheckTableShape(c, 3));
  c->set_output(0, c->input(2));
  return absl::OkStatus();
}

}  // namespace

// product[i, j] = sum over t ascending of a[i, t] (x) b[rows[t], cols[j]]: AMMatMul of a and
// the block b[rows][:, cols] (k ascending, a the table row), gathered by the kernel.
// poisoned[j]: some b[d, cols[j]] with d in `dropped` is not finite; then product[:, j] is
// NaN, as a full product whose input is +0 at the dropped rows gives (0 x inf).
REGISTER_OP("AMMatMulKept")
    .Input("a: float")
    .Input("b: float")
    .Input("table: uint16")
    .Input("rows: int32")
    .Input("cols: int32")
    .Input("dropped: int32")
    .Output("product: float")
    .Output("poisoned: bool")
    .Attr(kRoundingAttr)
    .SetShapeFn(ForwardShape);

// grad_a = dy' . b[rows][:, cols]^T (AMMatMul with transpose_b, dy the table row), dy' being
// dy with +0 in the poisoned columns (whose forward value did not depend on the product).
REGISTER_OP("AMMatMulKeptGradA")
    .Input("dy: float")
    .Input("b: float")
    .Input("table: uint16")
    .Input("rows: int32")
    .Input("cols: int32")
    .Input("poisoned: bool")
    .Output("grad_a: float")
    .Attr(kRoundingAttr)
    .SetShapeFn(GradAShape);

// grad_b, b's shape: +0 everywhere but the kept block, grad_b[rows[t], cols[j]] = (a^T . dy')[t, j]
// (AMMatMul with transpose_a, a^T the table row); b is read for its shape only.
REGISTER_OP("AMMatMulKeptGradB")
    .Input("a: float")
    .Input("dy: float")
    .Input("b: float")
    .Input("table: uint16")
    .Input("rows: int32")
    .Input("cols: int32")
    .Input("poisoned: bool")
    .Output("grad_b: float")
    .Attr(kRoundingAttr)
    .SetShapeFn(GradBShape);

}  // namespace tf
}  // namespace approxtrain
