// Operand reduction (amsim.h, reduce_operand) of 16 floats at a time, for the
// AVX-512 translation units only; internal linkage on purpose (see
// avx512_tile.h).
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "amsim/amsim.h"

namespace amsim {
namespace cpu {
namespace {

// Operand reduction of 16 float bit patterns (valid for normal inputs): the
// biased exponent after rounding (255 when rounding carried past FLT_MAX) and
// the M-bit fraction.  Nearest-even adds half - 1 plus the kept lsb to the
// magnitude, so a carry runs into the exponent by itself.
struct Reduced16 {
  __m512i exponent, fraction, raw_exponent, sign;
};

Reduced16 reduce16(__m512i u, int mantissa_bits, Rounding rounding) {
  const int shift = 23 - mantissa_bits;
  const __m128i shift_count = _mm_cvtsi32_si128(shift);  // a run-time count: _mm512_srl_epi32
  const __m512i magnitude = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  __m512i rounded = magnitude;
  if (rounding == Rounding::kNearestEven) {
    const __m512i lsb = _mm512_and_si512(_mm512_srl_epi32(magnitude, shift_count), _mm512_set1_epi32(1));
    rounded = _mm512_add_epi32(_mm512_add_epi32(magnitude, _mm512_set1_epi32((1 << (shift - 1)) - 1)), lsb);
  }
  Reduced16 r;
  r.sign = _mm512_and_si512(u, _mm512_set1_epi32(int(0x80000000u)));
  r.raw_exponent = _mm512_srli_epi32(magnitude, 23);
  r.exponent = _mm512_srli_epi32(rounded, 23);  // NaN inputs may give 256: they never use it
  r.fraction = _mm512_and_si512(_mm512_srl_epi32(rounded, shift_count), _mm512_set1_epi32((1 << mantissa_bits) - 1));
  return r;
}

__mmask16 tail_mask(int64_t count) { return count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1u); }

}  // namespace
}  // namespace cpu
}  // namespace amsim
