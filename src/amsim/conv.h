// AM 2-D convolution (NHWC activations, HWIO filters, groups) -- the shapes
// and the canonical summation orders shared by the CPU and CUDA kernels.
//
// Let G = groups, Cg = C / G input channels and Og = O / G output channels
// per group; output channel o belongs to group o / Og.  Depthwise convolution
// with channel multiplier m is G = C, O = C * m, filter [KH, KW, 1, C * m].
//
// Padded positions are zeros that are multiplied like any other value (as in
// im2col), so a padded 0 against an infinite weight gives NaN, as TF does.
//
// Canonical orders -- every sum starts at +0, one float32 add per product,
// flush-to-zero -- and left operands (table row):
//   forward      y[n, oh, ow, o]   = sum over (kh, kw, c) ascending, c in the group,
//                                    of x[n, ih, iw, c] (x) w[kh, kw, c, o]        (left: x)
//                with ih = oh*sh - pad_top + kh*dh, iw = ow*sw - pad_left + kw*dw.
//   input grad   dx[n, ih, iw, c]  = sum over (kh, kw, o) ascending, o in c's group,
//                                    of dy[n, oh, ow, o] (x) w[kh, kw, c, o]       (left: dy)
//                with oh = (ih + pad_top - kh*dh) / sh when that divides exactly and
//                0 <= oh < OH (likewise ow); otherwise dy counts as a 0 operand.
//   filter grad  dw[kh, kw, c, o]  = sum over (n, oh, ow) ascending
//                                    of x[n, ih, iw, g*Cg + c] (x) dy[n, oh, ow, o] (left: x)
// These are GEMMs over im2col-style patch matrices: K index (kh, kw, c) for the
// forward pass, (kh, kw, o) for the input gradient, (n, oh, ow) for the filter
// gradient.
#pragma once

#include <cstdint>

#include "amsim/amsim.h"
#include "amsim/parallel.h"

namespace amsim {

struct Conv2DShape {
  int64_t batch = 0;                       // N
  int64_t in_h = 0, in_w = 0, in_c = 0;    // H, W, C
  int64_t filter_h = 0, filter_w = 0;      // KH, KW
  int64_t out_c = 0;                       // O
  int64_t groups = 1;                      // G: C % G == 0, O % G == 0
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t out_h = 0, out_w = 0;            // filled by finalize()

  AMSIM_HD int64_t in_c_per_group() const { return in_c / groups; }
  AMSIM_HD int64_t out_c_per_group() const { return out_c / groups; }
  AMSIM_HD int64_t effective_filter_h() const { return (filter_h - 1) * dilation_h + 1; }
  AMSIM_HD int64_t effective_filter_w() const { return (filter_w - 1) * dilation_w + 1; }
};

// Computes out_h/out_w from the explicit paddings; returns nullptr when the
// shape is valid, else a message naming what is wrong.
const char* conv2d_finalize(Conv2DShape& s);

// x: [N, H, W, C], w: [KH, KW, C/G, O], y: [N, OH, OW, O] (all dense, float32).
void conv2d_forward_cpu(const Table& table, const Conv2DShape& s, const float* x,
                        const float* w, float* y, const ParallelFor& parallel = serial_for);
// dy: [N, OH, OW, O], w as above, dx: [N, H, W, C].
void conv2d_input_grad_cpu(const Table& table, const Conv2DShape& s, const float* dy,
                           const float* w, float* dx, const ParallelFor& parallel = serial_for);
// x, dy as above, dw: [KH, KW, C/G, O].
void conv2d_filter_grad_cpu(const Table& table, const Conv2DShape& s, const float* x,
                            const float* dy, float* dw, const ParallelFor& parallel = serial_for);

}  // namespace amsim
