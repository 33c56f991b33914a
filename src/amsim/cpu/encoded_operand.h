// Operands encoded once for the SIMD elementwise products (depthwise conv):
// one 32-bit word each, so that the product of an ordinary pair needs no
// operand reduction, only  s = word(a) + word(b):
//   bits  0..21  the table index (ia << M | ib: the left word holds ia << M,
//                the right word ib; disjoint bits, so the add is an OR),
//   bits 22..30  ea + eb (each reduced exponent 1..254, the sum <= 508),
//   bit  31      sign(a) ^ sign(b) (the add's carry out of bit 31 is lost).
// A zero or subnormal operand is its sign alone (exponent field 0: the
// kernels test each word's field for zero).  Inf, NaN and a finite value that
// rounding makes infinite are kEncodedSpecial: the kernels then take that
// vector's products from the raw floats (am_multiply's special cases).
// Needs M <= 11 (22 index bits), which every table has.
#pragma once

#include <cstdint>

#include "amsim/amsim.h"

namespace amsim {
namespace cpu {

constexpr uint32_t kEncodedSpecial = 0xffffffffu;
constexpr uint32_t kEncodedExponentField = 0x1ffu << 22;
constexpr uint32_t kEncodedIndexMask = (1u << 22) - 1u;

// left: the operand selects the table row (a), else the column (b).
inline uint32_t encode_operand(float x, int mantissa_bits, Rounding rounding, bool left) {
  const uint32_t u = float_bits(x);
  const uint32_t e = (u >> 23) & 0xffu;
  if (e == 0) return u & kSignMask;
  if (e == 0xffu) return kEncodedSpecial;
  const ReducedOperand r = reduce_operand(u, mantissa_bits, rounding);
  if (r.exponent == 0xffu) return kEncodedSpecial;
  return (u & kSignMask) | (r.exponent << 22) | (left ? r.fraction << mantissa_bits : r.fraction);
}

}  // namespace cpu
}  // namespace amsim
