// _core functions on the CPU.  The Python wrapper (approxtrain/core.py)
// converts and broadcasts elementwise operands; here shapes are checked (and
// matmul's batch broadcast planned) and computed.
#include <array>
#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "amsim/conv.h"
#include "amsim/cpu/conv_depthwise.h"
#include "amsim/cpu/gemm_bucket.h"
#include "amsim/cpu/separable_table.h"
#include "amsim/gemm.h"
#include "arrays.h"
#include "bindings.h"
#include "thread_pool.h"

namespace approxtrain {

namespace {

amsim::ParallelFor pool() { return default_pool().as_parallel_for(); }

FloatArray multiply(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                    const std::string& rounding) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  require_same_size(a, b, "multiply");
  FloatArray c(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
  const float* pa = a.data();
  const float* pb = b.data();
  float* pc = c.mutable_data();
  const int64_t n = a.size();
  py::gil_scoped_release nogil;
  amsim::multiply_cpu(t, pa, pb, pc, n, pool());
  return c;
}

// a: [..., m, k] (or [..., k, m] with transpose_a), b likewise; the batch
// dimensions broadcast, read in place.
FloatArray matmul(const FloatArray& a, const FloatArray& b, const TableArray& lut, int mbits,
                  const std::string& rounding, bool transpose_a, bool transpose_b) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  const amsim::BatchPlan plan = matmul_plan(a, b, transpose_a, transpose_b);
  FloatArray c = empty_float(plan.output_dims());
  const float *pa = a.data(), *pb = b.data();
  float* pc = c.mutable_data();
  py::gil_scoped_release nogil;
  amsim::batched_gemm_cpu(t, plan, pa, pb, pc, pool(), default_pool().size());
  return c;
}

FloatArray conv2d(const FloatArray& x, const FloatArray& w, const TableArray& lut, int mbits,
                  const std::string& rounding, const std::vector<int64_t>& strides,
                  const std::vector<int64_t>& dilations, const std::vector<int64_t>& paddings, int64_t groups) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  const auto s = conv_shape({x.shape(), x.shape() + x.ndim()}, {w.shape(), w.shape() + w.ndim()}, strides, dilations,
                            paddings, groups);
  FloatArray y = empty_float({s.batch, s.out_h, s.out_w, s.out_c});
  const float *px = x.data(), *pw = w.data();
  float* py_ = y.mutable_data();
  py::gil_scoped_release nogil;
  amsim::conv2d_forward_cpu(t, s, px, pw, py_, pool());
  return y;
}

FloatArray conv2d_input_grad(const std::vector<int64_t>& input_shape, const FloatArray& w, const FloatArray& dy,
                             const TableArray& lut, int mbits, const std::string& rounding,
                             const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                             const std::vector<int64_t>& paddings, int64_t groups) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  const auto s = conv_shape(input_shape, {w.shape(), w.shape() + w.ndim()}, strides, dilations, paddings, groups);
  require_conv_output_shape(dy, s, "conv2d_input_grad");
  FloatArray dx = empty_float(input_shape);
  const float *pdy = dy.data(), *pw = w.data();
  float* pdx = dx.mutable_data();
  py::gil_scoped_release nogil;
  amsim::conv2d_input_grad_cpu(t, s, pdy, pw, pdx, pool());
  return dx;
}

FloatArray conv2d_filter_grad(const FloatArray& x, const std::vector<int64_t>& filter_shape, const FloatArray& dy,
                              const TableArray& lut, int mbits, const std::string& rounding,
                              const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                              const std::vector<int64_t>& paddings, int64_t groups) {
  const amsim::Table t = table_view(lut, mbits, rounding);
  const auto s = conv_shape({x.shape(), x.shape() + x.ndim()}, filter_shape, strides, dilations, paddings, groups);
  require_conv_output_shape(dy, s, "conv2d_filter_grad");
  FloatArray dw = empty_float(filter_shape);
  const float *px = x.data(), *pdy = dy.data();
  float* pdw = dw.mutable_data();
  py::gil_scoped_release nogil;
  amsim::conv2d_filter_grad_cpu(t, s, px, pdy, pdw, pool());
  return dw;
}

}  // namespace

