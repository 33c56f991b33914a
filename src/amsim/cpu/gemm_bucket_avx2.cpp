// The bucket GEMM's AVX2 + FMA kernels (gemm_bucket.h); this file alone is
// compiled with -mavx2 -mfma and runs only after has_avx2_fma().  It shares
// no inline code with baseline translation units (gemm_blocked.h, top).
//
// Expansion: 8 columns' table rows (contiguous over the selecting fraction)
// are loaded, scaled and transposed 8 x 8 into 8 T rows (the AVX-512 bucket
// kernels use this packing and expansion too: bucket_kernels_avx512).  Panel: register
// tiles of up to 32 columns (3 rows x 4 vectors, down to 12 rows x 1 vector
// for a narrow C); per row and k one offset, one broadcast scale and one
// multiply-add per vector with the T row as memory operand.
#include "amsim/cpu/gemm_bucket.h"
#include "amsim/cpu/gemm_bucket_pack.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <algorithm>

namespace amsim {
namespace cpu {

namespace {

// BucketLeftPacker::pack, 8 contiguous values at a time.
void pack_left_avx2(const BucketLeftBlock& b, int mantissa_bits, int ignored_bits, Rounding rounding, uint8_t* special,
                    uint32_t* lo, uint32_t* hi) {
  BucketLeftPacker packer(mantissa_bits, ignored_bits, rounding);
  const __m128i shift = _mm_cvtsi32_si128(packer.shift), index_shift = _mm_cvtsi32_si128(packer.index_shift);
  const __m256i index_mask = _mm256_set1_epi32(int(packer.index_mask));
  const __m256i bias = _mm256_set1_epi32(packer.nearest ? int(packer.bias) : 0);
  const __m256i lsb = _mm256_set1_epi32(packer.nearest ? 1 : 0);
  const __m256i ff = _mm256_set1_epi32(0xff), none = _mm256_setzero_si256();
  const __m256i sign = _mm256_set1_epi32(int(kSignMask)), sign_exponent = _mm256_set1_epi32(int(0xff800000u));
  __m256i vlo = ff, vhi = none;
  pack_left_rows(b, packer, special, [&](const float* x, BucketLeft* out, int64_t n, bool* any_bad) {
    __m256i vbad = none;
    int64_t kk = 0;
    for (; kk + 8 <= n; kk += 8) {
      const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + kk));
      const __m256i e0 = _mm256_and_si256(_mm256_srli_epi32(u, 23), ff);
      const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srl_epi32(u, shift), lsb)));
      const __m256i e = _mm256_and_si256(_mm256_srli_epi32(r, 23), ff);
      const __m256i zero = _mm256_cmpeq_epi32(e0, none);
      const __m256i bad = _mm256_or_si256(_mm256_cmpeq_epi32(e0, ff), _mm256_cmpeq_epi32(e, ff));
      const __m256i skip = _mm256_or_si256(zero, bad);
      vbad = _mm256_or_si256(vbad, bad);
      vlo = _mm256_min_epu32(vlo, _mm256_blendv_epi8(e, ff, skip));
      vhi = _mm256_max_epu32(vhi, _mm256_blendv_epi8(e, none, skip));
      const __m256i packed = _mm256_or_si256(_mm256_and_si256(r, sign_exponent),
                                             _mm256_and_si256(_mm256_srl_epi32(r, index_shift), index_mask));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + kk),
                          _mm256_blendv_epi8(packed, _mm256_and_si256(u, sign), zero));
    }
    *any_bad = !_mm256_testz_si256(vbad, vbad);
    return kk;
  });
  alignas(32) uint32_t l[8], h[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), vlo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(h), vhi);
  for (int q = 0; q < 8; ++q) {
    packer.lo = std::min(packer.lo, l[q]);
    packer.hi = std::max(packer.hi, h[q]);
  }
  *lo = std::min(*lo, packer.lo);
  *hi = std::max(*hi, packer.hi);
}

