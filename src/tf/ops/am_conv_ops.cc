// AMConv2D (NHWC x HWIO, groups inferred) and its gradient ops
// AMConv2DBackpropInput / AMConv2DBackpropFilter, each through a multiplier
// table.  Canonical summation orders and operand order: src/amsim/conv.h.
#include "common/conv_params.h"
#include "common/table_shape.h"
#include "tensorflow/core/framework/op.h"

namespace approxtrain {
namespace tf {
namespace {

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// Output shape [N, OH, OW, O] of a convolution of `input` by `filter`, with
// whatever dimensions are known; errors when known dimensions are invalid.
absl::Status ConvOutputShape(InferenceContext* c, const ShapeHandle& input, const ShapeHandle& filter,
                             ShapeHandle* out) {
  ConvAttrs attrs;
  TF_RETURN_IF_ERROR(ParseConvAttrs(c, &attrs));
  const DimensionHandle channels = c->Dim(input, 3), filter_in = c->Dim(filter, 2), out_c = c->Dim(filter, 3);
  if (c->ValueKnown(channels) && c->ValueKnown(filter_in) && c->ValueKnown(out_c)) {
    int64_t groups = 0;
    TF_RETURN_IF_ERROR(ConvGroups(c->Value(channels), c->Value(filter_in), c->Value(out_c), &groups));
  }
  DimensionHandle spatial[2];
  for (int d = 0; d < 2; ++d) {
    const DimensionHandle in_d = c->Dim(input, 1 + d), f_d = c->Dim(filter, d);
    if (c->ValueKnown(in_d) && c->ValueKnown(f_d)) {
      int64_t size = 0, before = 0, after = 0;
      TF_RETURN_IF_ERROR(SpatialOutput(attrs, d, c->Value(in_d), c->Value(f_d), &size, &before, &after));
      spatial[d] = c->MakeDim(size);
    } else {
      spatial[d] = c->UnknownDim();
    }
  }
  *out = c->MakeShape({c->Dim(input, 0), spatial[0], spatial[1], out_c});
  return absl::OkStatus();
}

absl::Status AMConv2DShape(InferenceContext* c) {
  ShapeHandle input, filter, out;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
  TF_RETURN_IF_ERROR(CheckTableShape(c, 2));
  TF_RETURN_IF_ERROR(ConvOutputShape(c, input, filter, &out));
  c->set_output(0, out);
  return absl::OkStatus();
}

// out_backprop must have the forward output's shape.
absl::Status CheckOutBackprop(InferenceContext* c, const ShapeHandle& input, const ShapeHandle& filter) {
  ShapeHandle dy, expected, merged;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &dy));
  TF_RETURN_IF_ERROR(ConvOutputShape(c, input, filter, &expected));
  if (!c->Merge(dy, expected, &merged).ok()) {
    return InvalidArgument("out_backprop shape ", c->DebugString(dy), " does not match the convolution's output shape ",
                           c->DebugString(expected));
  }
  return absl::OkStatus();
}

absl::Status AMConv2DBackpropInputShape(InferenceContext* c) {
  ShapeHandle input, filter;
  TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(0, &input));
  TF_RETURN_IF_ERROR(c->WithRank(input, 4, &input));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
  TF_RETURN_IF_ERROR(CheckTableShape(c, 3));
  TF_RETURN_IF_ERROR(CheckOutBackprop(c, input, filter));
  c->set_output(0, input);
  return absl::OkStatus();
}

absl::Status AMConv2DBackpropFilterShape(InferenceContext* c) {
  ShapeHandle input, filter;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
  TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &filter));
  TF_RETURN_IF_ERROR(c->WithRank(filter, 4, &filter));
  TF_RETURN_IF_ERROR(CheckTableShape(c, 3));
  TF_RETURN_IF_ERROR(CheckOutBackprop(c, input, filter));
  c->set_output(0, filter);
  return absl::OkStatus();
}

}  // namespace

// output[n, oh, ow, o] = sum over (kh, kw, c) of input (x) filter (input is the
// table row); groups = C / filter.shape[2] (depthwise: groups == C).
REGISTER_OP("AMConv2D")
    .Input("input: float")
    .Input("filter: float")
    .Input("table: uint16")
    .Output("output: float")
    .Attr(kStridesAttr)
    .Attr(kPaddingAttr)
    .Attr(kExplicitPaddingsAttr)
    .Attr(kDilationsAttr)
    .Attr(kRoundingAttr)
    .SetShapeFn(AMConv2DShape);

// Gradient of AMConv2D with respect to its input; out_backprop is the table row.
REGISTER_OP("AMConv2DBackpropInput")
    .Input("input_sizes: int32")
    .Input("filter: float")
    .Input("out_backprop: float")
    .Input("table: uint16")
    .Output("output: float")
    .Attr(kStridesAttr)
    .Attr(kPaddingAttr)
    .Attr(kExplicitPaddingsAttr)
    .Attr(kDilationsAttr)
    .Attr(kRoundingAttr)
    .SetShapeFn(AMConv2DBackpropInputShape);

// Gradient of AMConv2D with respect to its filter; input is the table row.
REGISTER_OP("AMConv2DBackpropFilter")
    .Input("input: float")
    .Input("filter_sizes: int32")
    .Input("out_backprop: float")
    .Input("table: uint16")
    .Output("output: float")
    .Attr(kStridesAttr)
    .Attr(kPaddingAttr)
    .Attr(kExplicitPaddingsAttr)
    .Attr(kDilationsAttr)
    .Attr(kRoundingAttr)
    .SetShapeFn(AMConv2DBackpropFilterShape);

}  // namespace tf
}  // namespace approxtrain
