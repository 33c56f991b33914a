// Attributes and shapes shared by AMConv2D and its two gradient ops, for the
// shape functions (ops/) and the kernels (kernels/).  Padding follows
// tf.nn.conv2d exactly: SAME uses TensorFlow's own rule
// (GetWindowedOutputSizeVerbose), EXPLICIT reads explicit_paddings
// [0, 0, top, bottom, left, right, 0, 0] (NHWC).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "amsim/conv.h"
#include "common/status.h"
#include "tensorflow/core/platform/status.h"
#include "tensorflow/core/util/padding.h"

namespace approxtrain {
namespace tf {

// The attributes of every AM conv op (REGISTER_OP strings).
constexpr char kStridesAttr[] = "strides: list(int)";
constexpr char kDilationsAttr[] = "dilations: list(int) = [1, 1, 1, 1]";
constexpr char kPaddingAttr[] = "padding: {'SAME', 'VALID', 'EXPLICIT'}";
constexpr char kExplicitPaddingsAttr[] = "explicit_paddings: list(int) = []";

struct ConvAttrs {
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  tensorflow::Padding padding = tensorflow::VALID;
  std::vector<int64_t> explicit_paddings;  // 8 entries when padding == EXPLICIT
};

// NHWC input [N, H, W, C] and HWIO filter [KH, KW, C/groups, O].
struct ConvTensorDims {
  int64_t input[4] = {0, 0, 0, 0};
  int64_t filter[4] = {0, 0, 0, 0};
};

absl::Status ValidateConvAttrs(const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                               const std::string& padding, const std::vector<int64_t>& explicit_paddings,
                               ConvAttrs* out);

// Works with OpKernelConstruction and shape_inference::InferenceContext.
template <class Context>
absl::Status ParseConvAttrs(Context* c, ConvAttrs* out) {
  std::vector<int64_t> strides, dilations, explicit_paddings;
  std::string padding;
  TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(c->GetAttr("dilations", &dilations));
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
  TF_RETURN_IF_ERROR(c->GetAttr("explicit_paddings", &explicit_paddings));
  return ValidateConvAttrs(strides, dilations, padding, explicit_paddings, out);
}

// Paddings and output size of one spatial dimension (SAME/VALID/EXPLICIT);
// InvalidArgument when the dilated filter does not fit the padded input.
absl::Status SpatialOutput(const ConvAttrs& attrs, int dim /*0: H, 1: W*/, int64_t input_size, int64_t filter_size,
                           int64_t* output_size, int64_t* pad_before, int64_t* pad_after);

// groups = C / filter_in_channels; InvalidArgument unless it divides C and O.
absl::Status ConvGroups(int64_t in_channels, int64_t filter_in_channels, int64_t out_channels, int64_t* groups);

// The complete, validated core shape (output size filled in).
absl::Status MakeConv2DShape(const ConvAttrs& attrs, const ConvTensorDims& dims, amsim::Conv2DShape* shape);

}  // namespace tf
}  // namespace approxtrain
