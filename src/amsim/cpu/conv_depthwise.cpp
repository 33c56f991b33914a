// Depthwise convolution: direct loops, one image at a time.  Every inner
// loop is "sum[j] += a[j] (x) b[j]" over contiguous channels (Products::
// accumulate), by one of three kernels (depthwise_kernel()): AVX-512 or AVX2
// over operands encoded once per image (encoded_operand.h: the inner loop
// only adds two words, gathers the entry and composes), else scalar over
// operands packed once per image (packed_operands.h).  A separable table
// (separable_table.h: bf16, DRUM) multiplies as floats instead: each operand
// is transformed once (gemm_float.h) and a product is one float multiply.
// Each output element sums its products in the canonical order of conv.h;
// threads split outputs, never one element's sum.
#include "amsim/cpu/conv_depthwise.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <vector>

#include "amsim/cpu/cpu_features.h"
#include "amsim/cpu/encoded_operand.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/gemm_float.h"
#include "amsim/cpu/gemm_float_transform.h"
#include "amsim/cpu/multiply_simd.h"
#include "amsim/packed_operands.h"

namespace amsim {
namespace cpu {

DepthwiseKernel depthwise_kernel() {
  // "generic" turns every SIMD kernel off; "bucket-portable" stands for a CPU
  // with neither AVX-512 nor AVX2 (the portable build); "no-avx512" and "avx2"
  // choose as an AVX2 CPU without AVX-512 does.
  if (forced_path_is("generic") || forced_path_is("bucket-portable")) return DepthwiseKernel::kScalar;
  if (has_avx512_bw() && !forced_path_is("no-avx512") && !forced_path_is("avx2")) return DepthwiseKernel::kAvx512;
  if (has_avx2_fma()) return DepthwiseKernel::kAvx2;
  return DepthwiseKernel::kScalar;
}

const char* depthwise_cpu_path() {
  switch (depthwise_kernel()) {
    case DepthwiseKernel::kAvx512:
      return "avx512";
    case DepthwiseKernel::kAvx2:
      return "avx2";
    case DepthwiseKernel::kScalar:
      break;
  }
  return "scalar";
}

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

// Operands as one kernel multiplies them: the raw values, plus their packed
// forms (scalar kernel) or encoded words (SIMD kernels).
template <class Packed>
struct OperandsAt {
  const float* values = nullptr;
  const Packed* packed = nullptr;
  const uint32_t* encoded = nullptr;
};

// A separable table's float multiply for the depthwise convs: the float
// GEMM's kernels (their operand transform) where gemm_cpu would run them.
struct FloatProducts {
  const FloatGemmKernels* kernels;
  SeparableFactorsPtr factors;  // keeps the transforms' factor arrays alive
  OperandTransform left, right;
};

std::optional<FloatProducts> float_products(const Table& table) {
  const FloatGemmKernels* kernels = float_gemm_kernels();
  if (kernels == nullptr) return std::nullopt;
  SeparableFactorsPtr factors = separable_factors(table);
  if (factors == nullptr) return std::nullopt;
  return FloatProducts{kernels, factors, operand_transform(table, factors->left),
                       operand_transform(table, factors->right)};
}

// The elementwise products of one convolution (flush-to-zero on in callers):
// by the table kernels, or (`floats`) as float products of transformed
// operands, which a value that rounds to infinity rules out (encode()).
class Products {
 public:
  explicit Products(const Table& table, const FloatProducts* floats = nullptr)
      : table_(table), kernel_(depthwise_kernel()), floats_(floats) {}

  bool packs() const { return floats_ == nullptr && kernel_ == DepthwiseKernel::kScalar; }
  PackedLeft left(float a) const { return pack_left(a, table_.mantissa_bits, table_.rounding); }
  Right right(float b) const {
    return {pack_right(b, table_.mantissa_bits, table_.rounding),
            rounds_to_infinity(b, table_.mantissa_bits, table_.rounding)};
  }
  uint32_t encode(float x, bool left) const {
    if (floats_ != nullptr) {
      uint32_t rounds_to_inf = 0;
      return transform_bits(float_bits(x), left ? floats_->left : floats_->right, &rounds_to_inf);
    }
    return encode_operand(x, table_.mantissa_bits, table_.rounding, left);
  }
  // words[i] = encode(x[i], left) for i < n, vectorized.  Returns true when
  // the float products cannot take a value (it rounds to infinity).
  bool encode(const float* x, uint32_t* words, int64_t n, bool left) const {
    if (floats_ != nullptr) {
      std::memcpy(words, x, static_cast<size_t>(n) * sizeof(float));
      return floats_->kernels->transform(reinterpret_cast<float*>(words), n, left ? floats_->left : floats_->right);
    }
    if (kernel_ == DepthwiseKernel::kAvx512) {
      encode_operands_avx512(table_, x, words, n, left);
    } else {
      encode_operands_avx2(table_, x, words, n, left);
    }
    return false;
  }

