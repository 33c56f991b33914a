#include "arrays.h"

#include <algorithm>

namespace approxtrain {

amsim::Table table_view(const TableArray& entries, int mantissa_bits, const std::string& rounding) {
  if (mantissa_bits < amsim::kMinMantissaBits || mantissa_bits > amsim::kMaxMantissaBits)
    throw py::value_error("mantissa_bits must be in [1, 11], got " + std::to_string(mantissa_bits));
  amsim::Rounding mode;
  if (rounding == "truncate")
    mode = amsim::Rounding::kTruncate;
  else if (rounding == "nearest")
    mode = amsim::Rounding::kNearestEven;
  else
    throw py::value_error("operand_rounding must be 'truncate' or 'nearest', got '" + rounding + "'");
  const int64_t expected = amsim::table_size(mantissa_bits);
  if (entries.ndim() != 1 || entries.size() != expected)
    throw py::value_error("table for mantissa_bits=" + std::to_string(mantissa_bits) + " must have " +
                          std::to_string(expected) + " uint16 entries, got " + std::to_string(entries.size()));
  return amsim::Table{entries.data(), mantissa_bits, mode};
}

void require_ndim(const py::array& a, int ndim, const char* what) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(what) + " must be " + std::to_string(ndim) + "-D, got " +
                          std::to_string(a.ndim()) + "-D");
}

amsim::Conv2DShape conv_shape(const std::vector<int64_t>& in, const std::vector<int64_t>& f,
                              const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                              const std::vector<int64_t>& pads, int64_t groups) {
  if (in.size() != 4) throw py::value_error("conv2d input must be 4-D NHWC");
  if (f.size() != 4) throw py::value_error("conv2d filter must be 4-D [KH, KW, C/groups, O]");
  if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4)
    throw py::value_error("strides and dilations take 2 values, paddings 4 (top, bottom, left, right)");
  amsim::Conv2DShape s;
  s.batch = in[0];
  s.in_h = in[1];
  s.in_w = in[2];
  s.in_c = in[3];
  s.filter_h = f[0];
  s.filter_w = f[1];
  s.out_c = f[3];
  s.groups = groups;
  s.stride_h = strides[0];
  s.stride_w = strides[1];
  s.dilation_h = dilations[0];
  s.dilation_w = dilations[1];
  s.pad_top = pads[0];
  s.pad_bottom = pads[1];
  s.pad_left = pads[2];
  s.pad_right = pads[3];
  if (groups >= 1 && s.in_c % groups == 0 && f[2] != s.in_c / groups)
    throw py::value_error("filter input-channel dimension " + std::to_string(f[2]) +
                          " must equal C/groups = " + std::to_string(s.in_c / groups));
  if (const char* err = amsim::conv2d_finalize(s)) throw py::value_error(std::string("conv2d: ") + err);
  return s;
}

FloatArray empty_float(const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  return FloatArray(dims);
}

namespace {

std::vector<int64_t> dims_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string text = "(";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + (dims.size() == 1 ? ",)" : ")");
}

}  // namespace

amsim::BatchPlan matmul_plan(const FloatArray& a, const FloatArray& b, bool transpose_a, bool transpose_b) {
  const std::vector<int64_t> a_dims = dims_of(a), b_dims = dims_of(b);
  amsim::BatchPlan plan;
  const amsim::BatchPlanError error = amsim::plan_batched_gemm(a_dims, b_dims, transpose_a, transpose_b, &plan);
  switch (error.kind) {
    case amsim::BatchPlanError::kNone:
      break;
    case amsim::BatchPlanError::kRank:
      throw py::value_error("matmul operands must have rank >= 2, got shapes " + dims_text(a_dims) + " and " +
                            dims_text(b_dims));
    case amsim::BatchPlanError::kInnerDims:
      throw py::value_error("matmul: inner dimensions differ: " + std::to_string(error.left) + " vs " +
                            std::to_string(error.right));
    case amsim::BatchPlanError::kBatchDims:
      throw py::value_error("matmul: batch dimensions of " + dims_text(a_dims) + " and " + dims_text(b_dims) +
                            " do not broadcast (" + std::to_string(error.left) + " vs " + std::to_string(error.right) +
                            ")");
  }
  return plan;
}

void require_same_size(const FloatArray& a, const FloatArray& b, const char* op) {
  if (a.size() != b.size())
    throw py::value_error(std::string(op) + ": operands must have the same size, got " + std::to_string(a.size()) +
                          " and " + std::to_string(b.size()));
}

void require_conv_output_shape(const FloatArray& dy, const amsim::Conv2DShape& s, const char* op) {
  require_ndim(dy, 4, (std::string(op) + " dy").c_str());
  if (dy.shape(0) != s.batch || dy.shape(1) != s.out_h || dy.shape(2) != s.out_w || dy.shape(3) != s.out_c)
    throw py::value_error(std::string(op) + ": dy shape does not match the convolution's output shape [" +
                          std::to_string(s.batch) + ", " + std::to_string(s.out_h) + ", " + std::to_string(s.out_w) +
                          ", " + std::to_string(s.out_c) + "]");
}

}  // namespace approxtrain
