// numpy <-> core glue shared by the CPU and CUDA bindings: argument checks
// with clear Python errors, and the table view.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "amsim/amsim.h"
#include "amsim/batch_plan.h"
#include "amsim/conv.h"

namespace approxtrain {

namespace py = pybind11;

// float32, C-contiguous; anything else is rejected (the Python wrapper
// converts what it may convert before it gets here).
using FloatArray = py::array_t<float, py::array::c_style>;
using TableArray = py::array_t<uint16_t, py::array::c_style>;

// Checks M, rounding and the table's length; the view borrows the array.
amsim::Table table_view(const TableArray& entries, int mantissa_bits, const std::string& rounding);

// Raises ValueError naming `what` unless a.ndim() == ndim.
void require_ndim(const py::array& a, int ndim, const char* what);

// Builds and checks the conv shape from NHWC input dims and HWIO filter dims.
amsim::Conv2DShape conv_shape(const std::vector<int64_t>& input_shape, const std::vector<int64_t>& filter_shape,
                              const std::vector<int64_t>& strides, const std::vector<int64_t>& dilations,
                              const std::vector<int64_t>& paddings, int64_t groups);

FloatArray empty_float(const std::vector<int64_t>& shape);

// The core's plan (amsim/batch_plan.h) of op(a) . op(b) for arrays of rank
// >= 2 whose batch dimensions broadcast as in numpy; ValueError otherwise.
amsim::BatchPlan matmul_plan(const FloatArray& a, const FloatArray& b, bool transpose_a, bool transpose_b);

// Raises ValueError unless a and b have the same number of elements.
void require_same_size(const FloatArray& a, const FloatArray& b, const char* op);

// Raises ValueError unless dy is [N, OH, OW, O] of conv shape s.
void require_conv_output_shape(const FloatArray& dy, const amsim::Conv2DShape& s, const char* op);

}  // namespace approxtrain