  // sum[j] += a[j] (x) b[j] for j < n.
  void accumulate(const OperandsAt<PackedLeft>& a, const OperandsAt<Right>& b, int64_t n, float* sum) const {
    if (floats_ != nullptr) {
      accumulate_floats(a.encoded, b.encoded, n, sum);
      return;
    }
    switch (kernel_) {
      case DepthwiseKernel::kAvx512:
        multiply_add_encoded_avx512(table_, a.values, a.encoded, b.values, b.encoded, sum, n);
        return;
      case DepthwiseKernel::kAvx2:
        multiply_add_encoded_avx2(table_, a.values, a.encoded, b.values, b.encoded, sum, n);
        return;
      case DepthwiseKernel::kScalar:
        break;
    }
    accumulate_scalar(a.values, a.packed, b.values, b.packed, n, sum);
  }

 private:
  // Out of line: inlined into the conv loops its pointers spill to the stack.
  __attribute__((noinline)) void accumulate_scalar(const float* a, const PackedLeft* pa, const float* b,
                                                   const Right* pb, int64_t n, float* sum) const {
    for (int64_t j = 0; j < n; ++j) add_product(sum[j], product(a[j], pa[j], b[j], pb[j]));
  }
  float product(float a, const PackedLeft& pa, float b, const Right& rb) const {
    if (__builtin_expect(pa.special || (rb.rounds_to_inf && is_zero_operand(a)), 0)) return exact(a, b);
    return (entry_as_float(table_.entries[pa.row_offset + rb.packed.index]) * pa.scale) * rb.packed.scale;
  }
  // Kept out of line: rare, and inlined it would crowd the hot loop.
  __attribute__((noinline)) float exact(float a, float b) const { return am_multiply(a, b, table_); }
  // The transformed operands' bits: a multiply, then a separate add.
  __attribute__((noinline)) static void accumulate_floats(const uint32_t* a, const uint32_t* b, int64_t n,
                                                          float* sum) {
    for (int64_t j = 0; j < n; ++j) add_product(sum[j], bits_float(a[j]) * bits_float(b[j]));
  }

  const Table& table_;
  const DepthwiseKernel kernel_;
  const FloatProducts* floats_;
};

// The operands of one image or of the filter, in the kernel's form.
template <typename Packed>
struct Operands {
  const float* values = nullptr;
  std::vector<Packed> packed;
  std::vector<uint32_t> encoded;
  bool rounds_to_inf = false;  // float products only: a value they cannot take
  OperandsAt<Packed> at(int64_t i) const {
    return {values + i, packed.empty() ? nullptr : packed.data() + i, encoded.empty() ? nullptr : encoded.data() + i};
  }
};

// Packs (scalar kernel) or encodes (SIMD kernels) every value once.
template <class Packed, class Pack>
Operands<Packed> prepare(const Products& products, const float* values, int64_t n, bool left,
                         const ParallelFor& parallel, const Pack& pack) {
  Operands<Packed> out;
  out.values = values;
  if (products.packs()) {
    out.packed.resize(static_cast<size_t>(n));
    parallel(n, 20, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out.packed[i] = pack(values[i]);
    });
  } else {
    out.encoded.resize(static_cast<size_t>(n));
    std::atomic<bool> rounds_to_inf{false};
    parallel(n, 2, [&](int64_t b, int64_t e) {
      if (products.encode(values + b, out.encoded.data() + b, e - b, left)) rounds_to_inf = true;
    });
    out.rounds_to_inf = rounds_to_inf;
  }
  return out;
}

Operands<PackedLeft> prepare_lefts(const Products& products, const float* values, int64_t n,
                                   const ParallelFor& parallel) {
  return prepare<PackedLeft>(products, values, n, true, parallel, [&](float v) { return products.left(v); });
}

Operands<Right> prepare_rights(const Products& products, const float* values, int64_t n, const ParallelFor& parallel) {
  return prepare<Right>(products, values, n, false, parallel, [&](float v) { return products.right(v); });
}

// Left operands per output channel o: x[c = o / og] (og > 1 repeats each
// channel), or the padding's zeros; the buffers keep them contiguous.
class ExpandedLeft {
 public:
  ExpandedLeft(const Products& products, int64_t channels, int64_t og)
      : og_(og),
        values_(static_cast<size_t>(channels * og)),
        packed_(products.packs() ? channels * og : 0),
        encoded_(products.packs() ? 0 : channels * og),
        zero_values_(static_cast<size_t>(channels * og), 0.0f),
        zero_packed_(products.packs() ? channels * og : 0, products.left(0.0f)),
        zero_encoded_(products.packs() ? 0 : channels * og, products.encode(0.0f, true)) {}

