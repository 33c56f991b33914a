// The bucket GEMM's panel with 512-bit vectors (gemm_bucket.h); this file
// alone is compiled with -mavx512f -mavx512bw and runs only after
// has_avx512_bw().  The packing of the selecting operand is 512-bit too;
// the expansion is the AVX2 kernels' (every AVX-512 CPU has AVX2 + FMA).
//
// Why it beats the register-table kernels on tall GEMMs: per 16 products
// they permute a table row, add the left operand's exponent and multiply-
// add (three vector operations), this panel one multiply-add whose operand
// is a T row read from L1/L2.  Measured with benchmarks/avx512_product_bound.cpp:
// 0.59 against 0.85 ns per 16 products on Zen 4, 0.62 against 0.90 on an
// Intel Xeon with AVX512-FP16 (Sapphire Rapids class).
//
// Tiles of up to 64 columns: R rows x V vectors of 16, R x V <= 24
// accumulators; the last vector of a narrower strip is masked (T is padded
// with zeros to whole vectors, C is read and written only where valid).
#include "amsim/cpu/gemm_bucket.h"
#include "amsim/cpu/gemm_bucket_pack.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

#include <algorithm>

namespace amsim {
namespace cpu {

namespace {

constexpr int64_t kVectorCols = 16;
constexpr int64_t kTileCols = 4 * kVectorCols;

// BucketLeftPacker::pack, 16 contiguous values at a time: the zero, special
// and in-range lanes as masks (the AVX2 packer blends vectors), about a
// third of its operations per value.
void pack_left_avx512(const BucketLeftBlock& b, int mantissa_bits, int ignored_bits, Rounding rounding,
                      uint8_t* special, uint32_t* lo, uint32_t* hi) {
  BucketLeftPacker packer(mantissa_bits, ignored_bits, rounding);
  const __m128i shift = _mm_cvtsi32_si128(packer.shift), index_shift = _mm_cvtsi32_si128(packer.index_shift);
  const __m512i index_mask = _mm512_set1_epi32(int(packer.index_mask));
  const __m512i bias = _mm512_set1_epi32(packer.nearest ? int(packer.bias) : 0);
  const __m512i lsb = _mm512_set1_epi32(packer.nearest ? 1 : 0);
  const __m512i exponent = _mm512_set1_epi32(0x7f800000), ff = _mm512_set1_epi32(0xff);
  const __m512i sign = _mm512_set1_epi32(int(kSignMask)), sign_exponent = _mm512_set1_epi32(int(0xff800000u));
  __m512i vlo = ff, vhi = _mm512_setzero_si512();
  pack_left_rows(b, packer, special, [&](const float* x, BucketLeft* out, int64_t n, bool* any_bad) {
    __mmask16 bad_any = 0;
    int64_t kk = 0;
    for (; kk + 16 <= n; kk += 16) {
      const __m512i u = _mm512_loadu_si512(x + kk);
      const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srl_epi32(u, shift), lsb)));
      const __m512i e = _mm512_and_si512(_mm512_srli_epi32(r, 23), ff);
      const __mmask16 zero = _mm512_testn_epi32_mask(u, exponent);
      const __mmask16 bad =
          _mm512_cmpeq_epi32_mask(_mm512_and_si512(u, exponent), exponent) | _mm512_cmpeq_epi32_mask(e, ff);
      const __mmask16 counts = __mmask16(~(zero | bad));
      bad_any |= bad;
      vlo = _mm512_mask_min_epu32(vlo, counts, vlo, e);
      vhi = _mm512_mask_max_epu32(vhi, counts, vhi, e);
      // (r & sign_exponent) | ((r >> index_shift) & index_mask); a zero keeps its sign only.
      const __m512i packed = _mm512_ternarylogic_epi32(_mm512_and_si512(r, sign_exponent),
                                                       _mm512_srl_epi32(r, index_shift), index_mask, 0xf8);
      _mm512_storeu_si512(out + kk, _mm512_mask_and_epi32(packed, zero, u, sign));
    }
    *any_bad = bad_any != 0;
    return kk;
  });
  packer.lo = std::min(packer.lo, uint32_t(_mm512_reduce_min_epu32(vlo)));
  packer.hi = std::max(packer.hi, uint32_t(_mm512_reduce_max_epu32(vhi)));
  *lo = std::min(*lo, packer.lo);
  *hi = std::max(*hi, packer.hi);
}

