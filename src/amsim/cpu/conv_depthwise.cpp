// Depthwise convolution: direct loops over packed operands (packed_operands.h),
// one image at a time so the packed copies stay small.  Each output element
// sums its products in the canonical order of conv.h; threads split outputs,
// never one element's sum.
#include "amsim/cpu/conv_depthwise.h"

#include <algorithm>
#include <vector>

#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/packed_operands.h"

namespace amsim {
namespace cpu {

namespace {

// A right operand and whether it is finite but rounds to infinity (then a
// zero left operand needs am_multiply(); see packed_operands.h).
struct Right {
  PackedRight packed;
  bool rounds_to_inf;
};

// One AMSim product from packed operands (flush-to-zero on); a and b are the
// raw values, for the cases only am_multiply() gets right.
class Products {
 public:
  explicit Products(const Table& table) : table_(table) {}

  PackedLeft left(float a) const { return pack_left(a, table_.mantissa_bits, table_.rounding); }
  Right right(float b) const {
    return {pack_right(b, table_.mantissa_bits, table_.rounding),
            rounds_to_infinity(b, table_.mantissa_bits, table_.rounding)};
  }
  float operator()(float a, const PackedLeft& pa, float b, const Right& rb) const {
    if (__builtin_expect(pa.special || (rb.rounds_to_inf && is_zero_operand(a)), 0)) return exact(a, b);
    return (entry_as_float(entries_[pa.row_offset + rb.packed.index]) * pa.scale) * rb.packed.scale;
  }

 private:
  // Kept out of line: rare, and inlined it would crowd the hot loops.
  __attribute__((noinline)) float exact(float a, float b) const { return am_multiply(a, b, table_); }

  const Table& table_;
  const uint16_t* entries_ = table_.entries;
};

inline void accumulate(float& sum, float product) {
#if AMSIM_HAVE_FTZ_MODE
  sum += product;
#else
  sum = add_ftz(sum, add_ftz(0.0f, product));
#endif
}

// Packs n values in parallel into out[i] = pack(values[i]).
template <typename Packed, typename Pack>
void pack_all(const float* values, int64_t n, Packed* out, const Pack& pack, const ParallelFor& parallel) {
  parallel(n, 20, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = pack(values[i]);
  });
}

constexpr float kPaddingZero = 0.0f;  // padded positions are multiplied +0 operands

}  // namespace

void depthwise_forward(const Table& table, const Conv2DShape& s, const float* x, const float* w, float* y,
                       const ParallelFor& parallel) {
  const Products product(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t image = s.in_h * s.in_w * c_in;
  std::vector<Right> wr(static_cast<size_t>(taps * o_all));
  pack_all(w, taps * o_all, wr.data(), [&](float v) { return product.right(v); }, parallel);
  std::vector<PackedLeft> xl(static_cast<size_t>(image));
  const PackedLeft zero_left = product.left(kPaddingZero);
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* xn = x + n * image;
    pack_all(xn, image, xl.data(), [&](float v) { return product.left(v); }, parallel);
    parallel(s.out_h, s.out_w * o_all * taps * 4, [&](int64_t oh0, int64_t oh1) {
      FlushToZeroScope ftz;
      std::vector<float> acc(static_cast<size_t>(o_all));
      float* __restrict sum = acc.data();
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
              const int64_t tap = kh * s.filter_w + kw;
              const float* wt = w + tap * o_all;
              const Right* wp = wr.data() + tap * o_all;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) {
                for (int64_t o = 0; o < o_all; ++o) accumulate(sum[o], product(kPaddingZero, zero_left, wt[o], wp[o]));
                continue;
              }
              const float* xa = xn + (ih * s.in_w + iw) * c_in;
              const PackedLeft* xp = xl.data() + (ih * s.in_w + iw) * c_in;
              if (og == 1) {
                for (int64_t o = 0; o < o_all; ++o) accumulate(sum[o], product(xa[o], xp[o], wt[o], wp[o]));
              } else {
                for (int64_t c = 0; c < c_in; ++c)
                  for (int64_t o = c * og; o < (c + 1) * og; ++o) accumulate(sum[o], product(xa[c], xp[c], wt[o], wp[o]));
              }
            }
          }
          std::copy(acc.begin(), acc.end(), y + ((n * s.out_h + oh) * s.out_w + ow) * o_all);
        }
      }
    });
  }
}

