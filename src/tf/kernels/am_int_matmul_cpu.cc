// AMIntMatMul on the CPU: the core's integer GEMM on TF's intra-op threads.
// Also AMIntMatMulZeroPoint, a CPU-only op registered here: the same GEMM
// with the zero-point terms of asymmetric (unsigned) quantization added as
// the output is written, in int64 (approxtrain.quant's forward: one op
// instead of casts, reductions and broadcast subtractions over the operands
// and the output); and AMIntIm2Col, the uint8 im2col patches of the integer
// convolutions (one pass instead of TF's slices or gather).  Neither has a
// GPU kernel; Python uses them only where no GPU is.
#include <algorithm>
#include <cstring>
#include <vector>

#include "amsim/cpu/int_gemm.h"
#include "common/matmul_shape.h"
#include "kernels/am_int_matmul_op.h"
#include "kernels/cpu_parallel.h"
#include "tensorflow/core/framework/op.h"

namespace approxtrain {
namespace tf {

using CPUDevice = Eigen::ThreadPoolDevice;

template <>
void AMIntMatMulFunctor<CPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const int32_t* products,
                                               int64_t /*max_abs*/, const amsim::BatchPlan& plan, const uint8_t* a,
                                               const uint8_t* b, int32_t* c) {
  amsim::batched_int_gemm_cpu(products, plan, a, b, c, IntraOpParallelFor(ctx));
}

REGISTER_KERNEL_BUILDER(Name("AMIntMatMul").Device(tensorflow::DEVICE_CPU), AMIntMatMulOp<CPUDevice>);

namespace {

using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

absl::Status AMIntMatMulZeroPointShape(InferenceContext* c) {
  return BatchedMatMulShape(c, "AMIntMatMulZeroPoint", [](InferenceContext* ctx) {
    ShapeHandle products, za, zb;
    TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(2), 2, &products));
    TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(3), 0, &za));
    TF_RETURN_IF_ERROR(ctx->WithRankAtMost(ctx->input(4), 1, &zb));
    return absl::OkStatus();
  });
}

}  // namespace

// product[..., i, j] = sum over k of (op(a)[..., i, k] - za) * (op(b)[..., k, j] - zb[j]),
// the products of the patterns as stored taken from the table and the
// zero-point terms exact integer sums (int64):
//   sum_k products[a, b] - zb[j] * sum_k a + za * (K * zb[j] - sum_k b).
// za: int32 scalar; zb: int32 scalar or [N] (one per column, every batch
// alike).  K is not bounded: the table sums are split into int32-safe blocks.
REGISTER_OP("AMIntMatMulZeroPoint")
    .Input("a: uint8")
    .Input("b: uint8")
    .Input("products: int32")
    .Input("za: int32")
    .Input("zb: int32")
    .Output("product: int64")
    .Attr("transpose_a: bool = false")
    .Attr("transpose_b: bool = false")
    .SetShapeFn(AMIntMatMulZeroPointShape);

