// Depthwise convolution: direct loops, one image at a time.  Every inner
// loop is "sum[j] += a[j] (x) b[j]" over contiguous channels (Products::
// accumulate): AVX-512 when the CPU has it, else scalar over operands packed
// once per image (packed_operands.h).  Each output element sums its products
// in the canonical order of conv.h; threads split outputs, never one
// element's sum.
#include "amsim/cpu/conv_depthwise.h"

#include <algorithm>
#include <vector>

#include "amsim/cpu/cpu_features.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/multiply_simd.h"
#include "amsim/packed_operands.h"

namespace amsim {
namespace cpu {

namespace {

// A right operand and whether it is finite but rounds to infinity (then a
// zero left operand needs am_multiply(); see packed_operands.h).
struct Right {
  PackedRight packed;
  bool rounds_to_inf;
};

inline void add_product(float& sum, float product) {
#if AMSIM_HAVE_FTZ_MODE
  sum += product;
#else
  sum = add_ftz(sum, add_ftz(0.0f, product));
#endif
}

// The elementwise products of one convolution (flush-to-zero on in callers).
class Products {
 public:
  explicit Products(const Table& table) : table_(table), simd_(has_avx512_bw() && !forced_path_is("generic")) {}

  // The scalar form multiplies packed operands; the AVX-512 form raw floats.
  bool packs() const { return !simd_; }
  PackedLeft left(float a) const { return pack_left(a, table_.mantissa_bits, table_.rounding); }
  Right right(float b) const {
    return {pack_right(b, table_.mantissa_bits, table_.rounding),
            rounds_to_infinity(b, table_.mantissa_bits, table_.rounding)};
  }

  // sum[j] += a[j] (x) b[j] for j < n; pa, pb: the packed forms (scalar only).
  void accumulate(const float* a, const PackedLeft* pa, const float* b, const Right* pb, int64_t n, float* sum) const {
    if (simd_) {
      multiply_add_avx512(table_, a, b, sum, n);
      return;
    }
    for (int64_t j = 0; j < n; ++j) add_product(sum[j], product(a[j], pa[j], b[j], pb[j]));
  }

 private:
  float product(float a, const PackedLeft& pa, float b, const Right& rb) const {
    if (__builtin_expect(pa.special || (rb.rounds_to_inf && is_zero_operand(a)), 0)) return exact(a, b);
    return (entry_as_float(table_.entries[pa.row_offset + rb.packed.index]) * pa.scale) * rb.packed.scale;
  }
  // Kept out of line: rare, and inlined it would crowd the hot loop.
  __attribute__((noinline)) float exact(float a, float b) const { return am_multiply(a, b, table_); }

  const Table& table_;
  const bool simd_;
};

// Values and (for the scalar form) their packed forms, for one image or tap.
template <typename Packed>
struct Operands {
  const float* values = nullptr;
  std::vector<Packed> packed;
  const Packed* packed_at(int64_t i) const { return packed.empty() ? nullptr : packed.data() + i; }
};

// Packs every value with pack(value) (products.left or products.right) when the
// products use packed operands; otherwise the values are used as they are.
template <class Packed, class Pack>
Operands<Packed> pack_operands(const Products& products, const float* values, int64_t n, const ParallelFor& parallel,
                               const Pack& pack) {
  Operands<Packed> out;
  out.values = values;
  if (products.packs()) {
    out.packed.resize(static_cast<size_t>(n));
    parallel(n, 20, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out.packed[i] = pack(values[i]);
    });
  }
  return out;
}

Operands<PackedLeft> pack_lefts(const Products& products, const float* values, int64_t n, const ParallelFor& parallel) {
  return pack_operands<PackedLeft>(products, values, n, parallel, [&](float v) { return products.left(v); });
}

Operands<Right> pack_rights(const Products& products, const float* values, int64_t n, const ParallelFor& parallel) {
  return pack_operands<Right>(products, values, n, parallel, [&](float v) { return products.right(v); });
}

// Left operands per output channel o: x[c = o / og] (og > 1 repeats each
// channel), or the padding's zeros; the buffer keeps them contiguous.
class ExpandedLeft {
 public:
  ExpandedLeft(const Products& products, int64_t channels, int64_t og)
      : og_(og),
        values_(static_cast<size_t>(channels * og)),
        packed_(products.packs() ? channels * og : 0),
        zero_values_(static_cast<size_t>(channels * og), 0.0f),
        zero_packed_(products.packs() ? channels * og : 0, products.left(0.0f)) {}

  // Channels [o0, o1) of the operands at x (og == 1: no copy).
  void set(const float* x, const PackedLeft* xp, int64_t o0, int64_t o1) {
    if (og_ == 1) {
      values_at_ = x + o0;
      packed_at_ = xp ? xp + o0 : nullptr;
      return;
    }
    for (int64_t o = o0; o < o1; ++o) values_[o - o0] = x[o / og_];
    if (xp)
      for (int64_t o = o0; o < o1; ++o) packed_[o - o0] = xp[o / og_];
    values_at_ = values_.data();
    packed_at_ = xp ? packed_.data() : nullptr;
  }
  void set_zeros() {
    values_at_ = zero_values_.data();
    packed_at_ = zero_packed_.empty() ? nullptr : zero_packed_.data();
  }
  const float* values() const { return values_at_; }
  const PackedLeft* packed() const { return packed_at_; }

