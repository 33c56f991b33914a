// AMMatMul OpKernel, templated on the device: it validates, plans the batch
// broadcast with the core's planner and allocates the output;
// AMMatMulFunctor<Device> runs the plan (am_matmul_cpu.cc, am_matmul_gpu.cc).
#pragma once

#include <string>
#include <vector>

#include "amsim/batch_plan.h"
#include "kernels/table_input.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace approxtrain {
namespace tf {

// Output shape and the core's batch plan (amsim/batch_plan.h) for
// op(a) [.., *, *] x op(b) [.., *, *] with numpy batch broadcasting.
inline absl::Status PlanMatMul(const tensorflow::TensorShape& a, const tensorflow::TensorShape& b, bool transpose_a,
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
      return InvalidArgument("AMMatMul operands must have rank >= 2, got shapes ", a.DebugString(), " and ",
                             b.DebugString());
    case amsim::BatchPlanError::kInnerDims:
      return InvalidArgument("AMMatMul: inner dimensions differ: ", a.DebugString(), " x ", b.DebugString(),
                             " (k = ", error.left, " vs ", error.right, ", transpose_a=", BoolName(transpose_a),
                             ", transpose_b=", BoolName(transpose_b), ")");
    case amsim::BatchPlanError::kBatchDims:
      return InvalidArgument("AMMatMul: batch dimensions of ", a.DebugString(), " and ", b.DebugString(),
                             " do not broadcast (", error.left, " vs ", error.right, ")");
  }
  *out = tensorflow::TensorShape();
  for (int64_t d : plan->output_dims()) TF_RETURN_IF_ERROR(out->AddDimWithStatus(d));
  return absl::OkStatus();
}

template <typename Device>
struct AMMatMulFunctor {
  // a, b: the whole operands; c: dense [plan.batch, m, n].
  void operator()(tensorflow::OpKernelContext* ctx, const amsim::Table& table, const amsim::BatchPlan& plan,
                  const float* a, const float* b, float* c);
};

template <typename Device>
class AMMatMulOp : public tensorflow::OpKernel {
 public:
  explicit AMMatMulOp(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string rounding;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("transpose_a", &transpose_a_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("transpose_b", &transpose_b_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("operand_rounding", &rounding));
    OP_REQUIRES_OK(ctx, ParseRounding(rounding, &rounding_));
  }

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& a = ctx->input(0);
    const tensorflow::Tensor& b = ctx->input(1);
    amsim::Table table;
    OP_REQUIRES_OK(ctx, TableFromTensor(ctx->input(2), rounding_, &table));
    tensorflow::TensorShape out_shape;
    amsim::BatchPlan plan;
    OP_REQUIRES_OK(ctx, PlanMatMul(a.shape(), b.shape(), transpose_a_, transpose_b_, &out_shape, &plan));
    tensorflow::Tensor* c = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &c));
    if (c->NumElements() == 0) return;
    AMMatMulFunctor<Device>()(ctx, table, plan, a.flat<float>().data(), b.flat<float>().data(),
                              c->flat<float>().data());
  }

 private:
  bool transpose_a_ = false, transpose_b_ = false;
  amsim::Rounding rounding_ = amsim::Rounding::kTruncate;
};

}  // namespace tf
}  // namespace approxtrain