void depthwise_input_grad(const Table& table, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                          const ParallelFor& parallel) {
  const Products product(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t image = s.out_h * s.out_w * o_all;
  std::vector<Right> wr(static_cast<size_t>(taps * o_all));
  pack_all(w, taps * o_all, wr.data(), [&](float v) { return product.right(v); }, parallel);
  std::vector<PackedLeft> dyl(static_cast<size_t>(image));
  const PackedLeft zero_left = product.left(kPaddingZero);
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* dyn = dy + n * image;
    pack_all(dyn, image, dyl.data(), [&](float v) { return product.left(v); }, parallel);
    parallel(s.in_h, s.in_w * o_all * taps * 4, [&](int64_t ih0, int64_t ih1) {
      FlushToZeroScope ftz;
      std::vector<float> acc(static_cast<size_t>(c_in));
      float* __restrict sum = acc.data();
      for (int64_t ih = ih0; ih < ih1; ++ih) {
        for (int64_t iw = 0; iw < s.in_w; ++iw) {
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t th = ih + s.pad_top - kh * s.dilation_h;
            const int64_t oh = th / s.stride_h;
            const bool row_ok = th >= 0 && th % s.stride_h == 0 && oh < s.out_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t tw = iw + s.pad_left - kw * s.dilation_w;
              const int64_t ow = tw / s.stride_w;
              const int64_t tap = kh * s.filter_w + kw;
              const float* wt = w + tap * o_all;
              const Right* wp = wr.data() + tap * o_all;
              if (!row_ok || tw < 0 || tw % s.stride_w != 0 || ow >= s.out_w) {
                for (int64_t c = 0; c < c_in; ++c)
                  for (int64_t o = c * og; o < (c + 1) * og; ++o)
                    accumulate(sum[c], product(kPaddingZero, zero_left, wt[o], wp[o]));
                continue;
              }
              const float* da = dyn + (oh * s.out_w + ow) * o_all;
              const PackedLeft* dp = dyl.data() + (oh * s.out_w + ow) * o_all;
              if (og == 1) {
                for (int64_t c = 0; c < c_in; ++c) accumulate(sum[c], product(da[c], dp[c], wt[c], wp[c]));
              } else {
                for (int64_t c = 0; c < c_in; ++c)
                  for (int64_t o = c * og; o < (c + 1) * og; ++o) accumulate(sum[c], product(da[o], dp[o], wt[o], wp[o]));
              }
            }
          }
          std::copy(acc.begin(), acc.end(), dx + ((n * s.in_h + ih) * s.in_w + iw) * c_in);
        }
      }
    });
  }
}

void depthwise_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                           const ParallelFor& parallel) {
  const Products product(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t x_image = s.in_h * s.in_w * c_in, dy_image = s.out_h * s.out_w * o_all;
  std::fill(dw, dw + taps * o_all, 0.0f);
  std::vector<PackedLeft> xl(static_cast<size_t>(x_image));
  std::vector<Right> dyr(static_cast<size_t>(dy_image));
  const PackedLeft zero_left = product.left(kPaddingZero);
  constexpr int64_t kChannelsPerTask = 16;
  const int64_t tasks = (o_all + kChannelsPerTask - 1) / kChannelsPerTask;
  for (int64_t n = 0; n < s.batch; ++n) {
    const float* xn = x + n * x_image;
    const float* dyn = dy + n * dy_image;
    pack_all(xn, x_image, xl.data(), [&](float v) { return product.left(v); }, parallel);
    pack_all(dyn, dy_image, dyr.data(), [&](float v) { return product.right(v); }, parallel);
    // Each task owns channels [o0, o1) of dw and walks (oh, ow) ascending.
    parallel(tasks, kChannelsPerTask * dy_image / o_all * taps * 4, [&](int64_t t0, int64_t t1) {
      FlushToZeroScope ftz;
      const int64_t o0 = t0 * kChannelsPerTask, o1 = std::min(o_all, t1 * kChannelsPerTask);
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          const float* da = dyn + (oh * s.out_w + ow) * o_all;
          const Right* dr = dyr.data() + (oh * s.out_w + ow) * o_all;
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
              float* __restrict dwt = dw + (kh * s.filter_w + kw) * o_all;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) {
                for (int64_t o = o0; o < o1; ++o) accumulate(dwt[o], product(kPaddingZero, zero_left, da[o], dr[o]));
                continue;
              }
              const float* xa = xn + (ih * s.in_w + iw) * c_in;
              const PackedLeft* xp = xl.data() + (ih * s.in_w + iw) * c_in;
              if (og == 1) {
                for (int64_t o = o0; o < o1; ++o) accumulate(dwt[o], product(xa[o], xp[o], da[o], dr[o]));
              } else {
                for (int64_t o = o0; o < o1; ++o) accumulate(dwt[o], product(xa[o / og], xp[o / og], da[o], dr[o]));
              }
            }
          }
        }
      }
    });
  }
}

}  // namespace cpu
}  // namespace amsim
