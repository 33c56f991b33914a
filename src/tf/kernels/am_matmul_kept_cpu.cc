// AMMatMulKept, AMMatMulKeptGradA, AMMatMulKeptGradB on the CPU (ops/am_matmul_kept_op.cc).
//
// Each gathers the kept block b[rows][:, cols] into a scratch matrix and runs the very
// batched_gemm_cpu call AMMatMul makes for the gathered operands, so every output has the
// bits of the TensorFlow-op path (gather, AMMatMul, its registered gradients, scatter back).
// One op replaces the gathers, their gradients and the NaN check of the row-dropped step,
// whose dispatch cost more than the small copies it does here.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "amsim/gemm.h"
#include "kernels/am_matmul_op.h"
#include "kernels/cpu_parallel.h"
#include "kernels/table_input.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace approxtrain {
namespace tf {
namespace {

using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// The attribute and the index checks the three kernels share.
class KeptKernel : public tensorflow::OpKernel {
 public:
  explicit KeptKernel(tensorflow::OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string rounding;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("operand_rounding", &rounding));
    OP_REQUIRES_OK(ctx, ParseRounding(rounding, &rounding_));
  }

 protected:
  absl::Status ReadTable(OpKernelContext* ctx, int input, amsim::Table* table) const {
    return TableFromTensor(ctx->input(input), rounding_, table);
  }

  // A 1-D int32 input whose every value indexes [0, size).
  absl::Status Indices(const Tensor& t, const char* what, int64_t size) const {
    if (!tensorflow::TensorShapeUtils::IsVector(t.shape())) {
      return InvalidArgument(type_string(), ": ", what, " must be a 1-D int32 tensor, got shape ",
                             t.shape().DebugString());
    }
    const auto v = t.flat<int32_t>();
    for (int64_t i = 0; i < v.size(); ++i) {
      if (v(i) < 0 || v(i) >= size) {
        return InvalidArgument(type_string(), ": ", what, "[", i, "] = ", v(i), " is out of range [0, ", size, ")");
      }
    }
    return absl::OkStatus();
  }

  absl::Status Matrix(const Tensor& t, const char* what) const {
    if (!tensorflow::TensorShapeUtils::IsMatrix(t.shape())) {
      return InvalidArgument(type_string(), ": ", what, " must be a matrix, got shape ", t.shape().DebugString());
    }
    return absl::OkStatus();
  }

  // rows, cols (inputs first, first + 1) index b [K, N]; b the matrix at b_input.
  absl::Status KeptIndices(OpKernelContext* ctx, int b_input, int first) const {
    const Tensor& b = ctx->input(b_input);
    TF_RETURN_IF_ERROR(Matrix(b, "b"));
    TF_RETURN_IF_ERROR(Indices(ctx->input(first), "rows", b.dim_size(0)));
    return Indices(ctx->input(first + 1), "cols", b.dim_size(1));
  }

 private:
  amsim::Rounding rounding_ = amsim::Rounding::kTruncate;
};

// block [rows, cols] = b[rows][:, cols] (b row-major [K, N]), rows of the block in parallel.
void GatherBlock(OpKernelContext* ctx, const Tensor& b, const Tensor& rows, const Tensor& cols, float* block) {
  const float* src = b.flat<float>().data();
  const int64_t n_b = b.dim_size(1);
  const int32_t* r = rows.flat<int32_t>().data();
  const int32_t* c = cols.flat<int32_t>().data();
  const int64_t n = cols.NumElements();
  IntraOpParallelFor(ctx)(rows.NumElements(), 2 * n, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* row = src + r[t] * n_b;
      float* out = block + t * n;
      for (int64_t j = 0; j < n; ++j) out[j] = row[c[j]];
    }
  });
}

// out [K, N] = +0 everywhere, plus block [rows, cols] added at (rows[t], cols[j]): as TensorFlow's
// gather gradient sums its slices onto +0, so a repeated index sums. Distinct rows (every caller's
// case): one parallel pass over the rows of out; otherwise zeroes, then adds in order.
void ScatterBlock(OpKernelContext* ctx, const Tensor& rows, const Tensor& cols, const float* block, Tensor* grad) {
  float* out = grad->flat<float>().data();
  const int64_t n_rows = grad->dim_size(0), n_b = grad->dim_size(1);
  const int32_t* r = rows.flat<int32_t>().data();
  const int32_t* c = cols.flat<int32_t>().data();
  const int64_t k = rows.NumElements(), n = cols.NumElements();
  std::vector<int64_t> source(n_rows, -1);  // the block row that lands in each row of out
  bool distinct = true;
  for (int64_t t = 0; t < k && distinct; ++t) {
    distinct = source[r[t]] < 0;
    source[r[t]] = t;
  }
  if (!distinct) {
    std::fill(out, out + n_rows * n_b, 0.0f);
    for (int64_t t = 0; t < k; ++t) {
      for (int64_t j = 0; j < n; ++j) out[r[t] * n_b + c[j]] += block[t * n + j];
    }
    return;
  }
  IntraOpParallelFor(ctx)(n_rows, 2 * n_b, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = out + i * n_b;
      std::fill(row, row + n_b, 0.0f);
      if (source[i] < 0) continue;
      const float* values = block + source[i] * n;
      for (int64_t j = 0; j < n; ++j) row[c[j]] += values[j];
    }
  });
}

