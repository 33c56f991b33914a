// Operands as the CUDA kernels stage them, and the one product formula the
// hot loops use.  Everything is built on amsim/amsim.h and
// amsim/packed_operands.h (pack_left / pack_right): no second copy of the
// arithmetic, only a different way to apply pack_left's scale.
//
// packed_operands.h composes a product as (t(entry) * scale_a) * scale_b with
// t(entry) = 2^(carry - 1) * 1.fraction and scale_a = sign(a) * 2^(ea - 126).
// The first multiply is exact (its result is sign * 2^(ea + carry - 127) *
// 1.fraction, a normal float because 1 <= ea <= 253), so it can be done as an
// integer add on the bits:  bits(t * scale_a) = (entry << 8) + (sign | ea << 23)
// (the entry's carry bit lands on the exponent's lowest bit; ea + carry <= 254
// never reaches the sign bit).  With the table in shared memory that is one
// LEA instead of a conversion and a multiply.  A zero (or subnormal) left
// operand points at an all-zero row appended to the table, so its t * scale_a
// is a signed zero; an infinite or NaN left operand points there too with the
// bits of +-inf / NaN, which then multiply by scale_b exactly like the
// contract's specials.  The second multiply, by scale_b, rounds only on
// overflow (-> inf) and underflow (-> signed zero under flush-to-zero), as in
// the CPU kernels.
//
// Left operands too large for that (|a| >= 2^127, or rounding up to it) are
// "special": their products come from am_multiply() itself.  So are right
// operands that round up to infinity (nearest rounding near FLT_MAX): against
// a zero left operand the contract gives a signed zero, not inf * 0 = NaN.
#pragma once

#include <cmath>
#include <cstdint>

#include "amsim/amsim.h"
#include "amsim/packed_operands.h"
#include "cuda/hd.cuh"

namespace amsim {
namespace cuda {

// Rounded to nearest, flushed to zero, and never contracted into an FMA
// (ptxas does not fuse mul.rn/add.rn): the contract's separate add.  The host
// versions (for tests/cuda/host_emulation.cu) model the instructions for the
// operands the kernels feed them, which are never subnormal.
AMSIM_HD float mul_rn_ftz(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("mul.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  const double exact = double{a} * double{b};  // exact: 24 + 24 bits
  if (exact != 0.0 && std::fabs(exact) < 0x1p-126) return std::copysign(0.0f, static_cast<float>(exact));
  return static_cast<float>(exact);
#endif
}
AMSIM_HD float add_rn_ftz(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("add.rn.ftz.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return add_ftz(a, b);
#endif
}

// Markers of operands whose products go through am_multiply().
constexpr uint32_t kSpecialRow = 0xffffffffu;
constexpr uint32_t kSpecialCol = 0xffffffffu;

// A left operand: x = start of its table row, y = bits to combine with the
// entry.  Shared table: x is a byte offset (the zero row's for zero, inf and
// NaN operands), y = sign | ea << 23 (or the bits of +-0, +-inf, NaN).
// Global table: x is an entry offset, y = bits of pack_left's scale_a
// (inf and NaN are special there).  Special: x = kSpecialRow, y = bits of a.
template <bool kSharedTable>
AMSIM_HD uint2 stage_left(float a, int mantissa_bits, Rounding rounding, uint32_t zero_row_bytes) {
  const PackedLeft p = pack_left(a, mantissa_bits, rounding);
  const uint32_t ua = float_bits(a);
  if (p.special) {
    if (kSharedTable && ((ua >> 23) & 0xffu) == 0xffu)
      return make_uint2(zero_row_bytes, (ua & 0x7fffffu) ? kQuietNaNBits : ua);
    return make_uint2(kSpecialRow, ua);
  }
  const uint32_t scale = float_bits(p.scale);
  if (!kSharedTable) return make_uint2(p.row_offset, scale);
  if ((scale & kInfBits) == 0) return make_uint2(zero_row_bytes, scale);  // +-0: zero row
  return make_uint2(p.row_offset * 2u, scale - (1u << 23));  // sign | ea << 23
}

// A right operand: col = its table column (byte offset with a shared table,
// entry offset with a global one), scale = pack_right's scale_b.  Special
// (finite, rounding up to inf): col = kSpecialCol, scale = b.
struct StagedRight {
  uint32_t col;
  float scale;
};

template <bool kSharedTable>
AMSIM_HD StagedRight stage_right(float b, int mantissa_bits, Rounding rounding) {
  const PackedRight p = pack_right(b, mantissa_bits, rounding);
  const uint32_t ub = float_bits(b);
  if ((float_bits(p.scale) & ~kSignMask) == kInfBits && (ub & kInfBits) != kInfBits) return {kSpecialCol, b};
  return {kSharedTable ? p.index * 2u : p.index, p.scale};
}

// The product of a non-special staged left operand and a staged right one.
template <bool kSharedTable>
AMSIM_HD float staged_product(const uint16_t* table, uint2 a, uint32_t col, float scale_b) {
  if constexpr (kSharedTable) {
    const uint32_t entry = *reinterpret_cast<const uint16_t*>(reinterpret_cast<const char*>(table) + (a.x + col));
    return mul_rn_ftz(bits_float((entry << 8) + a.y), scale_b);
  } else {
    const uint32_t entry = load_readonly(table + (a.x + col));
    return mul_rn_ftz(mul_rn_ftz(entry_as_float(entry), bits_float(a.y)), scale_b);
  }
}

// The operands back as floats that am_multiply() reduces to the same exponent
// and fraction (the bits below the reduced fraction are 0, so neither rounding
// moves them); zero / inf / NaN come back as themselves, specials as stored.
template <bool kSharedTable>
AMSIM_HD float unstage_left(uint2 a, int mantissa_bits) {
  if (a.x == kSpecialRow) return bits_float(a.y);
  if (kSharedTable) {
    if ((a.y & kInfBits) == 0 || (a.y & kInfBits) == kInfBits) return bits_float(a.y);  // zero row
    return bits_float(a.y | ((a.x >> (mantissa_bits + 1)) << (23 - mantissa_bits)));
  }
  if ((a.y & kInfBits) == 0) return bits_float(a.y);  // +-0
  return bits_float((a.y - (1u << 23)) | ((a.x >> mantissa_bits) << (23 - mantissa_bits)));
}

template <bool kSharedTable>
AMSIM_HD float unstage_right(uint32_t col, float scale_b, int mantissa_bits) {
  if (col == kSpecialCol) return scale_b;
  const uint32_t index = kSharedTable ? col >> 1 : col;
  return bits_float(float_bits(scale_b) | (index << (23 - mantissa_bits)));
}

// Any product, specials included: the loops that may meet special operands.
template <bool kSharedTable>
AMSIM_HD float any_product(const uint16_t* table, uint2 a, uint32_t col, float scale_b, int mantissa_bits,
                           Rounding rounding) {
  if (a.x == kSpecialRow || col == kSpecialCol)
    return am_multiply(unstage_left<kSharedTable>(a, mantissa_bits),
                       unstage_right<kSharedTable>(col, scale_b, mantissa_bits), table, mantissa_bits, rounding);
  return staged_product<kSharedTable>(table, a, col, scale_b);
}

}  // namespace cuda
}  // namespace amsim
