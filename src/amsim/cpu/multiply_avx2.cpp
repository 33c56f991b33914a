// Elementwise AMSim products, 8 at a time with AVX2: the port of
// multiply_avx512.cpp's products16 (am_multiply() with its special cases as
// lane masks, the table entries gathered), and the encoded-operand form the
// depthwise conv uses.  Compiled with -mavx2; called only after a run-time
// check (conv_depthwise.cpp).
#include "amsim/cpu/multiply_simd.h"

#if defined(__AVX2__)
#include <immintrin.h>

#include "amsim/cpu/encoded_operand.h"

namespace amsim {
namespace cpu {

namespace {

__m256i set1(uint32_t v) { return _mm256_set1_epi32(int(v)); }

// All-ones lanes for the first count (< 8 past the end) of 8.
__m256i lane_mask(int64_t count) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count >= 8 ? 8 : count)), lane);
}

__m256i select(__m256i mask, __m256i if_set, __m256i otherwise) { return _mm256_blendv_epi8(otherwise, if_set, mask); }

// reduce_operand() of 8 float bit patterns (avx512_reduce.h's reduce16).
struct Reduced8 {
  __m256i exponent, fraction, raw_exponent, sign;
};

Reduced8 reduce8(__m256i u, int mantissa_bits, Rounding rounding) {
  const int shift = 23 - mantissa_bits;
  const __m128i shift_count = _mm_cvtsi32_si128(shift);
  const __m256i magnitude = _mm256_and_si256(u, set1(0x7fffffffu));
  __m256i rounded = magnitude;
  if (rounding == Rounding::kNearestEven) {
    const __m256i lsb = _mm256_and_si256(_mm256_srl_epi32(magnitude, shift_count), set1(1));
    rounded = _mm256_add_epi32(_mm256_add_epi32(magnitude, set1((1u << (shift - 1)) - 1u)), lsb);
  }
  Reduced8 r;
  r.sign = _mm256_and_si256(u, set1(kSignMask));
  r.raw_exponent = _mm256_srli_epi32(magnitude, 23);
  r.exponent = _mm256_srli_epi32(rounded, 23);  // NaN inputs may give 256: they never use it
  r.fraction = _mm256_and_si256(_mm256_srl_epi32(rounded, shift_count), set1((1u << mantissa_bits) - 1u));
  return r;
}

// The entries at index (gathered where `gather` is set, else 0): each lane
// loads the aligned pair holding its entry and shifts the wanted one down,
// so no load passes the table's end.
__m256i gather_entries(const Table& table, __m256i index, __m256i gather) {
  const int* entries = reinterpret_cast<const int*>(table.entries);
  const __m256i one = set1(1);
  const __m256i pair =
      _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), entries, _mm256_andnot_si256(one, index), gather, 2);
  return _mm256_and_si256(_mm256_srlv_epi32(pair, _mm256_slli_epi32(_mm256_and_si256(index, one), 4)), set1(0xffff));
}

// compose_product() from e = ea + eb - 127 + carry: inf at e >= 255, signed
// zero at e <= 0 or where `zero` is set.
__m256i compose(__m256i sign, __m256i e, __m256i entry, __m256i zero) {
  __m256i out = _mm256_or_si256(
      sign, _mm256_or_si256(_mm256_slli_epi32(e, 23), _mm256_slli_epi32(_mm256_and_si256(entry, set1(0x7fff)), 8)));
  out = select(_mm256_cmpgt_epi32(e, set1(254)), _mm256_or_si256(sign, set1(kInfBits)), out);
  return select(_mm256_or_si256(_mm256_cmpgt_epi32(set1(1), e), zero), sign, out);
}

// am_multiply() of the 8 lanes of `lanes` (the others are loaded as +0).
__m256i products8(const Table& table, const float* a, const float* b, __m256i lanes) {
  const int mbits = table.mantissa_bits;
  const __m256i zero = _mm256_setzero_si256(), exp_max = set1(255), inf = set1(kInfBits);
  const __m256i ua = _mm256_maskload_epi32(reinterpret_cast<const int*>(a), lanes);
  const __m256i ub = _mm256_maskload_epi32(reinterpret_cast<const int*>(b), lanes);
  const Reduced8 ra = reduce8(ua, mbits, table.rounding), rb = reduce8(ub, mbits, table.rounding);
  const __m256i sign = _mm256_xor_si256(ra.sign, rb.sign);
  // Magnitudes are below 2^31: signed compares serve.
  const __m256i nan_lanes = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_and_si256(ua, set1(0x7fffffffu)), inf),
                                            _mm256_cmpgt_epi32(_mm256_and_si256(ub, set1(0x7fffffffu)), inf));
  const __m256i any_zero =
      _mm256_or_si256(_mm256_cmpeq_epi32(ra.raw_exponent, zero), _mm256_cmpeq_epi32(rb.raw_exponent, zero));
  const __m256i any_inf =
      _mm256_or_si256(_mm256_cmpeq_epi32(ra.raw_exponent, exp_max), _mm256_cmpeq_epi32(rb.raw_exponent, exp_max));
  const __m256i rounded_inf =
      _mm256_or_si256(_mm256_cmpeq_epi32(ra.exponent, exp_max), _mm256_cmpeq_epi32(rb.exponent, exp_max));
  const __m256i unusual = _mm256_or_si256(_mm256_or_si256(any_inf, any_zero), _mm256_or_si256(rounded_inf, nan_lanes));
  const __m256i index = _mm256_or_si256(_mm256_sll_epi32(ra.fraction, _mm_cvtsi32_si128(mbits)), rb.fraction);
  const __m256i entry = gather_entries(table, index, _mm256_andnot_si256(unusual, lanes));
  const __m256i e = _mm256_add_epi32(_mm256_add_epi32(ra.exponent, rb.exponent),
                                     _mm256_sub_epi32(_mm256_srli_epi32(entry, 15), set1(127)));
  __m256i out = compose(sign, e, entry, zero);
  // The special cases, in am_multiply()'s order of precedence (last write wins).
  out = select(rounded_inf, _mm256_or_si256(sign, inf), out);
  out = select(any_zero, sign, out);
  out = select(any_inf, _mm256_or_si256(sign, inf), out);
  return select(_mm256_or_si256(_mm256_and_si256(any_inf, any_zero), nan_lanes), set1(kQuietNaNBits), out);
}

