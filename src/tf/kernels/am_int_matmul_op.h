// AMIntMatMul OpKernel, templated on the device: validates the operands and
// the table, checks that int32 sums cannot overflow, plans the batch
// broadcast and allocates the output; AMIntMatMulFunctor<Device> runs it
// (am_int_matmul_cpu.cc, am_int_matmul_gpu.cc).  The products input is in
// host memory on every device: the overflow bound needs its values.
#pragma once

#include <cstdint>
#include <vector>

#include "amsim/batch_plan.h"
#include "amsim/cpu/int_gemm.h"
#include "common/status.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace approxtrain {
namespace tf {

inline absl::Status PlanIntMatMul(const tensorflow::TensorShape& a, const tensorflow::TensorShape& b, bool transpose_a,
                                  bool transpose_b, tensorflow::TensorShape* out, amsim::BatchPlan* plan) {
  const auto dims = [](const tensorflow::TensorShape& s) {
    const auto sizes = s.dim_sizes();
    return std::vector<int64_t>(sizes.begin(), sizes.end());
  };
  const amsim::BatchPlanError error = amsim::plan_batched_gemm(dims(a), dims(b), transpose_a, transpose_b, plan);
  switch (error.kind) {
    case amsim::BatchPlanError::kNone:
      break;
    case amsim::BatchPlanError::kRank:
      return InvalidArgument("AMIntMatMul operands must have rank >= 2, got shapes ", a.DebugString(), " and ",
                             b.DebugString());
    case amsim::BatchPlanError::kInnerDims:
      return InvalidArgument("AMIntMatMul: inner dimensions differ: ", a.DebugString(), " x ", b.DebugString(),
                             " (k = ", error.left, " vs ", error.right, ", transpose_a=", BoolName(transpose_a),
                             ", transpose_b=", BoolName(transpose_b), ")");
    case amsim::BatchPlanError::kBatchDims:
      return InvalidArgument("AMIntMatMul: batch dimensions of ", a.DebugString(), " and ", b.DebugString(),
                             " do not broadcast (", error.left, " vs ", error.right, ")");
  }
  *out = tensorflow::TensorShape();
  for (int64_t d : plan->output_dims()) TF_RETURN_IF_ERROR(out->AddDimWithStatus(d));
  return absl::OkStatus();
}

// K * max|products| < 2^31, so no int32 sum of K products can overflow.
inline absl::Status CheckNoOverflow(int64_t k, int64_t max_abs) {
  constexpr int64_t kInt32Max = 2147483647;
  if (max_abs > 0 && k > kInt32Max / max_abs) {
    return InvalidArgument("AMIntMatMul: K = ", k, " products with max |products| = ", max_abs,
                           " could overflow int32: K * max|products| = ", k * max_abs,
                           " >= 2^31 = 2147483648; split K into chunks of at most ", kInt32Max / max_abs,
                           " and add the parts in int64");
  }
  return absl::OkStatus();
}

template <typename Device>
struct AMIntMatMulFunctor {
  // a, b: the whole operands; products: host [256 * 256]; c: dense [plan.batch, m, n].
  void operator()(tensorflow::OpKernelContext* ctx, const int32_t* products, int64_t max_abs,
                  const amsim::BatchPlan& plan, const uint8_t* a, const uint8_t* b, int32_t* c);
};

template <typename Device>
class AMIntMatMulOp : public tensorflow::OpKernel {
 public:
  explicit AMIntMatMulOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("transpose_a", &transpose_a_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("transpose_b", &transpose_b_));
  }

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& a = ctx->input(0);
    const tensorflow::Tensor& b = ctx->input(1);
    const tensorflow::Tensor& products = ctx->input(2);
    OP_REQUIRES(
        ctx,
        products.dims() == 2 && products.dim_size(0) == amsim::kIntTableSide &&
            products.dim_size(1) == amsim::kIntTableSide,
        InvalidArgument("AMIntMatMul: products must have shape [256, 256], got ", products.shape().DebugString()));
    tensorflow::TensorShape out_shape;
    amsim::BatchPlan plan;
    OP_REQUIRES_OK(ctx, PlanIntMatMul(a.shape(), b.shape(), transpose_a_, transpose_b_, &out_shape, &plan));
    const int32_t* table = products.flat<int32_t>().data();
    const int64_t max_abs = amsim::int_products_max_abs(table);
    OP_REQUIRES_OK(ctx, CheckNoOverflow(plan.shape.k, max_abs));
    tensorflow::Tensor* c = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &c));
    if (c->NumElements() == 0) return;
    AMIntMatMulFunctor<Device>()(ctx, table, max_abs, plan, a.flat<uint8_t>().data(), b.flat<uint8_t>().data(),
                                 c->flat<int32_t>().data());
  }

 private:
  bool transpose_a_ = false, transpose_b_ = false;
};

}  // namespace tf
}  // namespace approxtrain
