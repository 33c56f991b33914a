// AMConv2D, AMConv2DBackpropInput and AMConv2DBackpropFilter OpKernels,
// templated on the device: they validate, build the core's Conv2DShape and
// allocate the output; AMConvFunctor<Device> runs the core (CPU:
// am_conv_cpu.cc; a GPU specialization plugs in the same way).
#pragma once

#include <string>

#include "amsim/conv.h"
#include "common/conv_params.h"
#include "kernels/table_input.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace approxtrain {
namespace tf {

template <typename Device>
struct AMConvFunctor {
  // x [N, H, W, C], w [KH, KW, C/G, O], y / dy [N, OH, OW, O].
  void Forward(tensorflow::OpKernelContext* ctx, const amsim::Table& table, const amsim::Conv2DShape& s, const float* x,
               const float* w, float* y);
  void InputGrad(tensorflow::OpKernelContext* ctx, const amsim::Table& table, const amsim::Conv2DShape& s,
                 const float* dy, const float* w, float* dx);
  void FilterGrad(tensorflow::OpKernelContext* ctx, const amsim::Table& table, const amsim::Conv2DShape& s,
                  const float* x, const float* dy, float* dw);
};

// Attributes, table and shape handling common to the three ops.
class AMConvOpBase : public tensorflow::OpKernel {
 public:
  explicit AMConvOpBase(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string rounding;
    OP_REQUIRES_OK(ctx, ParseConvAttrs(ctx, &attrs_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("operand_rounding", &rounding));
    OP_REQUIRES_OK(ctx, ParseRounding(rounding, &rounding_));
  }

 protected:
  static absl::Status Rank4(const tensorflow::TensorShape& shape, const char* what) {
    if (shape.dims() == 4) return absl::OkStatus();
    return InvalidArgument(what, " must be 4-D, got shape ", shape.DebugString());
  }

  // A 1-D int32 tensor of 4 non-negative sizes (input_sizes / filter_sizes).
  static absl::Status SizesFromTensor(const tensorflow::Tensor& t, const char* what, tensorflow::TensorShape* shape) {
    if (!tensorflow::TensorShapeUtils::IsVector(t.shape()) || t.NumElements() != 4) {
      return InvalidArgument(what, " must be a 1-D tensor of 4 sizes, got shape ", t.shape().DebugString());
    }
    const auto v = t.vec<int32_t>();
    return tensorflow::TensorShape::BuildTensorShape({v(0), v(1), v(2), v(3)}, shape);
  }

  absl::Status MakeShape(const tensorflow::TensorShape& input, const tensorflow::TensorShape& filter,
                         amsim::Conv2DShape* s) const {
    TF_RETURN_IF_ERROR(Rank4(input, "input"));
    TF_RETURN_IF_ERROR(Rank4(filter, "filter"));
    ConvTensorDims dims;
    for (int i = 0; i < 4; ++i) {
      dims.input[i] = input.dim_size(i);
      dims.filter[i] = filter.dim_size(i);
    }
    absl::Status status = MakeConv2DShape(attrs_, dims, s);
    if (!status.ok()) {
      return InvalidArgument(name(), ": ", status.message(), " (input ", input.DebugString(), ", filter ",
                             filter.DebugString(), ")");
    }
    return absl::OkStatus();
  }

  // out_backprop of a gradient op must have the forward output's shape.
  static absl::Status CheckOutBackprop(const tensorflow::TensorShape& dy, const amsim::Conv2DShape& s) {
    const tensorflow::TensorShape expected({s.batch, s.out_h, s.out_w, s.out_c});
    if (dy == expected) return absl::OkStatus();
    return InvalidArgument("out_backprop shape ", dy.DebugString(), " does not match the convolution's output shape ",
                           expected.DebugString());
  }

  absl::Status Table(tensorflow::OpKernelContext* ctx, int index, amsim::Table* table) const {
    return TableFromTensor(ctx->input(index), rounding_, table);
  }

  ConvAttrs attrs_;
  amsim::Rounding rounding_ = amsim::Rounding::kTruncate;
};

template <typename Device>
class AMConv2DOp : public AMConvOpBase {
 public:
  using AMConvOpBase::AMConvOpBase;
  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& x = ctx->input(0);
    const tensorflow::Tensor& w = ctx->input(1);
    amsim::Table table;
    amsim::Conv2DShape s;
    OP_REQUIRES_OK(ctx, Table(ctx, 2, &table));
    OP_REQUIRES_OK(ctx, MakeShape(x.shape(), w.shape(), &s));
    tensorflow::Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({s.batch, s.out_h, s.out_w, s.out_c}), &y));
    if (y->NumElements() == 0) return;
    AMConvFunctor<Device>().Forward(ctx, table, s, x.flat<float>().data(), w.flat<float>().data(),
                                    y->flat<float>().data());
  }
};

template <typename Device>
class AMConv2DBackpropInputOp : public AMConvOpBase {
 public:
  using AMConvOpBase::AMConvOpBase;
  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& w = ctx->input(1);
    const tensorflow::Tensor& dy = ctx->input(2);
    tensorflow::TensorShape input_shape;
    amsim::Table table;
    amsim::Conv2DShape s;
    OP_REQUIRES_OK(ctx, SizesFromTensor(ctx->input(0), "input_sizes", &input_shape));
    OP_REQUIRES_OK(ctx, Table(ctx, 3, &table));
    OP_REQUIRES_OK(ctx, MakeShape(input_shape, w.shape(), &s));
    OP_REQUIRES_OK(ctx, CheckOutBackprop(dy.shape(), s));
    tensorflow::Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, input_shape, &dx));
    if (dx->NumElements() == 0) return;
    AMConvFunctor<Device>().InputGrad(ctx, table, s, dy.flat<float>().data(), w.flat<float>().data(),
                                      dx->flat<float>().data());
  }
};

template <typename Device>
class AMConv2DBackpropFilterOp : public AMConvOpBase {
 public:
  using AMConvOpBase::AMConvOpBase;
  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& x = ctx->input(0);
    const tensorflow::Tensor& dy = ctx->input(2);
    tensorflow::TensorShape filter_shape;
    amsim::Table table;
    amsim::Conv2DShape s;
    OP_REQUIRES_OK(ctx, SizesFromTensor(ctx->input(1), "filter_sizes", &filter_shape));
    OP_REQUIRES_OK(ctx, Table(ctx, 3, &table));
    OP_REQUIRES_OK(ctx, MakeShape(x.shape(), filter_shape, &s));
    OP_REQUIRES_OK(ctx, CheckOutBackprop(dy.shape(), s));
    tensorflow::Tensor* dw = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, filter_shape, &dw));
    if (dw->NumElements() == 0) return;
    AMConvFunctor<Device>().FilterGrad(ctx, table, s, x.flat<float>().data(), dy.flat<float>().data(),
                                       dw->flat<float>().data());
  }
};

}  // namespace tf
}  // namespace approxtrain