class AMIntMatMulZeroPointOp : public tensorflow::OpKernel {
 public:
  explicit AMIntMatMulZeroPointOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("transpose_a", &transpose_a_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("transpose_b", &transpose_b_));
  }

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& a = ctx->input(0);
    const tensorflow::Tensor& b = ctx->input(1);
    const tensorflow::Tensor& products = ctx->input(2);
    const tensorflow::Tensor& za = ctx->input(3);
    const tensorflow::Tensor& zb = ctx->input(4);
    OP_REQUIRES(ctx,
                products.dims() == 2 && products.dim_size(0) == amsim::kIntTableSide &&
                    products.dim_size(1) == amsim::kIntTableSide,
                InvalidArgument("AMIntMatMulZeroPoint: products must have shape [256, 256], got ",
                                products.shape().DebugString()));
    tensorflow::TensorShape out_shape;
    amsim::BatchPlan plan;
    OP_REQUIRES_OK(ctx, PlanIntMatMul(a.shape(), b.shape(), transpose_a_, transpose_b_, &out_shape, &plan));
    OP_REQUIRES(ctx, za.dims() == 0,
                InvalidArgument("AMIntMatMulZeroPoint: za must be a scalar, got shape ", za.shape().DebugString()));
    OP_REQUIRES(ctx, zb.dims() == 0 || (zb.dims() == 1 && zb.dim_size(0) == plan.shape.n),
                InvalidArgument("AMIntMatMulZeroPoint: zb must be a scalar or have shape [", plan.shape.n,
                                "] (one per column), got shape ", zb.shape().DebugString()));
    tensorflow::Tensor* c = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &c));
    if (c->NumElements() == 0) return;
    amsim::batched_int_gemm_zero_point_cpu(products.flat<int32_t>().data(), plan, a.flat<uint8_t>().data(),
                                           b.flat<uint8_t>().data(), za.scalar<int32_t>()(), zb.flat<int32_t>().data(),
                                           zb.NumElements(), c->flat<int64_t>().data(), IntraOpParallelFor(ctx));
  }

 private:
  bool transpose_a_ = false, transpose_b_ = false;
};

REGISTER_KERNEL_BUILDER(Name("AMIntMatMulZeroPoint").Device(tensorflow::DEVICE_CPU), AMIntMatMulZeroPointOp);

namespace {

// The window attr of AMIntIm2Col: kh, kw, sh, sw, dh, dw, all >= 1.
absl::Status ReadWindow(const std::vector<int>& window, int64_t out[6]) {
  if (window.size() != 6) return InvalidArgument("AMIntIm2Col: window must be [kh, kw, sh, sw, dh, dw]");
  for (int i = 0; i < 6; ++i) {
    if (window[i] < 1) return InvalidArgument("AMIntIm2Col: window values must be >= 1, got ", window[i]);
    out[i] = window[i];
  }
  return absl::OkStatus();
}

// Copies run bytes; runs are short (kw * C), so by 16-byte blocks where both
// buffers have room past the run (the caller's later runs overwrite the
// excess: `limit` is the end of what this thread writes), else byte by byte.
inline void CopyRun(uint8_t* to, const uint8_t* from, int64_t run, const uint8_t* from_end, const uint8_t* limit) {
  const int64_t blocks = (run + 15) / 16 * 16;
  if (from + blocks <= from_end && to + blocks <= limit) {
    for (int64_t i = 0; i < blocks; i += 16) std::memcpy(to + i, from + i, 16);
  } else {
    for (int64_t i = 0; i < run; ++i) to[i] = from[i];
  }
}

// Output size of one spatial dimension, or -1 when the window does not fit.
int64_t WindowOutput(int64_t size, int64_t k, int64_t s, int64_t d) {
  const int64_t span = (k - 1) * d + 1;
  return size < span ? -1 : (size - span) / s + 1;
}

absl::Status AMIntIm2ColShape(InferenceContext* c) {
  ShapeHandle in;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &in));
  std::vector<int> attr;
  TF_RETURN_IF_ERROR(c->GetAttr("window", &attr));
  int64_t w[6];
  TF_RETURN_IF_ERROR(ReadWindow(attr, w));
  auto dim = [&](int axis, int64_t k, int64_t s, int64_t d) {
    const auto v = c->Value(c->Dim(in, axis));
    return v == InferenceContext::kUnknownDim ? c->UnknownDim()
                                              : c->MakeDim(std::max<int64_t>(0, WindowOutput(v, k, s, d)));
  };
  const auto channels = c->Value(c->Dim(in, 3));
  c->set_output(0, c->MakeShape({c->Dim(in, 0), dim(1, w[0], w[2], w[4]), dim(2, w[1], w[3], w[5]),
                                 channels == InferenceContext::kUnknownDim ? c->UnknownDim()
                                                                           : c->MakeDim(w[0] * w[1] * channels)}));
  return absl::OkStatus();
}

}  // namespace

