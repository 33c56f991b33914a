// The conv shape as the CUDA kernels index it: 32-bit sizes (each checked to
// fit, with every element offset still computed in 64 bits).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "amsim/shapes.h"

namespace amsim {
namespace cuda {

struct ConvDims {
  int n, h, w, c;  // input N, H, W, C
  int oh, ow, o;  // output OH, OW, O
  int kh, kw;  // filter KH, KW
  int groups, cg, og;  // G, C / G, O / G
  int sh, sw, dh, dw;  // strides, dilations
  int pad_top, pad_left;

  // Rows of the patch matrices and output positions, as 64-bit counts.
  AMSIM_HD int64_t out_positions() const { return int64_t{n} * oh * ow; }
  AMSIM_HD int64_t in_positions() const { return int64_t{n} * h * w; }
};

// Fills *d from a finalised shape; false when a size or a patch-matrix
// dimension does not fit the 32-bit indexing of the kernels.
inline bool conv_dims(const Conv2DShape& s, ConvDims* d) {
  const int64_t limit = (int64_t{1} << 31) - 1;
  const int64_t sizes[] = {
      s.batch, s.in_h, s.in_w, s.in_c, s.out_h, s.out_w, s.out_c, s.filter_h, s.filter_w, s.groups, s.stride_h,
      s.stride_w, s.dilation_h, s.dilation_w, s.pad_top, s.pad_left, s.pad_bottom, s.pad_right,
      // patch-matrix rows and K extents, which the kernels decode in 32 bits
      s.batch * s.out_h * s.out_w, s.batch * s.in_h * s.in_w, s.filter_h * s.filter_w * s.in_c,
      s.filter_h * s.filter_w * s.out_c,
      // offsets the kernels form in 32 bits before widening
      (s.in_h + s.pad_top + s.pad_bottom) * s.stride_h, (s.in_w + s.pad_left + s.pad_right) * s.stride_w,
      s.filter_h * s.dilation_h + s.pad_top + s.in_h, s.filter_w * s.dilation_w + s.pad_left + s.in_w};
  for (int64_t v : sizes)
    if (v < 0 || v > limit) return false;
  if (s.groups < 1 || s.in_c % s.groups != 0 || s.out_c % s.groups != 0) return false;
  *d = ConvDims{static_cast<int>(s.batch),
                static_cast<int>(s.in_h),
                static_cast<int>(s.in_w),
                static_cast<int>(s.in_c),
                static_cast<int>(s.out_h),
                static_cast<int>(s.out_w),
                static_cast<int>(s.out_c),
                static_cast<int>(s.filter_h),
                static_cast<int>(s.filter_w),
                static_cast<int>(s.groups),
                static_cast<int>(s.in_c / s.groups),
                static_cast<int>(s.out_c / s.groups),
                static_cast<int>(s.stride_h),
                static_cast<int>(s.stride_w),
                static_cast<int>(s.dilation_h),
                static_cast<int>(s.dilation_w),
                static_cast<int>(s.pad_top),
                static_cast<int>(s.pad_left)};
  return true;
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace cuda
}  // namespace amsim