// c = op(a) . op(b) exactly as AMMatMul computes it (a, b dense row-major of the given dims);
// an empty sum (k = 0) is +0, as the core GEMM writes it.
absl::Status AMGemm(OpKernelContext* ctx, const amsim::Table& table, const TensorShape& a_shape,
                    const TensorShape& b_shape, bool transpose_a, bool transpose_b, const float* a, const float* b,
                    float* c) {
  TensorShape out;
  amsim::BatchPlan plan;
  TF_RETURN_IF_ERROR(PlanMatMul(a_shape, b_shape, transpose_a, transpose_b, &out, &plan));
  if (out.num_elements() == 0) return absl::OkStatus();
  amsim::batched_gemm_cpu(table, plan, a, b, c, IntraOpParallelFor(ctx), IntraOpThreads(ctx));
  return absl::OkStatus();
}

// dy with +0 in the poisoned columns (a copy in `scratch`), or dy itself when none is.
const float* UnpoisonedGradient(OpKernelContext* ctx, const Tensor& dy, const Tensor& poisoned, Tensor* scratch,
                                absl::Status* status) {
  const auto p = poisoned.flat<bool>();
  bool any = false;
  for (int64_t j = 0; j < p.size(); ++j) any = any || p(j);
  if (!any) return dy.flat<float>().data();
  *status = ctx->allocate_temp(tensorflow::DT_FLOAT, dy.shape(), scratch);
  if (!status->ok()) return nullptr;
  const float* src = dy.flat<float>().data();
  float* dst = scratch->flat<float>().data();
  const int64_t m = dy.dim_size(0), n = dy.dim_size(1);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) dst[i * n + j] = p(j) ? 0.0f : src[i * n + j];
  }
  return dst;
}

absl::Status CheckPoisoned(const Tensor& poisoned, int64_t cols, const std::string& op) {
  if (!tensorflow::TensorShapeUtils::IsVector(poisoned.shape()) || poisoned.dim_size(0) != cols) {
    return InvalidArgument(op, ": poisoned must be a vector of ", cols, " bools, got shape ",
                           poisoned.shape().DebugString());
  }
  return absl::OkStatus();
}

class AMMatMulKeptOp : public KeptKernel {
 public:
  using KeptKernel::KeptKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& a = ctx->input(0);
    const Tensor& b = ctx->input(1);
    const Tensor& rows = ctx->input(3);
    const Tensor& cols = ctx->input(4);
    const Tensor& dropped = ctx->input(5);
    amsim::Table table;
    OP_REQUIRES_OK(ctx, ReadTable(ctx, 2, &table));
    OP_REQUIRES_OK(ctx, Matrix(a, "a"));
    OP_REQUIRES_OK(ctx, KeptIndices(ctx, 1, 3));
    OP_REQUIRES_OK(ctx, Indices(dropped, "dropped", b.dim_size(0)));
    const int64_t m = a.dim_size(0), k = rows.NumElements(), n = cols.NumElements();
    OP_REQUIRES(ctx, a.dim_size(1) == k,
                InvalidArgument("AMMatMulKept: a ", a.shape().DebugString(), " has ", a.dim_size(1),
                                " columns but ", k, " rows of b are kept"));
    Tensor* product = nullptr;
    Tensor* poisoned = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m, n}), &product));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n}), &poisoned));
    Tensor block;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({k, n}), &block));
    GatherBlock(ctx, b, rows, cols, block.flat<float>().data());
    float* c = product->flat<float>().data();
    OP_REQUIRES_OK(ctx, AMGemm(ctx, table, a.shape(), block.shape(), false, false, a.flat<float>().data(),
                               block.flat<float>().data(), c));
    // A dropped row's weights times +0 are +-0, or NaN where a weight is not finite: their sum
    // per column is NaN exactly where the full product's column is.
    const float* w = b.flat<float>().data();
    const int64_t n_b = b.dim_size(1);
    const auto d = dropped.flat<int32_t>();
    const auto kept_cols = cols.flat<int32_t>();
    auto p = poisoned->flat<bool>();
    for (int64_t j = 0; j < n; ++j) {
      float zero_or_nan = 0.0f;
      for (int64_t t = 0; t < d.size(); ++t) zero_or_nan += w[d(t) * n_b + kept_cols(j)] * 0.0f;
      p(j) = std::isnan(zero_or_nan);
      if (p(j)) {
        for (int64_t i = 0; i < m; ++i) c[i * n + j] = zero_or_nan;
      }
    }
  }
};

