/* Minimally Biased Multiplier (Saadat, Bokhari, Parameswaran, TCAD 2018) on
 * the float32 significand.
 *
 * approxtrain: name=mbm1 symbol=mbm1 mantissa_bits=1 rounding=truncate description="minimally biased multiplier, 1 fraction bit (ignores the mantissas)"
 * approxtrain: name=mbm3 symbol=mbm3 mantissa_bits=3 rounding=truncate description="minimally biased multiplier, 3 fraction bits"
 * approxtrain: name=mbm5 symbol=mbm5 mantissa_bits=5 rounding=truncate description="minimally biased multiplier, 5 fraction bits"
 * approxtrain: name=mbm7 symbol=mbm7 mantissa_bits=7 rounding=truncate description="minimally biased multiplier, 7 fraction bits"
 *
 * A Mitchell multiplier (add the fractions) with two fixes:
 * - each operand fraction is cut to m bits with the lowest kept bit forced
 *   to 1 (the midpoint of the dropped range: the cut is then unbiased);
 * - a constant correction C = 2^-4 + 2^-6 is added to the fraction sum,
 *   halved when the sum carries (x + y >= 1).  The correction goes through
 *   the same m-bit adder, so it is C cut to m bits: mbm5 adds 2^-4 / 2^-5,
 *   mbm3 and mbm1 add nothing.  If adding it would overflow a carried sum,
 *   it is skipped.
 * The result fraction has m bits (truncated).  Special values and exponent
 * overflow are approxtrain's job (docs/design.md, "Number semantics").
 */
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static float float_of(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

/* C = 2^-4 + 2^-6 as a 23-bit fixed-point fraction. */
#define MBM_CORRECTION ((1u << 19) + (1u << 17))

static float mbm(float a, float b, int m) {
  const uint32_t ua = bits_of(a), ub = bits_of(b);
  const uint32_t sign = (ua ^ ub) & 0x80000000u;
  const int exponent_sum = (int)((ua >> 23) & 0xffu) + (int)((ub >> 23) & 0xffu) - 127;
  const int drop = 23 - m;
  const uint32_t one = 1u << m; /* 1.0 in units of 2^-m */

  const uint32_t x = ((ua & 0x7fffffu) >> drop) | 1u;
  const uint32_t y = ((ub & 0x7fffffu) >> drop) | 1u;
  const uint32_t sum = x + y;
  const uint32_t carry = sum >= one;
  const uint32_t correction = (MBM_CORRECTION >> carry) >> drop;

  uint32_t fraction; /* m bits, units of 2^-m */
  int product_carry;
  if (!carry) {
    const uint32_t t = sum + correction; /* product 1 + t */
    product_carry = t >= one;
    fraction = product_carry ? (t - one) >> 1 : t; /* 1 + t = 2 (1 + (t - 1) / 2) */
  } else {
    uint32_t f = (sum - one) + correction; /* product 2 (1 + f) */
    if (f >= one) f = sum - one;
    product_carry = 1;
    fraction = f;
  }
  return float_of(sign | ((uint32_t)(exponent_sum + product_carry) << 23) | (fraction << drop));
}

float mbm1(float a, float b) { return mbm(a, b, 1); }
float mbm3(float a, float b) { return mbm(a, b, 3); }
float mbm5(float a, float b) { return mbm(a, b, 5); }
float mbm7(float a, float b) { return mbm(a, b, 7); }
