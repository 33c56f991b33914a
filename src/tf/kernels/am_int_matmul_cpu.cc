// AMIntMatMul on the CPU: the core's integer GEMM on TF's intra-op threads.
// Also AMIntMatMulZeroPoint, a CPU-only op registered here: the same GEMM
// with the zero-point terms of asymmetric (unsigned) quantization added as
// the output is written, in int64 (approxtrain.quant's forward: one op
// instead of casts, reductions and broadcast subtractions over the operands
// and the output).  It has no GPU kernel; Python uses it only where no GPU is.
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

}  // namespace tf
}  // namespace approxtrain
