// Elementwise AMSim products, 16 at a time: am_multiply() (amsim.h) with its
// special cases as lane masks and the table entries gathered.  Compiled with
// -mavx512f -mavx512bw; called only after a run-time check.
#include "amsim/cpu/multiply_simd.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include "amsim/cpu/avx512_reduce.h"
#include "amsim/cpu/encoded_operand.h"

namespace amsim {
namespace cpu {

namespace {

// am_multiply() of 16 lanes (lanes outside `lanes` are loaded as +0).
__m512 products16(const Table& table, const float* a, const float* b, __mmask16 lanes) {
  const int mbits = table.mantissa_bits;
  const int* entries = reinterpret_cast<const int*>(table.entries);
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), exp_max = _mm512_set1_epi32(255);
  const __m512i inf = _mm512_set1_epi32(int(kInfBits)), nan = _mm512_set1_epi32(int(kQuietNaNBits));
  const __m512i magnitude_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i ua = _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, a));
  const __m512i ub = _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, b));
  const Reduced16 ra = reduce16(ua, mbits, table.rounding), rb = reduce16(ub, mbits, table.rounding);
  const __m512i sign = _mm512_xor_si512(ra.sign, rb.sign);
  const __mmask16 a_nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(ua, magnitude_mask), inf);
  const __mmask16 b_nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(ub, magnitude_mask), inf);
  const __mmask16 a_zero = _mm512_cmpeq_epi32_mask(ra.raw_exponent, zero);
  const __mmask16 b_zero = _mm512_cmpeq_epi32_mask(rb.raw_exponent, zero);
  const __mmask16 any_inf =
      _mm512_cmpeq_epi32_mask(ra.raw_exponent, exp_max) | _mm512_cmpeq_epi32_mask(rb.raw_exponent, exp_max);
  const __mmask16 any_zero = a_zero | b_zero;
  const __mmask16 rounded_inf =
      _mm512_cmpeq_epi32_mask(ra.exponent, exp_max) | _mm512_cmpeq_epi32_mask(rb.exponent, exp_max);
  const __mmask16 ordinary = __mmask16(lanes & ~(any_inf | any_zero | rounded_inf | a_nan | b_nan));
  // Entry (ia << M | ib): gather the aligned pair of entries, shift the wanted one down.
  const __m512i index = _mm512_or_si512(_mm512_slli_epi32(ra.fraction, unsigned(mbits)), rb.fraction);
  const __m512i pair = _mm512_mask_i32gather_epi32(zero, ordinary, _mm512_andnot_si512(one, index), entries, 2);
  const __m512i entry = _mm512_and_si512(_mm512_srlv_epi32(pair, _mm512_slli_epi32(_mm512_and_si512(index, one), 4)),
                                         _mm512_set1_epi32(0xffff));
  // compose_product(): e = ea + eb - 127 + carry; inf at e >= 255, signed zero at e <= 0.
  const __m512i e = _mm512_add_epi32(_mm512_add_epi32(ra.exponent, rb.exponent),
                                     _mm512_sub_epi32(_mm512_srli_epi32(entry, 15), _mm512_set1_epi32(127)));
  __m512i out =
      _mm512_or_si512(sign, _mm512_or_si512(_mm512_slli_epi32(e, 23),
                                            _mm512_slli_epi32(_mm512_and_si512(entry, _mm512_set1_epi32(0x7fff)), 8)));
  out = _mm512_mask_mov_epi32(out, _mm512_cmpge_epi32_mask(e, exp_max), _mm512_or_si512(sign, inf));
  out = _mm512_mask_mov_epi32(out, _mm512_cmple_epi32_mask(e, zero), sign);
  // The special cases, in am_multiply()'s order of precedence (last write wins).
  out = _mm512_mask_mov_epi32(out, rounded_inf, _mm512_or_si512(sign, inf));
  out = _mm512_mask_mov_epi32(out, any_zero, sign);
  out = _mm512_mask_mov_epi32(out, any_inf, _mm512_or_si512(sign, inf));
  out = _mm512_mask_mov_epi32(out, __mmask16((any_inf & any_zero) | a_nan | b_nan), nan);
  return _mm512_castsi512_ps(out);
}

