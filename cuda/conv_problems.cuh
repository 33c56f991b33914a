// The three convolution GEMMs as Problems of the tiled kernel
// (gemm_tile.cuh), groups as the batch.  Their K orders are conv.h's
// canonical orders; padded or unmapped positions read as 0 operands, which
// are multiplied like any other value.
#pragma once

#include <cstdint>

#include "cuda/conv_dims.cuh"
#include "cuda/hd.cuh"

namespace amsim {
namespace cuda {

// Conv2D forward as an implicit GEMM (groups as the batch):
//   A[r, k] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, g*Cg + c]   (0 where padded)
//   B[k, j] = w[kh, kw, c, g*Og + j],   C[r, j] = y[n, oh, ow, g*Og + j]
// with r = (n, oh, ow) and k = (kh, kw, c): the K order is the canonical
// (kh, kw, c) ascending of conv.h.  Depthwise shapes go to depthwise_forward.
struct ConvForwardProblem {
  int64_t m, n, k, batch;  // rows N*OH*OW, columns Og, K = KH*KW*Cg, batch = groups
  ConvDims d;
  const float* x;
  const float* w;
  float* y;
  bool c_vec4;

  struct ARow {
    int64_t base;
    int ih0, iw0;
    bool ok;
  };
  struct AK {
    int kdh, kdw, c;
    bool ok;
  };
  struct BCol {
    int64_t o;
    bool ok;
  };
  struct BK {
    int64_t offset;
    bool ok;
  };

  AMSIM_HD ARow a_row(int64_t g, int64_t r) const {
    const bool ok = r < m;
    const int rr = ok ? static_cast<int>(r) : 0;
    const int ni = rr / (d.oh * d.ow), rem = rr - ni * d.oh * d.ow;
    const int ohi = rem / d.ow, owi = rem - ohi * d.ow;
    return {int64_t{ni} * d.h * d.w * d.c + g * d.cg, ohi * d.sh - d.pad_top, owi * d.sw - d.pad_left, ok};
  }
  AMSIM_HD AK a_k(int64_t, int64_t kk) const {
    const bool ok = kk < k;
    const int q = ok ? static_cast<int>(kk) : 0;
    const int c = q % d.cg, tap = q / d.cg;
    const int kwi = tap % d.kw, khi = tap / d.kw;
    return {khi * d.dh, kwi * d.dw, c, ok};
  }
  AMSIM_HD float a_at(const ARow& r, const AK& q) const {
    const int ih = r.ih0 + q.kdh, iw = r.iw0 + q.kdw;
    if (!(r.ok && q.ok && static_cast<unsigned>(ih) < static_cast<unsigned>(d.h) &&
          static_cast<unsigned>(iw) < static_cast<unsigned>(d.w)))
      return 0.0f;
    return load_readonly(x + r.base + (int64_t{ih} * d.w + iw) * d.c + q.c);
  }
  AMSIM_HD BCol b_col(int64_t g, int64_t j) const { return {g * d.og + j, j < n}; }
  AMSIM_HD BK b_k(int64_t, int64_t kk) const { return {kk * d.o, kk < k}; }
  AMSIM_HD float b_at(const BK& q, const BCol& c_) const {
    return q.ok && c_.ok ? load_readonly(w + q.offset + c_.o) : 0.0f;
  }
  AMSIM_HD float* c_row(int64_t g, int64_t r) const { return y + r * d.o + g * d.og; }
};

// Conv2D input gradient as an implicit GEMM (groups as the batch):
//   A[r, k] = dy[n, oh, ow, g*Og + o]  when ih + pt - kh*dh = oh*sh and
//             iw + pl - kw*dw = ow*sw for in-range oh, ow; else a 0 operand
//   B[k, j] = w[kh, kw, j, g*Og + o],   C[r, j] = dx[n, ih, iw, g*Cg + j]
// with r = (n, ih, iw) and k = (kh, kw, o): the canonical (kh, kw, o) order of
// conv.h, zeros included.  Depthwise shapes go to depthwise_input_grad.
struct ConvInputGradProblem {
  int64_t m, n, k, batch;  // rows N*H*W, columns Cg, K = KH*KW*Og, batch = groups
  ConvDims d;
  const float* dy;
  const float* w;
  float* dx;
  bool c_vec4;

  struct ARow {
    int64_t base;
    int th0, tw0;
    bool ok;
  };
  struct AK {
    int kdh, kdw, o;
    bool ok;
  };
  struct BCol {
    int64_t c;
    bool ok;
  };
  struct BK {
    int64_t offset;
    bool ok;
  };