  // Channels [o0, o1) of the operands at x (og == 1: no copy).
  void set(const OperandsAt<PackedLeft>& x, int64_t o0, int64_t o1) {
    if (og_ == 1) {
      at_ = {x.values + o0, x.packed ? x.packed + o0 : nullptr, x.encoded ? x.encoded + o0 : nullptr};
      return;
    }
    for (int64_t o = o0; o < o1; ++o) values_[o - o0] = x.values[o / og_];
    if (x.packed)
      for (int64_t o = o0; o < o1; ++o) packed_[o - o0] = x.packed[o / og_];
    if (x.encoded)
      for (int64_t o = o0; o < o1; ++o) encoded_[o - o0] = x.encoded[o / og_];
    at_ = {values_.data(), x.packed ? packed_.data() : nullptr, x.encoded ? encoded_.data() : nullptr};
  }
  void set_zeros() {
    at_ = {zero_values_.data(), zero_packed_.empty() ? nullptr : zero_packed_.data(),
           zero_encoded_.empty() ? nullptr : zero_encoded_.data()};
  }
  const OperandsAt<PackedLeft>& at() const { return at_; }

 private:
  int64_t og_;
  std::vector<float> values_;
  std::vector<PackedLeft> packed_;
  std::vector<uint32_t> encoded_;
  std::vector<float> zero_values_;
  std::vector<PackedLeft> zero_packed_;
  std::vector<uint32_t> zero_encoded_;
  OperandsAt<PackedLeft> at_;
};

// The products of a zero left operand (padding, the gaps of a strided dX)
// with each weight: they depend on the weight alone (signed zero, NaN
// against inf/NaN), so each is formed once per call and then only added.
std::vector<float> zero_products(const Table& table, const float* w, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = am_multiply(0.0f, w[i], table);
  return out;
}

inline void add_products(float* sum, const float* products, int64_t n) {
  for (int64_t j = 0; j < n; ++j) add_product(sum[j], products[j]);
}

// Images [n0, n1) per chunk: a chunk's operands are prepared in one parallel
// call and its products in another (per image, small late layers spent more
// on waking threads than on work); at most about 2^16 values per chunk (the
// encoded chunk stays in L2 for the products; larger images go one by one).
struct ImageChunk {
  int64_t n0, n1;
  int64_t size() const { return n1 - n0; }
};

template <class Body>
void for_each_chunk(int64_t batch, int64_t image_values, const Body& body) {
  constexpr int64_t kChunkValues = int64_t{1} << 16;
  const int64_t per_chunk = std::max<int64_t>(1, kChunkValues / std::max<int64_t>(1, image_values));
  for (int64_t n0 = 0; n0 < batch; n0 += per_chunk) body(ImageChunk{n0, std::min(batch, n0 + per_chunk)});
}

// The kernels of one call: float products for a separable table where the
// CPU path has them, else the table kernels.  Operands that the float
// products cannot take (a value that rounds to infinity) are prepared again
// for the table kernels, which give the same bits: the weights for the whole
// call, the images per chunk (the weights then prepared for them too, once).
class CallProducts {
 public:
  explicit CallProducts(const Table& table)
      : floats_(float_products(table)), table_(table), float_(table, floats_ ? &*floats_ : nullptr) {}
  CallProducts(const CallProducts&) = delete;  // float_ points into floats_

  const Products& first() const { return floats_ ? float_ : table_; }
  const Products& table() const { return table_; }

