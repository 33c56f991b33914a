#include "arrays.h"

#include <algorithm>

namespace approxtrain {

amsim::Table table_view(const TableArray& entries, int mantissa_bits, const std::string& rounding) {
  if (mantissa_bits < amsim::kMinMantissaBits || mantissa_bits > amsim::kMaxMantissaBits)
    throw py::value_error("mantissa_bits must be in [1, 11], got " + std::to_string(mantissa_bits));
  amsim::Rounding mode;
  if (rounding == "truncate") mode = amsim::Rounding::kTruncate;
  else if (rounding == "nearest") mode = amsim::Rounding::kNearestEven;
  else throw py::value_error("operand_rounding must be 'truncate' or 'nearest', got '" + rounding + "'");
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
  s.batch = in[0]; s.in_h = in[1]; s.in_w = in[2]; s.in_c = in[3];
  s.filter_h = f[0]; s.filter_w = f[1]; s.out_c = f[3];
  s.groups = groups;
  s.stride_h = strides[0]; s.stride_w = strides[1];
  s.dilation_h = dilations[0]; s.dilation_w = dilations[1];
  s.pad_top = pads[0]; s.pad_bottom = pads[1]; s.pad_left = pads[2]; s.pad_right = pads[3];
  if (groups >= 1 && s.in_c % groups == 0 && f[2] != s.in_c / groups)
    throw py::value_error("filter input-channel dimension " + std::to_string(f[2]) + " must equal C/groups = " +
                          std::to_string(s.in_c / groups));
  if (const char* err = amsim::conv2d_finalize(s)) throw py::value_error(std::string("conv2d: ") + err);
  return s;
}

FloatArray empty_float(const std::vector<int64_t>& shape) {
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  return FloatArray(dims);
}

MatmulArgs matmul_args(const FloatArray& a, const FloatArray& b, bool transpose_a, bool transpose_b) {
  require_ndim(a, 3, "matmul operand a (batched by the wrapper)");
  require_ndim(b, 3, "matmul operand b (batched by the wrapper)");
  const int64_t ba = a.shape(0), bb = b.shape(0);
  const int64_t m = transpose_a ? a.shape(2) : a.shape(1), ka = transpose_a ? a.shape(1) : a.shape(2);
  const int64_t kb = transpose_b ? b.shape(2) : b.shape(1), n = transpose_b ? b.shape(1) : b.shape(2);
  if (ka != kb)
    throw py::value_error("matmul: inner dimensions differ: " + std::to_string(ka) + " vs " + std::to_string(kb));
  if (ba != bb && ba != 1 && bb != 1)
    throw py::value_error("matmul: batch sizes " + std::to_string(ba) + " and " + std::to_string(bb) + " do not broadcast");
  MatmulArgs r;
  r.shape = amsim::GemmShape{m, n, ka};
  r.batch = std::max(ba, bb);
  r.a = amsim::MatrixView{a.data(), transpose_a ? 1 : ka, transpose_a ? m : 1};
  r.b = amsim::MatrixView{b.data(), transpose_b ? 1 : n, transpose_b ? kb : 1};
  r.batch_stride_a = ba == 1 ? 0 : m * ka;
  r.batch_stride_b = bb == 1 ? 0 : ka * n;
  return r;
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