// patches[n, oh, ow, (a * kw + b) * C + c] = padded[n, oh * sh + a * dh, ow * sw + b * dw, c]:
// the im2col patches of an (already padded) uint8 [N, H, W, C] tensor in (row, column,
// channel) order, as approxtrain.quant.ops.Im2Col.patches builds them with TF ops.
REGISTER_OP("AMIntIm2Col")
    .Input("padded: uint8")
    .Output("patches: uint8")
    .Attr("window: list(int)")
    .SetShapeFn(AMIntIm2ColShape);

class AMIntIm2ColOp : public tensorflow::OpKernel {
 public:
  explicit AMIntIm2ColOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::vector<int> window;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("window", &window));
    OP_REQUIRES_OK(ctx, ReadWindow(window, window_));
  }

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& in = ctx->input(0);
    OP_REQUIRES(ctx, in.dims() == 4,
                InvalidArgument("AMIntIm2Col: padded must be [N, H, W, C], got ", in.shape().DebugString()));
    const int64_t kh = window_[0], kw = window_[1], sh = window_[2], sw = window_[3], dh = window_[4], dw = window_[5];
    const int64_t n = in.dim_size(0), h = in.dim_size(1), w = in.dim_size(2), c = in.dim_size(3);
    const int64_t oh = WindowOutput(h, kh, sh, dh), ow = WindowOutput(w, kw, sw, dw);
    OP_REQUIRES(ctx, oh >= 0 && ow >= 0,
                InvalidArgument("AMIntIm2Col: the window does not fit the input ", in.shape().DebugString()));
    tensorflow::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, tensorflow::TensorShape({n, oh, ow, kh * kw * c}), &out));
    if (out->NumElements() == 0) return;
    const uint8_t* src = in.flat<uint8_t>().data();
    uint8_t* dst = out->flat<uint8_t>().data();
    // A tap row's kw pixels are one run of kw * C bytes when dw == 1, else kw runs of C.
    const int64_t run = dw == 1 ? kw * c : c, runs = dw == 1 ? 1 : kw;
    const int64_t row_bytes = ow * kh * kw * c;
    const uint8_t* src_end = src + in.NumElements();
    const int64_t blocks = (run + 15) / 16 * 16;  // the bytes a block copy of one run moves
    IntraOpParallelFor(ctx)(n * oh, row_bytes + 1, [&](int64_t r0, int64_t r1) {
      const uint8_t* limit = dst + r1 * row_bytes;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t image = r / oh, y = r % oh;
        uint8_t* o = dst + r * row_bytes;
        const uint8_t* top = src + (image * h + y * sh) * w * c;  // input row y * sh
        // Block copies for the whole output row when its last run (the furthest read, the
        // last write) has room: runs are read and written in increasing order.
        const uint8_t* last_read = top + ((kh - 1) * dh * w + (ow - 1) * sw + (runs - 1) * dw) * c;
        const bool room = last_read + blocks <= src_end && o + row_bytes - run + blocks <= limit;
        for (int64_t x = 0; x < ow; ++x) {
          for (int64_t a = 0; a < kh; ++a) {
            const uint8_t* line = top + (a * dh * w + x * sw) * c;
            for (int64_t q = 0; q < runs; ++q, o += run) {
              const uint8_t* from = line + q * dw * c;
              if (room && blocks == 16) {
                std::memcpy(o, from, 16);
              } else if (room) {
                for (int64_t i = 0; i < blocks; i += 16) std::memcpy(o + i, from + i, 16);
              } else {
                CopyRun(o, from, run, src_end, limit);
              }
            }
          }
        }
      }
    });
  }

 private:
  int64_t window_[6];
};

REGISTER_KERNEL_BUILDER(Name("AMIntIm2Col").Device(tensorflow::DEVICE_CPU), AMIntIm2ColOp);

}  // namespace tf
}  // namespace approxtrain