 private:
  std::optional<FloatProducts> floats_;
  Products table_, float_;
};

// The weights of a forward pass or input gradient, for `*chosen` (which
// becomes the table kernels if the float products cannot take them), and
// for the table kernels on demand.
class Weights {
 public:
  Weights(const CallProducts& call, const float* w, int64_t n, const ParallelFor& parallel)
      : call_(call), w_(w), n_(n), parallel_(parallel), chosen_(&call.first()) {
    first_ = prepare_rights(*chosen_, w, n, parallel);
    if (first_.rounds_to_inf) {
      chosen_ = &call.table();
      first_ = prepare_rights(*chosen_, w, n, parallel);
    }
  }
  const Products& chosen() const { return *chosen_; }
  // The weights as `products` takes them (chosen(), or the table kernels).
  const Operands<Right>& for_products(const Products& products) {
    if (&products == chosen_) return first_;
    if (!table_) table_ = prepare_rights(products, w_, n_, parallel_);
    return *table_;
  }

 private:
  const CallProducts& call_;
  const float* w_;
  int64_t n_;
  const ParallelFor& parallel_;
  const Products* chosen_;
  Operands<Right> first_;
  std::optional<Operands<Right>> table_;
};

// A chunk's left operands for `*products`, which becomes the table kernels
// where the float products cannot take them.
Operands<PackedLeft> chunk_lefts(const CallProducts& call, const Products** products, const float* values, int64_t n,
                                 const ParallelFor& parallel) {
  Operands<PackedLeft> out = prepare_lefts(**products, values, n, parallel);
  if (!out.rounds_to_inf) return out;
  *products = &call.table();
  return prepare_lefts(**products, values, n, parallel);
}

}  // namespace

const char* depthwise_cpu_path(const Table& table) {
  const std::optional<FloatProducts> floats = float_products(table);
  return floats ? floats->kernels->name : depthwise_cpu_path();
}

void depthwise_forward(const Table& table, const Conv2DShape& s, const float* x, const float* w, float* y,
                       const ParallelFor& parallel) {
  const CallProducts call(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t image = s.in_h * s.in_w * c_in;
  Weights weights(call, w, taps * o_all, parallel);
  const std::vector<float> padding = zero_products(table, w, taps * o_all);
  for_each_chunk(s.batch, image, [&](const ImageChunk& chunk) {
    const Products* chosen = &weights.chosen();
    const Operands<PackedLeft> xl = chunk_lefts(call, &chosen, x + chunk.n0 * image, chunk.size() * image, parallel);
    const Products& products = *chosen;
    const Operands<Right>& wr = weights.for_products(products);
    // One range item per output row (image, oh).
    parallel(chunk.size() * s.out_h, s.out_w * o_all * taps * 4, [&](int64_t r0, int64_t r1) {
      FlushToZeroScope ftz;
      ExpandedLeft left(products, c_in, og);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = chunk.n0 + r / s.out_h, oh = r % s.out_h, x_at = (r / s.out_h) * image;
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          float* sum = y + ((n * s.out_h + oh) * s.out_w + ow) * o_all;
          std::fill(sum, sum + o_all, 0.0f);
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
              const int64_t tap = (kh * s.filter_w + kw) * o_all;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) {
                add_products(sum, padding.data() + tap, o_all);
                continue;
              }
              left.set(xl.at(x_at + (ih * s.in_w + iw) * c_in), 0, o_all);
              products.accumulate(left.at(), wr.at(tap), o_all, sum);
            }
          }
        }
      }
    });
  });
}

