// The operand transform of the float GEMM (gemm_float.h), one value at a
// time: the scalar form and every vector kernel's tail.  Internal linkage,
// so each ISA's translation unit keeps its own copy (no inline function is
// shared between files compiled with different ISA flags).
#pragma once

#include <cstdint>

#include "amsim/amsim.h"
#include "amsim/cpu/gemm_float.h"

namespace amsim {
namespace cpu {
namespace {

// Nearest-even rounding as one integer add (a carry out of the fraction
// lands in the exponent, as reduce_operand() carries it).
inline uint32_t rounding_add(uint32_t u, const OperandTransform& t) {
  return t.nearest ? ((1u << (t.shift - 1)) - 1u) + ((u >> t.shift) & 1u) : 0u;
}

// a' as bits; *rounds_to_inf becomes nonzero for a finite value that
// rounding makes infinite.
inline uint32_t transform_bits(uint32_t u, const OperandTransform& t, uint32_t* rounds_to_inf) {
  const uint32_t e0 = (u >> 23) & 0xffu;
  const uint32_t r = u + rounding_add(u, t);
  const uint32_t e = (r >> 23) & 0xffu;
  const uint32_t fraction = t.affine ? (r & (t.mask << t.shift)) | t.set_bits : t.factors[(r >> t.shift) & t.mask];
  const uint32_t ordinary = (r & 0xff800000u) | fraction;
  *rounds_to_inf |= uint32_t(e == 0xffu && e0 != 0xffu);
  return e0 == 0 ? (u & kSignMask) : e0 == 0xffu ? u : ordinary;
}

inline bool transform_scalar(float* x, int64_t n, const OperandTransform& t) {
  uint32_t rounds_to_inf = 0;
  for (int64_t i = 0; i < n; ++i) x[i] = bits_float(transform_bits(float_bits(x[i]), t, &rounds_to_inf));
  return rounds_to_inf != 0;
}

}  // namespace
}  // namespace cpu
}  // namespace amsim