inline void transpose8(__m256& r0, __m256& r1, __m256& r2, __m256& r3, __m256& r4, __m256& r5, __m256& r6, __m256& r7) {
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r0 = _mm256_permute2f128_ps(u0, u4, 0x20);
  r1 = _mm256_permute2f128_ps(u1, u5, 0x20);
  r2 = _mm256_permute2f128_ps(u2, u6, 0x20);
  r3 = _mm256_permute2f128_ps(u3, u7, 0x20);
  r4 = _mm256_permute2f128_ps(u0, u4, 0x31);
  r5 = _mm256_permute2f128_ps(u1, u5, 0x31);
  r6 = _mm256_permute2f128_ps(u2, u6, 0x31);
  r7 = _mm256_permute2f128_ps(u3, u7, 0x31);
}

void expand_avx2(const BucketExpansion& e) {
  const int64_t side = int64_t{1} << e.selecting_bits;
  for (int64_t kk = 0; kk < e.kc; ++kk) {
    const uint16_t* index = e.index + kk * e.ld_in;
    const float* scale = e.scale + kk * e.ld_in;
    float* out = e.out + kk * side * e.ldt;
    int64_t j0 = 0;
    if (side >= 8) {
      for (; j0 < e.ncols; j0 += 8) {
        // Padding columns take row 0 with scale 0: +0 in T.
        const float* src[8];
        float sc[8];
        for (int q = 0; q < 8; ++q) {
          const bool valid = j0 + q < e.ncols;
          src[q] = e.table_t + (valid ? index[j0 + q] : 0) * side;
          sc[q] = valid ? scale[j0 + q] : 0.0f;
        }
        const __m256 s0 = _mm256_set1_ps(sc[0]), s1 = _mm256_set1_ps(sc[1]), s2 = _mm256_set1_ps(sc[2]),
                     s3 = _mm256_set1_ps(sc[3]), s4 = _mm256_set1_ps(sc[4]), s5 = _mm256_set1_ps(sc[5]),
                     s6 = _mm256_set1_ps(sc[6]), s7 = _mm256_set1_ps(sc[7]);
        for (int64_t s = 0; s < side; s += 8) {
          __m256 r0 = _mm256_mul_ps(s0, _mm256_loadu_ps(src[0] + s));
          __m256 r1 = _mm256_mul_ps(s1, _mm256_loadu_ps(src[1] + s));
          __m256 r2 = _mm256_mul_ps(s2, _mm256_loadu_ps(src[2] + s));
          __m256 r3 = _mm256_mul_ps(s3, _mm256_loadu_ps(src[3] + s));
          __m256 r4 = _mm256_mul_ps(s4, _mm256_loadu_ps(src[4] + s));
          __m256 r5 = _mm256_mul_ps(s5, _mm256_loadu_ps(src[5] + s));
          __m256 r6 = _mm256_mul_ps(s6, _mm256_loadu_ps(src[6] + s));
          __m256 r7 = _mm256_mul_ps(s7, _mm256_loadu_ps(src[7] + s));
          transpose8(r0, r1, r2, r3, r4, r5, r6, r7);
          float* o = out + s * e.ldt + j0;
          _mm256_store_ps(o, r0);
          _mm256_store_ps(o + e.ldt, r1);
          _mm256_store_ps(o + 2 * e.ldt, r2);
          _mm256_store_ps(o + 3 * e.ldt, r3);
          _mm256_store_ps(o + 4 * e.ldt, r4);
          _mm256_store_ps(o + 5 * e.ldt, r5);
          _mm256_store_ps(o + 6 * e.ldt, r6);
          _mm256_store_ps(o + 7 * e.ldt, r7);
        }
      }
    } else {
      for (int64_t s = 0; s < side; ++s) {
        float* row = out + s * e.ldt;
        for (int64_t j = 0; j < e.ncols; ++j) row[j] = scale[j] * e.table_t[index[j] * side + s];
      }
      j0 = e.ncols;
    }
    for (int64_t s = 0; s < side; ++s) std::fill(out + s * e.ldt + j0, out + (s + 1) * e.ldt, 0.0f);
  }
}

// A tile is R rows x V vectors of 8 columns, R x V <= 12 accumulators.  A
// narrow C (6 or 16 output channels) runs V = 1 or 2 with more rows, not a
// 32-column tile that is mostly padding.
template <int V>
constexpr int tile_rows() {
  return V == 4 ? 3 : V == 3 ? 4 : V == 2 ? 6 : 12;
}