void depthwise_input_grad(const Table& table, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                          const ParallelFor& parallel) {
  const CallProducts call(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t image = s.out_h * s.out_w * o_all;
  Weights weights(call, w, taps * o_all, parallel);
  const std::vector<float> gaps = zero_products(table, w, taps * o_all);
  for_each_chunk(s.batch, image, [&](const ImageChunk& chunk) {
    const Products* chosen = &weights.chosen();
    const Operands<PackedLeft> dyl = chunk_lefts(call, &chosen, dy + chunk.n0 * image, chunk.size() * image, parallel);
    const Products& products = *chosen;
    const Operands<Right>& wr = weights.for_products(products);
    // One range item per input row (image, ih).
    parallel(chunk.size() * s.in_h, s.in_w * o_all * taps * 4, [&](int64_t r0, int64_t r1) {
      FlushToZeroScope ftz;
      // og > 1: the products of one tap, -0 + p = p exactly, then summed
      // into dx in (kh, kw, o) order.
      std::vector<float> tap_products(static_cast<size_t>(og > 1 ? o_all : 0));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = chunk.n0 + r / s.in_h, ih = r % s.in_h, dy_at = (r / s.in_h) * image;
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
              const bool gap = !(row_ok && tw >= 0 && tw % s.stride_w == 0 && ow < s.out_w);
              if (og == 1) {
                if (gap) {
                  add_products(sum, gaps.data() + tap, o_all);
                } else {
                  products.accumulate(dyl.at(dy_at + (oh * s.out_w + ow) * o_all), wr.at(tap), o_all, sum);
                }
              } else {
                const float* p = gaps.data() + tap;  // -0 + p = p: a gap's products as they are
                if (!gap) {
                  std::fill(tap_products.begin(), tap_products.end(), -0.0f);
                  products.accumulate(dyl.at(dy_at + (oh * s.out_w + ow) * o_all), wr.at(tap), o_all,
                                      tap_products.data());
                  p = tap_products.data();
                }
                for (int64_t c = 0; c < c_in; ++c)
                  for (int64_t q = 0; q < og; ++q) add_product(sum[c], p[c * og + q]);
              }
            }
          }
        }
      }
    });
  });
}

void depthwise_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                           const ParallelFor& parallel) {
  const CallProducts call(table);
  const int64_t c_in = s.in_c, o_all = s.out_c, og = o_all / c_in, taps = s.filter_h * s.filter_w;
  const int64_t x_image = s.in_h * s.in_w * c_in, dy_image = s.out_h * s.out_w * o_all;
  std::fill(dw, dw + taps * o_all, 0.0f);
  constexpr int64_t kChannelsPerTask = 16;
  const int64_t tasks = ceil_div(o_all, kChannelsPerTask);
  for_each_chunk(s.batch, std::max(x_image, dy_image), [&](const ImageChunk& chunk) {
    // Both operands change per chunk: a chunk the float products cannot take
    // runs on the table kernels (the same products, so the same sums).
    const Products* chosen = &call.first();
    Operands<PackedLeft> xl = prepare_lefts(*chosen, x + chunk.n0 * x_image, chunk.size() * x_image, parallel);
    Operands<Right> dyr = prepare_rights(*chosen, dy + chunk.n0 * dy_image, chunk.size() * dy_image, parallel);
    if (xl.rounds_to_inf || dyr.rounds_to_inf) {
      chosen = &call.table();
      xl = prepare_lefts(*chosen, x + chunk.n0 * x_image, chunk.size() * x_image, parallel);
      dyr = prepare_rights(*chosen, dy + chunk.n0 * dy_image, chunk.size() * dy_image, parallel);
    }
    const Products& products = *chosen;
    // Each task owns channels [o0, o1) of dw and walks (n, oh, ow) ascending.
    parallel(tasks, chunk.size() * kChannelsPerTask * s.out_h * s.out_w * taps * 4, [&](int64_t t0, int64_t t1) {
      FlushToZeroScope ftz;
      const int64_t o0 = t0 * kChannelsPerTask, o1 = std::min(o_all, t1 * kChannelsPerTask);
      ExpandedLeft left(products, c_in, og);
      for (int64_t r = 0; r < chunk.size() * s.out_h; ++r) {
        const int64_t oh = r % s.out_h, x_at = (r / s.out_h) * x_image;
        for (int64_t ow = 0; ow < s.out_w; ++ow) {
          const int64_t at_dy = (r / s.out_h) * dy_image + (oh * s.out_w + ow) * o_all + o0;
          for (int64_t kh = 0; kh < s.filter_h; ++kh) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
            for (int64_t kw = 0; kw < s.filter_w; ++kw) {
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) {
                left.set_zeros();
              } else {
                const int64_t at_x = x_at + (ih * s.in_w + iw) * c_in;
                left.set(xl.at(at_x), o0, o1);
              }
              products.accumulate(left.at(), dyr.at(at_dy), o1 - o0, dw + (kh * s.filter_w + kw) * o_all + o0);
            }
          }
        }
      }
    });
  });
}

}  // namespace cpu
}  // namespace amsim
