// AMMatMul OpKernel, templated on the device: it validates, broadcasts the
// batch dimensions and allocates the output; AMMatMulFunctor<Device> runs the
// GEMMs (CPU: am_matmul_cpu.cc; a GPU specialization plugs in the same way).
#pragma once

#include <string>
#include <vector>

#include "amsim/gemm.h"
#include "kernels/table_input.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace approxtrain {
namespace tf {

// batch GEMMs C_i = op(A)_i . op(B)_i.  Operand views carry the transposes;
// their data pointers are offsets (in floats) to add per batch; C is dense.
struct MatMulPlan {
  amsim::GemmShape shape;
  amsim::MatrixView a, b;         // data == nullptr: offsets below are added
  int64_t batch = 1;
  std::vector<int64_t> a_offset;  // per output batch index
  std::vector<int64_t> b_offset;
};

// Output shape and plan for a [.., *, *] x b [.., *, *] with numpy batch broadcasting.
inline absl::Status MakeMatMulPlan(const tensorflow::TensorShape& a, const tensorflow::TensorShape& b,
                                   bool transpose_a, bool transpose_b, tensorflow::TensorShape* out,
                                   MatMulPlan* plan) {
  
  if (a.dims() < 2 || b.dims() < 2) {
    return InvalidArgument("AMMatMul operands must have rank >= 2, got shapes ", a.DebugString(), " and ",
                           b.DebugString());
  }
  const int ra = a.dims(), rb = b.dims();
  const int64_t a_rows = a.dim_size(ra - 2), a_cols = a.dim_size(ra - 1);
  const int64_t b_rows = b.dim_size(rb - 2), b_cols = b.dim_size(rb - 1);
  const int64_t m = transpose_a ? a_cols : a_rows, k = transpose_a ? a_rows : a_cols;
  const int64_t kb = transpose_b ? b_cols : b_rows, n = transpose_b ? b_rows : b_cols;
  if (k != kb) {
    return InvalidArgument("AMMatMul: inner dimensions differ: ", a.DebugString(), " x ", b.DebugString(),
                           " (k = ", k, " vs ", kb, ", transpose_a=", BoolName(transpose_a), ", transpose_b=", BoolName(transpose_b), ")");
  }
  // Batch dimensions, right-aligned; size-1 dimensions broadcast (stride 0).
  const int rank = std::max(ra, rb) - 2;
  std::vector<int64_t> batch_dims(rank), a_stride(rank, 0), b_stride(rank, 0);
  int64_t sa = a_rows * a_cols, sb = b_rows * b_cols;
  for (int i = rank - 1; i >= 0; --i) {
    const int ia = i - (rank - (ra - 2)), ib = i - (rank - (rb - 2));
    const int64_t da = ia >= 0 ? a.dim_size(ia) : 1, db = ib >= 0 ? b.dim_size(ib) : 1;
    if (da != db && da != 1 && db != 1) {
      return InvalidArgument("AMMatMul: batch dimensions of ", a.DebugString(), " and ", b.DebugString(),
                             " do not broadcast (", da, " vs ", db, ")");
    }
    batch_dims[i] = std::max(da, db);
    if (da != 1) a_stride[i] = sa;
    if (db != 1) b_stride[i] = sb;
    sa *= da;
    sb *= db;
  }
  *out = tensorflow::TensorShape();
  for (int64_t d : batch_dims) TF_RETURN_IF_ERROR(out->AddDimWithStatus(d));
  TF_RETURN_IF_ERROR(out->AddDimWithStatus(m));
  TF_RETURN_IF_ERROR(out->AddDimWithStatus(n));

  plan->shape = amsim::GemmShape{m, n, k};
  plan->a = amsim::MatrixView{nullptr, transpose_a ? 1 : a_cols, transpose_a ? a_cols : 1};
  plan->b = amsim::MatrixView{nullptr, transpose_b ? 1 : b_cols, transpose_b ? b_cols : 1};
  plan->batch = 1;
  for (int64_t d : batch_dims) plan->batch *= d;
  plan->a_offset.assign(plan->batch, 0);
  plan->b_offset.assign(plan->batch, 0);
  for (int64_t i = 0; i < plan->batch; ++i) {
    int64_t rest = i;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t idx = rest % batch_dims[d];
      rest /= batch_dims[d];
      plan->a_offset[i] += idx * a_stride[d];
      plan->b_offset[i] += idx * b_stride[d];
    }
  }
  return absl::OkStatus();
}

template <typename Device>
struct AMMatMulFunctor {
  // c: dense [plan.batch, m, n].
  void operator()(tensorflow::OpKernelContext* ctx, const amsim::Table& table, const MatMulPlan& plan,
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
    MatMulPlan plan;
    OP_REQUIRES_OK(ctx, MakeMatMulPlan(a.shape(), b.shape(), transpose_a_, transpose_b_, &out_shape, &plan));
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
