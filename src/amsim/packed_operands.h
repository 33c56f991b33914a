// Operands decoded once per GEMM so the inner loops only look up and scale.
//
// A product a (x) b is composed as  t(entry) * scale_a * scale_b  where
//   t(entry) = float with bits 0x3F000000 | entry << 8
//            = 2^(carry - 1) * 1.fraction   (the entry's carry lands in the
//              exponent's lowest bit),
//   scale_a  = sign(a) * 2^(ea - 126)        (exact for 1 <= ea <= 253),
//   scale_b  = sign(b) * 2^(eb - 127),  +-0 for zero/subnormal b, +-inf for
//              infinite b (incl. nearest-even rounding past FLT_MAX), NaN for NaN.
// With flush-to-zero on, the two multiplies give exactly compose_product():
// the first is exact, the second rounds only on overflow (-> inf) and
// underflow (-> signed zero).  A zero or subnormal left operand gets scale
// +-0, which gives signed zeros and NaN against inf/NaN like am_multiply().
// A left operand with ea >= 254 (|a| >= 2^127, inf, NaN) is "special" and its
// products are taken from am_multiply() directly.  So is a zero left operand
// against a finite b that nearest-even rounding makes infinite (see
// rounds_to_infinity): the contract wants a signed zero there, while
// 0 * inf would give NaN.
#pragma once

#include <cstdint>

#include "amsim/amsim.h"

namespace amsim {

constexpr uint32_t kPresetExponentBits = 0x3F000000u;

AMSIM_HD float entry_as_float(uint32_t entry) { return bits_float(kPresetExponentBits | (entry << 8)); }

// Right operand: the table column index and the scale.
struct PackedRight {
  uint32_t index;
  float scale;
};

AMSIM_HD PackedRight pack_right(float b, int mantissa_bits, Rounding rounding) {
  const uint32_t ub = float_bits(b);
  const uint32_t sign = ub & kSignMask;
  const uint32_t eb = (ub >> 23) & 0xffu;
  if (eb == 0) return {0u, bits_float(sign)};
  if (eb == 0xffu) return {0u, (ub & 0x7fffffu) ? bits_float(kQuietNaNBits) : b};
  const ReducedOperand r = reduce_operand(ub, mantissa_bits, rounding);
  if (r.exponent == 0xffu) return {0u, bits_float(sign | kInfBits)};
  return {r.fraction, bits_float(sign | (r.exponent << 23))};
}

// True when b is finite but its reduced operand is infinite (nearest-even
// rounding past FLT_MAX): its scale is +-inf, which is wrong against a zero
// left operand.
AMSIM_HD bool rounds_to_infinity(float b, int mantissa_bits, Rounding rounding) {
  const uint32_t ub = float_bits(b);
  const uint32_t eb = (ub >> 23) & 0xffu;
  return eb != 0 && eb != 0xffu && reduce_operand(ub, mantissa_bits, rounding).exponent == 0xffu;
}

// Zero and subnormal operands count as zero.
AMSIM_HD bool is_zero_operand(float x) { return ((float_bits(x) >> 23) & 0xffu) == 0; }

// Left operand: offset of its table row and its scale; special = true when
// the product must come from am_multiply().
struct PackedLeft {
  uint32_t row_offset;
  float scale;
  bool special;
};

AMSIM_HD PackedLeft pack_left(float a, int mantissa_bits, Rounding rounding) {
  const uint32_t ua = float_bits(a);
  const uint32_t ea = (ua >> 23) & 0xffu;
  if (ea == 0) return {0u, bits_float(ua & kSignMask), false};  // zero: t * (+-0) * scale_b is right
  if (ea >= 254) return {0u, 0.0f, true};
  const ReducedOperand r = reduce_operand(ua, mantissa_bits, rounding);
  if (r.exponent >= 254) return {0u, 0.0f, true};
  // sign(a) * 2^(ea - 126): biased exponent ea + 1.
  return {r.fraction << mantissa_bits, bits_float((ua & kSignMask) | ((r.exponent + 1u) << 23)), false};
}

}  // namespace amsim