// The products of 8 ordinary or zero lanes from their encoded words.
__m256i encoded_products8(const Table& table, __m256i wa, __m256i wb) {
  const __m256i zero = _mm256_setzero_si256(), field = set1(kEncodedExponentField);
  const __m256i any_zero = _mm256_or_si256(_mm256_cmpeq_epi32(_mm256_and_si256(wa, field), zero),
                                           _mm256_cmpeq_epi32(_mm256_and_si256(wb, field), zero));
  const __m256i s = _mm256_add_epi32(wa, wb);
  const __m256i entry =
      gather_entries(table, _mm256_and_si256(s, set1(kEncodedIndexMask)), _mm256_xor_si256(any_zero, set1(~0u)));
  const __m256i e = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(s, 22), set1(0x1ff)),
                                     _mm256_sub_epi32(_mm256_srli_epi32(entry, 15), set1(127)));
  return compose(_mm256_and_si256(s, set1(kSignMask)), e, entry, any_zero);
}

void add_to(float* sum, __m256i lanes, __m256i product) {
  const __m256 s = _mm256_maskload_ps(sum, lanes);
  _mm256_maskstore_ps(sum, lanes, _mm256_add_ps(s, _mm256_castsi256_ps(product)));
}

}  // namespace

void multiply_add_avx2(const Table& table, const float* a, const float* b, float* sum, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i lanes = lane_mask(n - i);
    add_to(sum + i, lanes, products8(table, a + i, b + i, lanes));
  }
}

void encode_operands_avx2(const Table& table, const float* x, uint32_t* words, int64_t n, bool left) {
  const int mbits = table.mantissa_bits;
  const __m256i exp_max = set1(255), zero = _mm256_setzero_si256();
  const __m128i fraction_shift = _mm_cvtsi32_si128(left ? mbits : 0);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i lanes = lane_mask(n - i);
    const Reduced8 r =
        reduce8(_mm256_maskload_epi32(reinterpret_cast<const int*>(x + i), lanes), mbits, table.rounding);
    __m256i word = _mm256_or_si256(_mm256_or_si256(r.sign, _mm256_slli_epi32(r.exponent, 22)),
                                   _mm256_sll_epi32(r.fraction, fraction_shift));
    word = select(_mm256_cmpeq_epi32(r.raw_exponent, zero), r.sign, word);
    const __m256i special =
        _mm256_or_si256(_mm256_cmpeq_epi32(r.raw_exponent, exp_max), _mm256_cmpeq_epi32(r.exponent, exp_max));
    word = select(special, set1(kEncodedSpecial), word);
    _mm256_maskstore_epi32(reinterpret_cast<int*>(words + i), lanes, word);
  }
}

void multiply_add_encoded_avx2(const Table& table, const float* a, const uint32_t* wa, const float* b,
                               const uint32_t* wb, float* sum, int64_t n) {
  const __m256i special = set1(kEncodedSpecial);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i lanes = lane_mask(n - i);
    // Lanes past n load as +0 words: zero products, never stored.
    const __m256i ua = _mm256_maskload_epi32(reinterpret_cast<const int*>(wa + i), lanes);
    const __m256i ub = _mm256_maskload_epi32(reinterpret_cast<const int*>(wb + i), lanes);
    const __m256i unusual = _mm256_or_si256(_mm256_cmpeq_epi32(ua, special), _mm256_cmpeq_epi32(ub, special));
    const __m256i p = __builtin_expect(!_mm256_testz_si256(unusual, unusual), 0) ? products8(table, a + i, b + i, lanes)
                                                                                 : encoded_products8(table, ua, ub);
    add_to(sum + i, lanes, p);
  }
}

}  // namespace cpu
}  // namespace amsim
#else  // built without AVX2 flags: never selected (conv_depthwise.cpp), kept for the linker
namespace amsim {
namespace cpu {
void multiply_add_avx2(const Table&, const float*, const float*, float*, int64_t) {}
void multiply_add_encoded_avx2(const Table&, const float*, const uint32_t*, const float*, const uint32_t*, float*,
                               int64_t) {}
void encode_operands_avx2(const Table&, const float*, uint32_t*, int64_t, bool) {}
}  // namespace cpu
}  // namespace amsim
#endif
