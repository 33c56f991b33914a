#include "common/conv_params.h"

#include "absl/strings/str_join.h"
#include "tensorflow/core/framework/kernel_shape_util.h"
#include "tensorflow/core/util/tensor_format.h"

namespace approxtrain {
namespace tf {

namespace {

absl::Status ValidateWindowAttr(const char* name, const std::vector<int64_t>& v, int64_t* h, int64_t* w) {
  if (v.size() != 4 || v[0] != 1 || v[3] != 1 || v[1] < 1 || v[2] < 1) {
    return InvalidArgument(name, " must be [1, ", name[0] == 's' ? "stride_h, stride_w" : "dilation_h, dilation_w",
                           ", 1] (NHWC) with values >= 1, got [", absl::StrJoin(v, ", "), "]");
  }
  *h = v[1];
  *w = v[2];
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateConvAttrs(const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                               const std::string& padding, const std::vector<int64_t>& explicit_paddings,
                               ConvAttrs* out) {
  TF_RETURN_IF_ERROR(ValidateWindowAttr("strides", strides, &out->stride_h, &out->stride_w));
  TF_RETURN_IF_ERROR(ValidateWindowAttr("dilations", dilations, &out->dilation_h, &out->dilation_w));
  TF_RETURN_IF_ERROR(tensorflow::GetPaddingFromString(padding, &out->padding));
  TF_RETURN_IF_ERROR(tensorflow::CheckValidPadding(out->padding, explicit_paddings, 4, tensorflow::FORMAT_NHWC));
  out->explicit_paddings = explicit_paddings;
  return absl::OkStatus();
}

absl::Status SpatialOutput(const ConvAttrs& attrs, int dim, int64_t input_size, int64_t filter_size,
                           int64_t* output_size, int64_t* pad_before, int64_t* pad_after) {
  const int64_t stride = dim == 0 ? attrs.stride_h : attrs.stride_w;
  const int64_t dilation = dim == 0 ? attrs.dilation_h : attrs.dilation_w;
  const char* axis = dim == 0 ? "height" : "width";
  if (filter_size < 1) return InvalidArgument("filter ", axis, " must be >= 1, got ", filter_size);
  if (input_size < 0) return InvalidArgument("input ", axis, " must be >= 0, got ", input_size);
  *pad_before = *pad_after = 0;
  if (attrs.padding == tensorflow::EXPLICIT) {
    *pad_before = attrs.explicit_paddings[2 + 2 * dim];
    *pad_after = attrs.explicit_paddings[3 + 2 * dim];
  } else if (attrs.padding == tensorflow::SAME) {
    // TensorFlow's own SAME rule, so AM and native convolutions line up.
    TF_RETURN_IF_ERROR(tensorflow::GetWindowedOutputSizeVerbose(input_size, filter_size, dilation, stride,
                                                                attrs.padding, output_size, pad_before, pad_after));
  }
  const int64_t effective = (filter_size - 1) * dilation + 1;
  const int64_t span = input_size + *pad_before + *pad_after - effective;
  if (span < 0) {
    return InvalidArgument("the dilated filter ", axis, " ", effective, " (filter ", filter_size, ", dilation ",
                           dilation, ") is larger than the padded input ", axis, " ",
                           input_size + *pad_before + *pad_after, " (input ", input_size, ", padding ", *pad_before,
                           " + ", *pad_after, ")");
  }
  *output_size = span / stride + 1;
  return absl::OkStatus();
}

absl::Status ConvGroups(int64_t in_channels, int64_t filter_in_channels, int64_t out_channels, int64_t* groups) {
  if (filter_in_channels < 1) return InvalidArgument("filter input channels must be >= 1, got ", filter_in_channels);
  if (in_channels < 1 || in_channels % filter_in_channels != 0) {
    return InvalidArgument("input channels (", in_channels, ") must be a positive multiple of the filter's input ",
                           "channels (", filter_in_channels, "); groups = input channels / filter input channels");
  }
  *groups = in_channels / filter_in_channels;
  if (out_channels % *groups != 0) {
    return InvalidArgument("output channels (", out_channels, ") must be divisible by groups (", *groups, " = ",
                           in_channels, " input channels / ", filter_in_channels, " filter input channels)");
  }
  return absl::OkStatus();
}

absl::Status MakeConv2DShape(const ConvAttrs& attrs, const ConvTensorDims& dims, amsim::Conv2DShape* s) {
  const int64_t* in = dims.input;
  const int64_t* f = dims.filter;
  *s = amsim::Conv2DShape{};
  s->batch = in[0];
  s->in_h = in[1];
  s->in_w = in[2];
  s->in_c = in[3];
  s->filter_h = f[0];
  s->filter_w = f[1];
  s->out_c = f[3];
  s->stride_h = attrs.stride_h;
  s->stride_w = attrs.stride_w;
  s->dilation_h = attrs.dilation_h;
  s->dilation_w = attrs.dilation_w;
  TF_RETURN_IF_ERROR(ConvGroups(in[3], f[2], f[3], &s->groups));
  int64_t out_h = 0, out_w = 0;
  TF_RETURN_IF_ERROR(SpatialOutput(attrs, 0, in[1], f[0], &out_h, &s->pad_top, &s->pad_bottom));
  TF_RETURN_IF_ERROR(SpatialOutput(attrs, 1, in[2], f[1], &out_w, &s->pad_left, &s->pad_right));
  if (const char* err = amsim::conv2d_finalize(*s)) return InvalidArgument(err);
  if (s->out_h != out_h || s->out_w != out_w) {
    return absl::InternalError(
        absl::StrCat("output size disagreement: core ", s->out_h, "x", s->out_w, ", TF rule ", out_h, "x", out_w));
  }
  return absl::OkStatus();
}

}  // namespace tf
}  // namespace approxtrain
