// One output element of each depthwise op, in conv.h's canonical order.  The
// kernels (depthwise_*.cu) call these per thread; tests/cuda/host_emulation.cu
// calls them on the CPU.  `weight` returns a staged right operand:
// weight(tap) for the forward pass, weight(tap, q) for the input gradient.
#pragma once

#include <cstdint>

#include "amsim/amsim.h"
#include "cuda/conv_dims.cuh"
#include "cuda/hd.cuh"
#include "cuda/staged_operands.cuh"

namespace amsim {
namespace cuda {

// The multiplier as the depthwise kernels use it: entries (shared or global),
// M, rounding and the zero row's offset (shared tables only).
struct StagedTable {
  const uint16_t* entries;
  int mantissa_bits;
  Rounding rounding;
  uint32_t zero_row;
};

// y[pos, o] = sum over (kh, kw) of x[n, ih, iw, o / Og] (x) w[kh, kw, 0, o], pos = (n, oh, ow).
template <bool kShared, class Weight>
AMSIM_HD float depthwise_forward_element(const ConvDims& d, const StagedTable& t, const float* x, int64_t pos,
                                         int64_t o, Weight weight) {
  const int p = static_cast<int>(pos);
  const int ni = p / (d.oh * d.ow), rem = p - ni * d.oh * d.ow;
  const int ohi = rem / d.ow, owi = rem - ohi * d.ow;
  const float* x_n = x + int64_t{ni} * d.h * d.w * d.c + o / d.og;
  float acc = 0.0f;
  for (int khi = 0; khi < d.kh; ++khi) {
    const int ih = ohi * d.sh - d.pad_top + khi * d.dh;
    const bool row_ok = static_cast<unsigned>(ih) < static_cast<unsigned>(d.h);
    for (int kwi = 0; kwi < d.kw; ++kwi) {
      const int iw = owi * d.sw - d.pad_left + kwi * d.dw;
      const bool ok = row_ok && static_cast<unsigned>(iw) < static_cast<unsigned>(d.w);
      const float xv = ok ? load_readonly(x_n + (int64_t{ih} * d.w + iw) * d.c) : 0.0f;
      const StagedRight wv = weight(khi * d.kw + kwi);
      const uint2 a = stage_left<kShared>(xv, t.mantissa_bits, t.rounding, t.zero_row);
      acc = add_rn_ftz(acc, any_product<kShared>(t.entries, a, wv.col, wv.scale, t.mantissa_bits, t.rounding));
    }
  }
  return acc;
}

// dx[pos, c] = sum over (kh, kw, q) of dy[n, oh, ow, c*Og + q] (x) w[kh, kw, 0, c*Og + q],
// pos = (n, ih, iw); dy is a multiplied 0 where no output maps to the input position.
template <bool kShared, class Weight>
AMSIM_HD float depthwise_input_grad_element(const ConvDims& d, const StagedTable& t, const float* dy, int64_t pos,
                                            int64_t c, Weight weight) {
  const int p = static_cast<int>(pos);
  const int ni = p / (d.h * d.w), rem = p - ni * d.h * d.w;
  const int ihi = rem / d.w, iwi = rem - ihi * d.w;
  const float* dy_n = dy + int64_t{ni} * d.oh * d.ow * d.o + c * d.og;
  float acc = 0.0f;
  for (int khi = 0; khi < d.kh; ++khi) {
    const int th = ihi + d.pad_top - khi * d.dh;
    const int ohi = th >= 0 ? th / d.sh : 0;
    const bool row_ok = th >= 0 && ohi * d.sh == th && ohi < d.oh;
    for (int kwi = 0; kwi < d.kw; ++kwi) {
      const int tw = iwi + d.pad_left - kwi * d.dw;
      const int owi = tw >= 0 ? tw / d.sw : 0;
      const bool ok = row_ok && tw >= 0 && owi * d.sw == tw && owi < d.ow;
      const float* dy_at = dy_n + (int64_t{ohi} * d.ow + owi) * d.o;
      for (int q = 0; q < d.og; ++q) {
        const float v = ok ? load_readonly(dy_at + q) : 0.0f;
        const uint2 a = stage_left<kShared>(v, t.mantissa_bits, t.rounding, t.zero_row);
        const StagedRight wv = weight(khi * d.kw + kwi, q);
        acc = add_rn_ftz(acc, any_product<kShared>(t.entries, a, wv.col, wv.scale, t.mantissa_bits, t.rounding));
      }
    }
  }
  return acc;
}

// dw[tap, o] = sum over (n, oh, ow) of x[n, ih, iw, o / Og] (x) dy[n, oh, ow, o].
template <bool kShared>
AMSIM_HD float depthwise_filter_grad_element(const ConvDims& d, const StagedTable& t, const float* x, const float* dy,
                                             int tap, int64_t o) {
  const int khi = tap / d.kw, kwi = tap - khi * d.kw;
  const int64_t c = o / d.og;
  float acc = 0.0f;
  const float* dy_at = dy + o;
  for (int ni = 0; ni < d.n; ++ni) {
    const float* x_n = x + int64_t{ni} * d.h * d.w * d.c + c;
    for (int ohi = 0; ohi < d.oh; ++ohi) {
      const int ih = ohi * d.sh - d.pad_top + khi * d.dh;
      const bool row_ok = static_cast<unsigned>(ih) < static_cast<unsigned>(d.h);
      for (int owi = 0; owi < d.ow; ++owi, dy_at += d.o) {
        const int iw = owi * d.sw - d.pad_left + kwi * d.dw;
        const bool ok = row_ok && static_cast<unsigned>(iw) < static_cast<unsigned>(d.w);
        const float xv = ok ? load_readonly(x_n + (int64_t{ih} * d.w + iw) * d.c) : 0.0f;
        const uint2 a = stage_left<kShared>(xv, t.mantissa_bits, t.rounding, t.zero_row);
        const StagedRight b = stage_right<kShared>(load_readonly(dy_at), t.mantissa_bits, t.rounding);
        acc = add_rn_ftz(acc, any_product<kShared>(t.entries, a, b.col, b.scale, t.mantissa_bits, t.rounding));
      }
    }
  }
  return acc;
}

}  // namespace cuda
}  // namespace amsim