void bind_cpu(py::module_& m) {
  using namespace pybind11::literals;
  // noconvert: a float64 array is an error here, never a silent copy; the
  // Python wrapper decides what to convert.
  m.def("multiply", &multiply, "a"_a.noconvert(), "b"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a,
        "rounding"_a, "Elementwise AMSim product of equal-size float32 arrays.");
  m.def("matmul", &matmul, "a"_a.noconvert(), "b"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a,
        "transpose_a"_a = false, "transpose_b"_a = false,
        "Batched AM GEMM on float32 arrays of rank >= 2 (batch dimensions broadcast as in numpy).");
  m.def("conv2d", &conv2d, "x"_a.noconvert(), "w"_a.noconvert(), "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a,
        "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1,
        "AM conv2d, NHWC x HWIO, explicit paddings (top, bottom, left, right).");
  m.def("conv2d_input_grad", &conv2d_input_grad, "input_shape"_a, "w"_a.noconvert(), "dy"_a.noconvert(),
        "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a, "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1,
        "Gradient of conv2d with respect to its input (left operand dy).");
  m.def("conv2d_filter_grad", &conv2d_filter_grad, "x"_a.noconvert(), "filter_shape"_a, "dy"_a.noconvert(),
        "lut"_a.noconvert(), "mantissa_bits"_a, "rounding"_a, "strides"_a, "dilations"_a, "paddings"_a, "groups"_a = 1,
        "Gradient of conv2d with respect to its filter (left operand x).");
  m.def(
      "gemm_cpu_path",
      [](int mbits, const std::optional<TableArray>& lut, const std::optional<std::array<int64_t, 3>>& shape) {
        const amsim::Table table =
            lut ? table_view(*lut, mbits, "truncate") : amsim::Table{nullptr, mbits, amsim::Rounding::kTruncate};
        if (!shape) return std::string(amsim::gemm_cpu_path(table));
        const auto [m, n, k] = *shape;
        if (m < 0 || n < 0 || k < 0)
          throw py::value_error("gemm_cpu_path: shape (m, n, k) must be >= 0, got (" + std::to_string(m) + ", " +
                                std::to_string(n) + ", " + std::to_string(k) + ")");
        return std::string(amsim::gemm_cpu_path(table, amsim::GemmShape{m, n, k}));
      },
      "mantissa_bits"_a, "lut"_a.noconvert() = py::none(), "shape"_a = py::none(),
      "Which CPU GEMM path runs for M mantissa bits (for this table, when given) and GEMM shape (m, n, k), "
      "by default 1024^3.");
  m.def(
      "table_is_separable",
      [](const TableArray& lut, int mbits) {
        return amsim::cpu::separable_factors(table_view(lut, mbits, "truncate")) != nullptr;
      },
      "lut"_a.noconvert(), "mantissa_bits"_a,
      "Whether every entry is the exact product of two per-operand factors in [1, 2) (bf16, drum*): such a "
      "table's GEMMs run as float GEMMs of the transformed operands (the float-* paths).");
  m.def(
      "table_selecting_bits",
      [](const TableArray& lut, int mbits, const std::string& operand) {
        if (operand != "a" && operand != "b")
          throw py::value_error("operand must be 'a' or 'b', got '" + operand + "'");
        return amsim::cpu::bucket_selecting_bits(table_view(lut, mbits, "truncate"), operand == "b");
      },
      "lut"_a.noconvert(), "mantissa_bits"_a, "operand"_a,
      "How many fraction bits of operand 'a' or 'b' the table reads: M less the low bits no entry depends on "
      "(MBM forces the lowest kept bit to 1, so mbm7 reads 6). The bucket GEMM expands T rows only for those.");
  m.def(
      "depthwise_cpu_path",
      [](const std::optional<TableArray>& lut, int mbits) {
        if (!lut) return std::string(amsim::cpu::depthwise_cpu_path());
        return std::string(amsim::cpu::depthwise_cpu_path(table_view(*lut, mbits, "truncate")));
      },
      "lut"_a.noconvert() = py::none(), "mantissa_bits"_a = 7,
      "Which elementwise product kernel the CPU depthwise convs use: avx512, avx2 or scalar; given a table "
      "(and its M), the float path (float-avx2, ...) where the table is separable and that path runs.");
  m.def(
      "num_threads", [] { return default_pool().size(); }, "Threads _core's CPU kernels use.");
  m.def("set_num_threads", &set_default_pool_threads, "threads"_a, "Resize _core's CPU thread pool.");
}

}  // namespace approxtrain
