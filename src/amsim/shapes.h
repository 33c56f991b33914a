// The shapes the kernels of both backends take: GEMM operands and sizes, and
// the 2-D convolution.  No threads, no std::function: device code includes
// this header, never gemm.h or conv.h (whose CPU entry points take a
// ParallelFor).
#pragma once

#include <cstdint>

#include "amsim/host_device.h"

namespace amsim {

// One matrix operand: element (r, c) of op(X) lives at
// data[r * row_stride + c * col_stride].  A transpose is just swapped strides.
struct MatrixView {
  const float* data = nullptr;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
  AMSIM_HD float at(int64_t r, int64_t c) const { return data[r * row_stride + c * col_stride]; }
};

struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
};

// A 2-D convolution; conv.h documents its layouts and canonical orders.
struct Conv2DShape {
  int64_t batch = 0;  // N
  int64_t in_h = 0, in_w = 0, in_c = 0;  // H, W, C
  int64_t filter_h = 0, filter_w = 0;  // KH, KW
  int64_t out_c = 0;  // O
  int64_t groups = 1;  // G: C % G == 0, O % G == 0
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t out_h = 0, out_w = 0;  // filled by finalize()

  AMSIM_HD int64_t in_c_per_group() const { return in_c / groups; }
  AMSIM_HD int64_t out_c_per_group() const { return out_c / groups; }
  AMSIM_HD int64_t effective_filter_h() const { return (filter_h - 1) * dilation_h + 1; }
  AMSIM_HD int64_t effective_filter_w() const { return (filter_w - 1) * dilation_w + 1; }
};

// Computes out_h/out_w from the explicit paddings; returns nullptr when the
// shape is valid, else a message naming what is wrong.
const char* conv2d_finalize(Conv2DShape& s);

}  // namespace amsim