class AMMatMulKeptGradAOp : public KeptKernel {
 public:
  using KeptKernel::KeptKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& b = ctx->input(1);
    const Tensor& rows = ctx->input(3);
    const Tensor& cols = ctx->input(4);
    amsim::Table table;
    OP_REQUIRES_OK(ctx, ReadTable(ctx, 2, &table));
    OP_REQUIRES_OK(ctx, Matrix(dy, "dy"));
    OP_REQUIRES_OK(ctx, KeptIndices(ctx, 1, 3));
    const int64_t m = dy.dim_size(0), k = rows.NumElements(), n = cols.NumElements();
    OP_REQUIRES(ctx, dy.dim_size(1) == n,
                InvalidArgument("AMMatMulKeptGradA: dy ", dy.shape().DebugString(), " has ", dy.dim_size(1),
                                " columns but ", n, " columns of b are kept"));
    OP_REQUIRES_OK(ctx, CheckPoisoned(ctx->input(5), n, type_string()));
    Tensor* grad = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({m, k}), &grad));
    Tensor block, dy_scratch;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({k, n}), &block));
    GatherBlock(ctx, b, rows, cols, block.flat<float>().data());
    absl::Status status;
    const float* dy_data = UnpoisonedGradient(ctx, dy, ctx->input(5), &dy_scratch, &status);
    OP_REQUIRES_OK(ctx, status);
    OP_REQUIRES_OK(ctx, AMGemm(ctx, table, dy.shape(), block.shape(), false, true, dy_data,
                               block.flat<float>().data(), grad->flat<float>().data()));
  }
};

class AMMatMulKeptGradBOp : public KeptKernel {
 public:
  using KeptKernel::KeptKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& a = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    const Tensor& b = ctx->input(2);
    const Tensor& rows = ctx->input(4);
    const Tensor& cols = ctx->input(5);
    amsim::Table table;
    OP_REQUIRES_OK(ctx, ReadTable(ctx, 3, &table));
    OP_REQUIRES_OK(ctx, Matrix(a, "a"));
    OP_REQUIRES_OK(ctx, Matrix(dy, "dy"));
    OP_REQUIRES_OK(ctx, KeptIndices(ctx, 2, 4));
    const int64_t m = a.dim_size(0), k = rows.NumElements(), n = cols.NumElements();
    OP_REQUIRES(ctx, a.dim_size(1) == k && dy.dim_size(1) == n && dy.dim_size(0) == m,
                InvalidArgument("AMMatMulKeptGradB: a ", a.shape().DebugString(), " and dy ",
                                dy.shape().DebugString(), " do not match ", k, " kept rows and ", n,
                                " kept columns"));
    OP_REQUIRES_OK(ctx, CheckPoisoned(ctx->input(6), n, type_string()));
    Tensor* grad = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, b.shape(), &grad));
    Tensor block, dy_scratch;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({k, n}), &block));
    float* kept = block.flat<float>().data();
    absl::Status status;
    const float* dy_data = UnpoisonedGradient(ctx, dy, ctx->input(6), &dy_scratch, &status);
    OP_REQUIRES_OK(ctx, status);
    OP_REQUIRES_OK(ctx, AMGemm(ctx, table, a.shape(), dy.shape(), true, false, a.flat<float>().data(), dy_data, kept));
    ScatterBlock(ctx, rows, cols, kept, grad);
  }
};

REGISTER_KERNEL_BUILDER(Name("AMMatMulKept").Device(tensorflow::DEVICE_CPU), AMMatMulKeptOp);
REGISTER_KERNEL_BUILDER(Name("AMMatMulKeptGradA").Device(tensorflow::DEVICE_CPU), AMMatMulKeptGradAOp);
REGISTER_KERNEL_BUILDER(Name("AMMatMulKeptGradB").Device(tensorflow::DEVICE_CPU), AMMatMulKeptGradBOp);

}  // namespace
}  // namespace tf
}  // namespace approxtrain