 private:
  int64_t og_;
  std::vector<float> values_;
  std::vector<PackedLeft> packed_;
  std::vector<float> zero_values_;
  std::vector<PackedLeft> zero_packed_;
  const float* values_at_ = nullptr;
  const PackedLeft* packed_at_ = nullptr;
};

}  // namespace

void depthwise_forward(const Table& table, const Conv2DShape& s, const float* x, const float* w, float* y,
                       const ParallelFor& parallel) {
  const Products products(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t image = s.in_h * s.in_w * c_in;
  const Operands<Right> wr = pack_rights(products, w, taps * o_all, parallel);
  for (int64_t n = 0; n < s.batch; ++n) {
    const Operands<PackedLeft> xl = pack_lefts(products, x + n * image, image, parallel);
    parallel(s.out_h, s.out_w * o_all * taps * 4, [&](int64_t oh0, int64_t oh1) {
      FlushToZeroScope ftz;
      ExpandedLeft left(products, c_in, og);
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          float* sum = y + ((n * s.out_h + oh) * s.out_w + ow) * o_all;
          std::fill(sum, sum + o_all, 0.0f);
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
              const int64_t tap = (kh * s.filter_w + kw) * o_all;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) {
                left.set_zeros();
              } else {
                const int64_t at = (ih * s.in_w + iw) * c_in;
                left.set(xl.values + at, xl.packed_at(at), 0, o_all);
              }
              products.accumulate(left.values(), left.packed(), wr.values + tap, wr.packed_at(tap), o_all, sum);
            }
          }
        }
      }
    });
  }
}

void depthwise_input_grad(const Table& table, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                          const ParallelFor& parallel) {
  const Products products(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t image = s.out_h * s.out_w * o_all;
  const Operands<Right> wr = pack_rights(products, w, taps * o_all, parallel);
  for (int64_t n = 0; n < s.batch; ++n) {
    const Operands<PackedLeft> dyl = pack_lefts(products, dy + n * image, image, parallel);
    parallel(s.in_h, s.in_w * o_all * taps * 4, [&](int64_t ih0, int64_t ih1) {
      FlushToZeroScope ftz;
      ExpandedLeft zeros(products, o_all, 1);
      zeros.set_zeros();
      // og > 1: the products of one tap, -0 + p = p exactly, then summed
      // into dx in (kh, kw, o) order.
      std::vector<float> tap_products(static_cast<size_t>(og > 1 ? o_all : 0));
      for (int64_t ih = ih0; ih < ih1; ++ih) {
        for (int64_t iw = 0; iw < s.in_w; ++iw) {
          float* sum = dx + ((n * s.in_h + ih) * s.in_w + iw) * c_in;
          std::fill(sum, sum + c_in, 0.0f);
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t th = ih + s.pad_top - kh * s.dilation_h;
            const int64_t oh = th / s.stride_h;
            const bool row_ok = th >= 0 && th % s.stride_h == 0 && oh < s.out_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t tw = iw + s.pad_left - kw * s.dilation_w;
              const int64_t ow = tw / s.stride_w;
              const int64_t tap = (kh * s.filter_w + kw) * o_all;
              const float* a = zeros.values();
              const PackedLeft* pa = zeros.packed();
              if (row_ok && tw >= 0 && tw % s.stride_w == 0 && ow < s.out_w) {
                const int64_t at = (oh * s.out_w + ow) * o_all;
                a = dyl.values + at;
                pa = dyl.packed_at(at);
              }
              if (og == 1) {
                products.accumulate(a, pa, wr.values + tap, wr.packed_at(tap), o_all, sum);
              } else {
                std::fill(tap_products.begin(), tap_products.end(), -0.0f);
                products.accumulate(a, pa, wr.values + tap, wr.packed_at(tap), o_all, tap_products.data());
                for (int64_t c = 0; c < c_in; ++c)
                  for (int64_t q = 0; q < og; ++q) add_product(sum[c], tap_products[c * og + q]);
              }
            }
          }
        }
      }
    });
  }
}

void depthwise_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                           const ParallelFor& parallel) {
  const Products products(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t x_image = s.in_h * s.in_w * c_in, dy_image = s.out_h * s.out_w * o_all;
  std::fill(dw, dw + taps * o_all, 0.0f);
  constexpr int64_t kChannelsPerTask = 16;
  const int64_t tasks = ceil_div(o_all, kChannelsPerTask);
  for (int64_t n = 0; n < s.batch; ++n) {
    const Operands<PackedLeft> xl = pack_lefts(products, x + n * x_image, x_image, parallel);
    const Operands<Right> dyr = pack_rights(products, dy + n * dy_image, dy_image, parallel);
    // Each task owns channels [o0, o1) of dw and walks (oh, ow) ascending.
    parallel(tasks, kChannelsPerTask * s.out_h * s.out_w * taps * 4, [&](int64_t t0, int64_t t1) {
      FlushToZeroScope ftz;
      const int64_t o0 = t0 * kChannelsPerTask, o1 = std::min(o_all, t1 * kChannelsPerTask);
      ExpandedLeft left(products, c_in, og);
      for (int64_t oh = 0; oh < s.out_h; ++oh) {
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          const int64_t at_dy = (oh * s.out_w + ow) * o_all + o0;
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) {
                left.set_zeros();
              } else {
                const int64_t at_x = (ih * s.in_w + iw) * c_in;
                left.set(xl.values + at_x, xl.packed_at(at_x), o0, o1);
              }
              products.accumulate(left.values(), left.packed(), dyr.values + at_dy, dyr.packed_at(at_dy), o1 - o0,
                                  dw + (kh * s.filter_w + kw) * o_all + o0);
            }
          }
        }
      }
    });
  }
}

}  // namespace cpu
}  // namespace amsim
