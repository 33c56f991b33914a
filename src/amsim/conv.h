// AM 2-D convolution (NHWC activations, HWIO filters, groups) -- the CPU entry
// points, and the canonical summation orders that the CPU and CUDA kernels
// share (the shape itself, Conv2DShape, is in shapes.h).
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
#include "amsim/shapes.h"

namespace amsim {

// Depthwise: one input channel per group (groups == C) and more than one
// group.  Both backends route these shapes to their dedicated depthwise
// kernels and the others to an im2col / implicit GEMM; the two compute the
// same canonical orders above, so the routing never changes a bit.  (An
// ungrouped 1-channel conv, such as LeNet-5's first layer, has Cg == 1 too,
// but it is an ordinary GEMM of KH*KW taps.)
inline bool is_depthwise(const Conv2DShape& s) { return s.groups > 1 && s.groups == s.in_c; }

// x: [N, H, W, C], w: [KH, KW, C/G, O], y: [N, OH, OW, O] (all dense, float32).
void conv2d_forward_cpu(const Table& table, const Conv2DShape& s, const float* x, const float* w, float* y,
                        const ParallelFor& parallel = serial_for);
// dy: [N, OH, OW, O], w as above, dx: [N, H, W, C].
void conv2d_input_grad_cpu(const Table& table, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                           const ParallelFor& parallel = serial_for);
// x, dy as above, dw: [KH, KW, C/G, O].
void conv2d_filter_grad_cpu(const Table& table, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                            const ParallelFor& parallel = serial_for);

}  // namespace amsim