// The products of 16 ordinary or zero lanes from their encoded words
// (encoded_operand.h); compose_product() as in products16.
__m512 encoded_products16(const Table& table, __m512i wa, __m512i wb) {
  const int* entries = reinterpret_cast<const int*>(table.entries);
  const __m512i one = _mm512_set1_epi32(1), exponent_field = _mm512_set1_epi32(int(kEncodedExponentField));
  const __mmask16 any_zero = _mm512_testn_epi32_mask(wa, exponent_field) | _mm512_testn_epi32_mask(wb, exponent_field);
  const __m512i s = _mm512_add_epi32(wa, wb);
  const __m512i sign = _mm512_and_si512(s, _mm512_set1_epi32(int(kSignMask)));
  const __m512i index = _mm512_and_si512(s, _mm512_set1_epi32(int(kEncodedIndexMask)));
  const __m512i pair = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), __mmask16(~any_zero),
                                                   _mm512_andnot_si512(one, index), entries, 2);
  const __m512i entry = _mm512_and_si512(_mm512_srlv_epi32(pair, _mm512_slli_epi32(_mm512_and_si512(index, one), 4)),
                                         _mm512_set1_epi32(0xffff));
  const __m512i e = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(s, 22), _mm512_set1_epi32(0x1ff)),
                                     _mm512_sub_epi32(_mm512_srli_epi32(entry, 15), _mm512_set1_epi32(127)));
  __m512i out =
      _mm512_or_si512(sign, _mm512_or_si512(_mm512_slli_epi32(e, 23),
                                            _mm512_slli_epi32(_mm512_and_si512(entry, _mm512_set1_epi32(0x7fff)), 8)));
  out = _mm512_mask_mov_epi32(out, _mm512_cmpge_epi32_mask(e, _mm512_set1_epi32(255)),
                              _mm512_or_si512(sign, _mm512_set1_epi32(int(kInfBits))));
  out = _mm512_mask_mov_epi32(out, __mmask16(_mm512_cmple_epi32_mask(e, _mm512_setzero_si512()) | any_zero), sign);
  return _mm512_castsi512_ps(out);
}

}  // namespace

void multiply_avx512(const Table& table, const float* a, const float* b, float* c, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = tail_mask(n - i);
    _mm512_mask_storeu_ps(c + i, lanes, products16(table, a + i, b + i, lanes));
  }
}

void multiply_add_avx512(const Table& table, const float* a, const float* b, float* sum, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = tail_mask(n - i);
    const __m512 s = _mm512_maskz_loadu_ps(lanes, sum + i);
    _mm512_mask_storeu_ps(sum + i, lanes, _mm512_add_ps(s, products16(table, a + i, b + i, lanes)));
  }
}

void encode_operands_avx512(const Table& table, const float* x, uint32_t* words, int64_t n, bool left) {
  const int mbits = table.mantissa_bits;
  const __m512i exp_max = _mm512_set1_epi32(255), zero = _mm512_setzero_si512();
  const __m128i fraction_shift = _mm_cvtsi32_si128(left ? mbits : 0);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = tail_mask(n - i);
    const Reduced16 r = reduce16(_mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, x + i)), mbits, table.rounding);
    __m512i word = _mm512_or_si512(_mm512_or_si512(r.sign, _mm512_slli_epi32(r.exponent, 22)),
                                   _mm512_sll_epi32(r.fraction, fraction_shift));
    word = _mm512_mask_mov_epi32(word, _mm512_cmpeq_epi32_mask(r.raw_exponent, zero), r.sign);
    const __mmask16 special =
        _mm512_cmpeq_epi32_mask(r.raw_exponent, exp_max) | _mm512_cmpeq_epi32_mask(r.exponent, exp_max);
    word = _mm512_mask_mov_epi32(word, special, _mm512_set1_epi32(int(kEncodedSpecial)));
    _mm512_mask_storeu_epi32(words + i, lanes, word);
  }
}

void multiply_add_encoded_avx512(const Table& table, const float* a, const uint32_t* wa, const float* b,
                                 const uint32_t* wb, float* sum, int64_t n) {
  const __m512i special = _mm512_set1_epi32(int(kEncodedSpecial));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 lanes = tail_mask(n - i);
    // Lanes past n load as +0 words: zero products, never stored.
    const __m512i ua = _mm512_maskz_loadu_epi32(lanes, wa + i), ub = _mm512_maskz_loadu_epi32(lanes, wb + i);
    const __m512 p = __builtin_expect(_mm512_cmpeq_epi32_mask(ua, special) | _mm512_cmpeq_epi32_mask(ub, special), 0)
                         ? products16(table, a + i, b + i, lanes)
                         : encoded_products16(table, ua, ub);
    const __m512 s = _mm512_maskz_loadu_ps(lanes, sum + i);
    _mm512_mask_storeu_ps(sum + i, lanes, _mm512_add_ps(s, p));
  }
}

}  // namespace cpu
}  // namespace amsim
#else  // built without AVX-512 flags: never selected (cpu_features.h), kept for the linker
namespace amsim {
namespace cpu {
void multiply_avx512(const Table&, const float*, const float*, float*, int64_t) {}
void multiply_add_avx512(const Table&, const float*, const float*, float*, int64_t) {}
void multiply_add_encoded_avx512(const Table&, const float*, const uint32_t*, const float*, const uint32_t*, float*,
                                 int64_t) {}
void encode_operands_avx512(const Table&, const float*, uint32_t*, int64_t, bool) {}
}  // namespace cpu
}  // namespace amsim
#endif
