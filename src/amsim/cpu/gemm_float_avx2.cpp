// The float GEMM's AVX2 kernels (gemm_float.h); this file alone is compiled
// with -mavx2 -mfma and runs only after has_avx2_fma().  No FMA is used:
// the multiply and the add stay separate (on Zen they issue on different
// pipes, so the pair costs about what a fused one does).
//
// Tile: 4 rows x 16 columns (8 ymm accumulators); per k two B loads, and
// per row one broadcast, two multiplies and two adds.
#include "amsim/cpu/gemm_float.h"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

#include "amsim/cpu/gemm_float_transform.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int kRows = 4;
constexpr int kCols = 16;

// 8 values at a time: the factor looked up by a gather from the 2^M-entry list.
template <bool kAffine>
bool transform_avx2_as(float* x, int64_t n, const OperandTransform& t) {
  const __m128i shift = _mm_cvtsi32_si128(t.shift);
  const __m256i mask = _mm256_set1_epi32(int(t.mask));
  const __m256i bias = _mm256_set1_epi32(t.nearest ? int((1u << (t.shift - 1)) - 1u) : 0);
  const __m256i lsb = _mm256_set1_epi32(t.nearest ? 1 : 0);
  const __m256i ff = _mm256_set1_epi32(0xff), none = _mm256_setzero_si256();
  const __m256i sign = _mm256_set1_epi32(int(kSignMask)), sign_exponent = _mm256_set1_epi32(int(0xff800000u));
  const int* factors = reinterpret_cast<const int*>(t.factors);
  const __m256i kept = _mm256_set1_epi32(int(t.mask << t.shift)), set_bits = _mm256_set1_epi32(int(t.set_bits));
  __m256i rounds_to_inf = none;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i e0 = _mm256_and_si256(_mm256_srli_epi32(u, 23), ff);
    const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srl_epi32(u, shift), lsb)));
    const __m256i e = _mm256_and_si256(_mm256_srli_epi32(r, 23), ff);
    __m256i factor;
    if (kAffine) {
      factor = _mm256_or_si256(_mm256_and_si256(r, kept), set_bits);
    } else {
      const __m256i index = _mm256_and_si256(_mm256_srl_epi32(r, shift), mask);
      factor = _mm256_i32gather_epi32(factors, index, 4);
    }
    const __m256i ordinary = _mm256_or_si256(_mm256_and_si256(r, sign_exponent), factor);
    const __m256i special = _mm256_cmpeq_epi32(e0, ff);
    const __m256i zero = _mm256_cmpeq_epi32(e0, none);
    rounds_to_inf = _mm256_or_si256(rounds_to_inf, _mm256_andnot_si256(special, _mm256_cmpeq_epi32(e, ff)));
    __m256i out = _mm256_blendv_epi8(ordinary, u, special);
    out = _mm256_blendv_epi8(out, _mm256_and_si256(u, sign), zero);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + i), out);
  }
  const bool tail = transform_scalar(x + i, n - i, t);
  return tail || !_mm256_testz_si256(rounds_to_inf, rounds_to_inf);
}

bool transform_avx2(float* x, int64_t n, const OperandTransform& t) {
  return t.affine ? transform_avx2_as<true>(x, n, t) : transform_avx2_as<false>(x, n, t);
}

void tile_avx2(const float* a, const float* b, int64_t kc, float* c, int64_t ldc, bool load_c) {
  __m256 c0[kRows], c1[kRows];
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) {
    c0[r] = load_c ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    c1[r] = load_c ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t kk = 0; kk < kc; ++kk) {
    const __m256 b0 = _mm256_load_ps(b + kk * kCols), b1 = _mm256_load_ps(b + kk * kCols + 8);
    const float* ak = a + kk * kRows;
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      const __m256 av = _mm256_broadcast_ss(ak + r);
      c0[r] = _mm256_add_ps(c0[r], _mm256_mul_ps(av, b0));
      c1[r] = _mm256_add_ps(c1[r], _mm256_mul_ps(av, b1));
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) {
    _mm256_storeu_ps(c + r * ldc, c0[r]);
    _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
  }
}

constexpr FloatGemmKernels kAvx2{"float-avx2", kRows, kCols, transform_avx2, tile_avx2};

}  // namespace

const FloatGemmKernels* float_kernels_avx2() { return &kAvx2; }

}  // namespace cpu
}  // namespace amsim

#else

namespace amsim {
namespace cpu {
const FloatGemmKernels* float_kernels_avx2() { return nullptr; }
}  // namespace cpu
}  // namespace amsim

#endif