template <int V>
constexpr int tile_rows() {
  return V == 4 ? 6 : V == 3 ? 8 : V == 2 ? 12 : 16;
}

// Rows [r0, r0 + R) x columns [c0, c0 + 16V) over the K block; `last`
// masks the last vector's columns.
template <int R, int V, bool kFused>
inline void tile(const BucketPanel& p, int64_t r0, int64_t c0, __mmask16 last) {
  float* c[R];
  const BucketLeft* left[R];
  __m512 acc[R][V];
  for (int r = 0; r < R; ++r) {
    c[r] = p.c_rows[r0 + r] + c0;
    left[r] = p.a_rows[r0 + r];
    for (int q = 0; q < V - 1; ++q) acc[r][q] = _mm512_loadu_ps(c[r] + 16 * q);
    acc[r][V - 1] = _mm512_maskz_loadu_ps(last, c[r] + 16 * (V - 1));
  }
  const __m512i scale_mask = _mm512_set1_epi32(int(kBucketScaleMask));
  const int64_t ldt = p.ldt;
  const float* t = p.t + c0;
  for (int64_t kk = 0; kk < p.kc; ++kk, t += p.t_k_stride) {
    for (int r = 0; r < R; ++r) {
      const uint32_t packed = left[r][kk];
      const __m512 sa = _mm512_castsi512_ps(_mm512_and_si512(_mm512_set1_epi32(int(packed)), scale_mask));
      const float* row = t + int64_t(packed & 0xffffu) * ldt;
      for (int q = 0; q < V; ++q) {
        const __m512 tv = _mm512_load_ps(row + 16 * q);
        if (kFused)
          acc[r][q] = _mm512_fmadd_ps(sa, tv, acc[r][q]);
        else
          acc[r][q] = _mm512_add_ps(acc[r][q], _mm512_mul_ps(sa, tv));
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < V - 1; ++q) _mm512_storeu_ps(c[r] + 16 * q, acc[r][q]);
    _mm512_mask_storeu_ps(c[r] + 16 * (V - 1), last, acc[r][V - 1]);
  }
}

// Every row of the panel over columns [c0, c0 + width), 16(V - 1) < width <= 16V.
template <int V, bool kFused>
void column_strip(const BucketPanel& p, int64_t c0, int64_t width) {
  constexpr int R = tile_rows<V>();
  const __mmask16 last = __mmask16((1u << (width - kVectorCols * (V - 1))) - 1u);
  int64_t r0 = 0;
  for (; r0 + R <= p.rows; r0 += R) tile<R, V, kFused>(p, r0, c0, last);
  for (; r0 < p.rows; ++r0) tile<1, V, kFused>(p, r0, c0, last);
}

struct Strips {
  template <int V, bool kFused>
  static void run(const BucketPanel& p, int64_t c0, int64_t width) {
    column_strip<V, kFused>(p, c0, width);
  }
};

void panel_avx512(const BucketPanel& p) { bucket_panel<Strips>(p, kVectorCols); }

}  // namespace

const BucketKernels* bucket_kernels_avx512() {
  // Panel cost: see bucket_kernels_avx2() for the scale.
  static const BucketKernels* kernels = [] {
    const BucketKernels* avx2 = bucket_kernels_avx2();
    if (avx2 == nullptr) return static_cast<const BucketKernels*>(nullptr);
    static const BucketKernels k{pack_left_avx512, avx2->expand, panel_avx512, "bucket-avx512",
                                 kVectorCols,      kTileCols,    0.6,          0.5};
    return &k;
  }();
  return kernels;
}

}  // namespace cpu
}  // namespace amsim

#else  // built without AVX-512: no such kernels

namespace amsim {
namespace cpu {
const BucketKernels* bucket_kernels_avx512() { return nullptr; }
}  // namespace cpu
}  // namespace amsim

#endif