// Rows [r0, r0 + R) x columns [c0, c0 + 8V) over the K block.  C comes from
// `c` (row pointers at column c0), or a padded copy for a column tail.
template <int R, int V, bool kFused>
inline void tile(const BucketPanel& p, int64_t r0, float* const* c) {
  __m256 acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < V; ++q) acc[r][q] = _mm256_loadu_ps(c[r] + 8 * q);
  const BucketLeft* left[R];
  for (int r = 0; r < R; ++r) left[r] = p.a_rows[r0 + r];
  const __m256 scale_mask = _mm256_castsi256_ps(_mm256_set1_epi32(int(kBucketScaleMask)));
  const int64_t ldt = p.ldt;
  const float* t = p.t;
  for (int64_t kk = 0; kk < p.kc; ++kk, t += p.t_k_stride) {
    for (int r = 0; r < R; ++r) {
      const uint32_t packed = left[r][kk];
      const __m256 sa = _mm256_and_ps(_mm256_castsi256_ps(_mm256_set1_epi32(int(packed))), scale_mask);
      const float* row = t + int64_t(packed & 0xffffu) * ldt;
      for (int q = 0; q < V; ++q) {
        const __m256 tv = _mm256_load_ps(row + 8 * q);
        if (kFused)
          acc[r][q] = _mm256_fmadd_ps(sa, tv, acc[r][q]);
        else
          acc[r][q] = _mm256_add_ps(acc[r][q], _mm256_mul_ps(sa, tv));
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < V; ++q) _mm256_storeu_ps(c[r] + 8 * q, acc[r][q]);
}

// The tile at (r0, c0) of a panel whose T starts at column c0; `width`
// (<= 8V) columns are valid.  A width short of 8V goes through a padded copy
// of C (T is padded with zeros to whole vectors, so the kernel reads no
// further than the T row's padding).
template <int R, int V, bool kFused>
void tile_at(const BucketPanel& at, int64_t r0, int64_t c0, int64_t width) {
  if (width == 8 * V) {
    float* c[R];
    for (int r = 0; r < R; ++r) c[r] = at.c_rows[r0 + r] + c0;
    tile<R, V, kFused>(at, r0, c);
    return;
  }
  alignas(32) float line[R][8 * V] = {};
  float* c[R];
  for (int r = 0; r < R; ++r) {
    std::copy(at.c_rows[r0 + r] + c0, at.c_rows[r0 + r] + c0 + width, line[r]);
    c[r] = line[r];
  }
  tile<R, V, kFused>(at, r0, c);
  for (int r = 0; r < R; ++r) std::copy(line[r], line[r] + width, at.c_rows[r0 + r] + c0);
}

// Every row of the panel over columns [c0, c0 + width), width <= 8V.
template <int V, bool kFused>
void column_strip(const BucketPanel& p, int64_t c0, int64_t width) {
  constexpr int R = tile_rows<V>();
  BucketPanel at = p;
  at.t = p.t + c0;
  int64_t r0 = 0;
  for (; r0 + R <= p.rows; r0 += R) tile_at<R, V, kFused>(at, r0, c0, width);
  for (; r0 < p.rows; ++r0) tile_at<1, V, kFused>(at, r0, c0, width);
}

constexpr int64_t kVectorCols = 8;
constexpr int64_t kTileCols = 4 * kVectorCols;

struct Strips {
  template <int V, bool kFused>
  static void run(const BucketPanel& p, int64_t c0, int64_t width) {
    column_strip<V, kFused>(p, c0, width);
  }
};

void panel_avx2(const BucketPanel& p) { bucket_panel<Strips>(p, kVectorCols); }

// Panel cost, measured on Zen 4 (one thread, 2560 x {8, 16, 32} x 400):
// 1.27, 1.56 and 2.54 ns per row x k, scaled to the 0.09 ns per column of a
// full tile that the driver's other constants were fitted with.
constexpr BucketKernels kAvx2{pack_left_avx2, expand_avx2, panel_avx2, "avx2", kVectorCols, kTileCols, 0.95, 0.48};

}  // namespace

const BucketKernels* bucket_kernels_avx2() { return &kAvx2; }

}  // namespace cpu
}  // namespace amsim

#else  // built without AVX2 + FMA: no such kernels

namespace amsim {
namespace cpu {
const BucketKernels* bucket_kernels_avx2() { return nullptr; }
}  // namespace cpu
}  // namespace amsim

#endif