  AMSIM_HD ARow a_row(int64_t g, int64_t r) const {
    const bool ok = r < m;
    const int rr = ok ? static_cast<int>(r) : 0;
    const int ni = rr / (d.h * d.w), rem = rr - ni * d.h * d.w;
    const int ihi = rem / d.w, iwi = rem - ihi * d.w;
    return {int64_t{ni} * d.oh * d.ow * d.o + g * d.og, ihi + d.pad_top, iwi + d.pad_left, ok};
  }
  AMSIM_HD AK a_k(int64_t, int64_t kk) const {
    const bool ok = kk < k;
    const int q = ok ? static_cast<int>(kk) : 0;
    const int o = q % d.og, tap = q / d.og;
    const int kwi = tap % d.kw, khi = tap / d.kw;
    return {khi * d.dh, kwi * d.dw, o, ok};
  }
  AMSIM_HD float a_at(const ARow& r, const AK& q) const {
    const int th = r.th0 - q.kdh, tw = r.tw0 - q.kdw;
    if (!(r.ok && q.ok) || th < 0 || tw < 0) return 0.0f;
    const int ohi = th / d.sh, owi = tw / d.sw;
    if (ohi * d.sh != th || owi * d.sw != tw || ohi >= d.oh || owi >= d.ow) return 0.0f;
    return load_readonly(dy + r.base + (int64_t{ohi} * d.ow + owi) * d.o + q.o);
  }
  AMSIM_HD BCol b_col(int64_t, int64_t j) const { return {j, j < n}; }
  AMSIM_HD BK b_k(int64_t g, int64_t kk) const {
    const bool ok = kk < k;
    const int q = ok ? static_cast<int>(kk) : 0;
    const int o = q % d.og, tap = q / d.og;
    return {int64_t{tap} * d.cg * d.o + g * d.og + o, ok};
  }
  AMSIM_HD float b_at(const BK& q, const BCol& c_) const {
    return q.ok && c_.ok ? load_readonly(w + q.offset + c_.c * d.o) : 0.0f;
  }
  AMSIM_HD float* c_row(int64_t g, int64_t r) const { return dx + r * d.c + g * d.cg; }
};

// Conv2D filter gradient as an implicit GEMM (groups as the batch):
//   A[i, r] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, g*Cg + c]   (0 where padded)
//   B[r, j] = dy[n, oh, ow, g*Og + j],   C[i, j] = dw[kh, kw, c, g*Og + j]
// with i = (kh, kw, c) and r = (n, oh, ow): K runs over the canonical
// (n, oh, ow) ascending of conv.h.  K is long and the output small, and the
// order forbids splitting K, so small outputs get small tiles (gemm_launch.cuh).
// Depthwise shapes go to depthwise_filter_grad.
struct ConvFilterGradProblem {
  int64_t m, n, k, batch;  // rows KH*KW*Cg, columns Og, K = N*OH*OW, batch = groups
  ConvDims d;
  const float* x;
  const float* dy;
  float* dw;
  bool c_vec4;

  struct ARow {
    int64_t c;
    int kdh, kdw;
    bool ok;
  };
  struct AK {
    int64_t base;
    int ih0, iw0;
    bool ok;
  };
  struct BCol {
    int64_t o;
    bool ok;
  };
  struct BK {
    int64_t offset;
    bool ok;
  };

  AMSIM_HD ARow a_row(int64_t g, int64_t i) const {
    const bool ok = i < m;
    const int q = ok ? static_cast<int>(i) : 0;
    const int c = q % d.cg, tap = q / d.cg;
    const int kwi = tap % d.kw, khi = tap / d.kw;
    return {g * d.cg + c, khi * d.dh, kwi * d.dw, ok};
  }
  AMSIM_HD AK a_k(int64_t, int64_t r) const {
    const bool ok = r < k;
    const int rr = ok ? static_cast<int>(r) : 0;
    const int ni = rr / (d.oh * d.ow), rem = rr - ni * d.oh * d.ow;
    const int ohi = rem / d.ow, owi = rem - ohi * d.ow;
    return {int64_t{ni} * d.h * d.w * d.c, ohi * d.sh - d.pad_top, owi * d.sw - d.pad_left, ok};
  }
  AMSIM_HD float a_at(const ARow& i, const AK& r) const {
    const int ih = r.ih0 + i.kdh, iw = r.iw0 + i.kdw;
    if (!(i.ok && r.ok && static_cast<unsigned>(ih) < static_cast<unsigned>(d.h) &&
          static_cast<unsigned>(iw) < static_cast<unsigned>(d.w)))
      return 0.0f;
    return load_readonly(x + r.base + (int64_t{ih} * d.w + iw) * d.c + i.c);
  }
  AMSIM_HD BCol b_col(int64_t g, int64_t j) const { return {g * d.og + j, j < n}; }
  AMSIM_HD BK b_k(int64_t, int64_t r) const { return {r * d.o, r < k}; }
  AMSIM_HD float b_at(const BK& r, const BCol& c_) const {
    return r.ok && c_.ok ? load_readonly(dy + r.offset + c_.o) : 0.0f;
  }
  AMSIM_HD float* c_row(int64_t g, int64_t i) const { return dw + i * d.o + g * d.og; }
};

}  // namespace cuda
}  // namespace amsim
