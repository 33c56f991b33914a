// The one definition of the AMSim product (docs/design.md, "Number semantics").
//
// Every kernel of approxtrain -- CPU scalar, CPU SIMD, CUDA -- reproduces
// am_multiply() bit for bit; the SIMD paths are derived from it and tested
// against it.  It compiles as plain C++17 and, under nvcc, as
// __host__ __device__ code.
#pragma once

#include <cstdint>
#include <cstring>

#include "amsim/host_device.h"

namespace amsim {

constexpr int kMinMantissaBits = 1;
constexpr int kMaxMantissaBits = 11;
constexpr uint32_t kSignMask = 0x80000000u;
constexpr uint32_t kInfBits = 0x7f800000u;
constexpr uint32_t kQuietNaNBits = 0x7fc00000u;

enum class Rounding : int { kTruncate = 0, kNearestEven = 1 };

// Number of table entries a multiplier with M mantissa bits needs: 2^(2M).
AMSIM_HD constexpr int64_t table_size(int mantissa_bits) { return int64_t{1} << (2 * mantissa_bits); }

// What the CPU GEMM may assume about the entries' two bytes; kUnknown: it
// looks (with_entry_bytes() in gemm.h settles it once per table).
enum class EntryBytes : uint8_t { kUnknown, kBoth, kHighOnly };

// A multiplier's table as the kernels see it: a borrowed view, no ownership.
struct Table {
  const uint16_t* entries = nullptr;  // 2^(2M) entries, index ia * 2^M + ib
  int mantissa_bits = 0;  // M
  Rounding rounding = Rounding::kTruncate;
  EntryBytes entry_bytes = EntryBytes::kUnknown;

  AMSIM_HD int64_t size() const { return table_size(mantissa_bits); }
};

AMSIM_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

AMSIM_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// An operand after step 2 of the contract: biased exponent (1..255, 255 only
// when nearest-even rounding carried past the largest finite value) and the
// M-bit reduced fraction.  Only meaningful for finite nonzero normal inputs.
struct ReducedOperand {
  uint32_t exponent;
  uint32_t fraction;
};

AMSIM_HD ReducedOperand reduce_operand(uint32_t bits, int mantissa_bits, Rounding rounding) {
  const uint32_t exponent = (bits >> 23) & 0xffu;
  const uint32_t fraction = bits & 0x7fffffu;
  const int shift = 23 - mantissa_bits;  // >= 12
  uint32_t kept = fraction >> shift;
  if (rounding == Rounding::kNearestEven) {
    const uint32_t rest = fraction & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1u))) ++kept;
    if (kept == (1u << mantissa_bits)) return {exponent + 1u, 0u};  // carried into the exponent
  }
  return {exponent, kept};
}

// Steps 4-6: combine a table entry with the two reduced exponents.
AMSIM_HD uint32_t compose_product(uint32_t sign, uint32_t exponent_a, uint32_t exponent_b, uint32_t entry) {
  const int exponent = int(exponent_a) + int(exponent_b) - 127 + int(entry >> 15);
  if (exponent >= 255) return sign | kInfBits;
  if (exponent <= 0) return sign;  // no subnormal results
  return sign | (uint32_t(exponent) << 23) | ((entry & 0x7fffu) << 8);
}

// The AMSim product of a (left operand, table row) and b (table column).
AMSIM_HD float am_multiply(float a, float b, const uint16_t* entries, int mantissa_bits, Rounding rounding) {
  const uint32_t ua = float_bits(a), ub = float_bits(b);
  const uint32_t sign = (ua ^ ub) & kSignMask;
  const uint32_t ea = (ua >> 23) & 0xffu, eb = (ub >> 23) & 0xffu;
  const bool a_nan = ea == 0xffu && (ua & 0x7fffffu) != 0;
  const bool b_nan = eb == 0xffu && (ub & 0x7fffffu) != 0;
  if (a_nan || b_nan) return bits_float(kQuietNaNBits);
  const bool a_zero = ea == 0, b_zero = eb == 0;  // zero or subnormal
  if (ea == 0xffu || eb == 0xffu) {
    return bits_float((a_zero || b_zero) ? kQuietNaNBits : (sign | kInfBits));
  }
  if (a_zero || b_zero) return bits_float(sign);
  const ReducedOperand ra = reduce_operand(ua, mantissa_bits, rounding);
  const ReducedOperand rb = reduce_operand(ub, mantissa_bits, rounding);
  if (ra.exponent == 0xffu || rb.exponent == 0xffu) return bits_float(sign | kInfBits);
  const uint32_t entry = entries[(ra.fraction << mantissa_bits) | rb.fraction];
  return bits_float(compose_product(sign, ra.exponent, rb.exponent, entry));
}

AMSIM_HD float am_multiply(float a, float b, const Table& table) {
  return am_multiply(a, b, table.entries, table.mantissa_bits, table.rounding);
}

// The accumulation step of every op: a plain float32 add whose subnormal
// result is flushed to a zero of the same sign.  Kernels that run with the
// hardware flush-to-zero mode on (MXCSR FTZ, nvcc -ftz=true) get the same
// bits from a bare `+`; this spelled-out form is for code that cannot rely on
// the mode.
AMSIM_HD float add_ftz(float sum, float product) {
  const float s = sum + product;
  const uint32_t u = float_bits(s);
  return ((u & kInfBits) == 0) ? bits_float(u & kSignMask) : s;
}

}  // namespace amsim
