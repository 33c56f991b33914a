// The float GEMM's AVX-512F kernels (gemm_float.h); this file alone is
// compiled with -mavx512f and runs only after has_avx512_bw().
//
// Tile: 8 rows x 32 columns (16 zmm accumulators); per k two B loads, and
// per row one broadcast, two multiplies and two separate adds.
#include "amsim/cpu/gemm_float.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include "amsim/cpu/gemm_float_transform.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int kRows = 8;
constexpr int kCols = 32;

// 16 values at a time: the factor looked up by a gather from the 2^M-entry list.
template <bool kAffine>
bool transform_avx512_as(float* x, int64_t n, const OperandTransform& t) {
  const __m128i shift = _mm_cvtsi32_si128(t.shift);
  const __m512i mask = _mm512_set1_epi32(int(t.mask));
  const __m512i bias = _mm512_set1_epi32(t.nearest ? int((1u << (t.shift - 1)) - 1u) : 0);
  const __m512i lsb = _mm512_set1_epi32(t.nearest ? 1 : 0);
  const __m512i ff = _mm512_set1_epi32(0xff);
  const __m512i sign = _mm512_set1_epi32(int(kSignMask)), sign_exponent = _mm512_set1_epi32(int(0xff800000u));
  const __m512i kept = _mm512_set1_epi32(int(t.mask << t.shift)), set_bits = _mm512_set1_epi32(int(t.set_bits));
  __mmask16 rounds_to_inf = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_loadu_si512(x + i);
    const __m512i e0 = _mm512_and_si512(_mm512_srli_epi32(u, 23), ff);
    const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srl_epi32(u, shift), lsb)));
    const __m512i e = _mm512_and_si512(_mm512_srli_epi32(r, 23), ff);
    __m512i factor;
    if (kAffine) {
      factor = _mm512_or_si512(_mm512_and_si512(r, kept), set_bits);
    } else {
      const __m512i index = _mm512_and_si512(_mm512_srl_epi32(r, shift), mask);
      factor = _mm512_i32gather_epi32(index, t.factors, 4);
    }
    const __m512i ordinary = _mm512_or_si512(_mm512_and_si512(r, sign_exponent), factor);
    const __mmask16 special = _mm512_cmpeq_epi32_mask(e0, ff);
    const __mmask16 zero = _mm512_cmpeq_epi32_mask(e0, _mm512_setzero_si512());
    rounds_to_inf |= _mm512_mask_cmpeq_epi32_mask(__mmask16(~special), e, ff);
    __m512i out = _mm512_mask_blend_epi32(special, ordinary, u);
    out = _mm512_mask_blend_epi32(zero, out, _mm512_and_si512(u, sign));
    _mm512_storeu_si512(x + i, out);
  }
  const bool tail = transform_scalar(x + i, n - i, t);
  return tail || rounds_to_inf != 0;
}

bool transform_avx512(float* x, int64_t n, const OperandTransform& t) {
  return t.affine ? transform_avx512_as<true>(x, n, t) : transform_avx512_as<false>(x, n, t);
}

void tile_avx512(const float* a, const float* b, int64_t kc, float* c, int64_t ldc, bool load_c) {
  __m512 c0[kRows], c1[kRows];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
    c0[r] = load_c ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    c1[r] = load_c ? _mm512_loadu_ps(c + r * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t kk = 0; kk < kc; ++kk) {
    const __m512 b0 = _mm512_load_ps(b + kk * kCols), b1 = _mm512_load_ps(b + kk * kCols + 16);
    const float* ak = a + kk * kRows;
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m512 av = _mm512_set1_ps(ak[r]);
      c0[r] = _mm512_add_ps(c0[r], _mm512_mul_ps(av, b0));
      c1[r] = _mm512_add_ps(c1[r], _mm512_mul_ps(av, b1));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
    _mm512_storeu_ps(c + r * ldc, c0[r]);
    _mm512_storeu_ps(c + r * ldc + 16, c1[r]);
  }
}

constexpr FloatGemmKernels kAvx512{"float-avx512", kRows, kCols, transform_avx512, tile_avx512};

}  // namespace

const FloatGemmKernels* float_kernels_avx512() { return &kAvx512; }

}  // namespace cpu
}  // namespace amsim

#else

namespace amsim {
namespace cpu {
const FloatGemmKernels* float_kernels_avx512() { return nullptr; }
}  // namespace cpu
}  // namespace amsim

#endif
