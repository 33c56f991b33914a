/* Mitchell's logarithmic multiplier on the float32 significand (Mitchell, 1962).
 *
 * approxtrain: name=mitchell1 symbol=mitchell1 mantissa_bits=1 rounding=truncate description="Mitchell logarithmic multiplier, 1 fraction bit"
 * approxtrain: name=mitchell3 symbol=mitchell3 mantissa_bits=3 rounding=truncate description="Mitchell logarithmic multiplier, 3 fraction bits"
 * approxtrain: name=mitchell5 symbol=mitchell5 mantissa_bits=5 rounding=truncate description="Mitchell logarithmic multiplier, 5 fraction bits"
 * approxtrain: name=mitchell7 symbol=mitchell7 mantissa_bits=7 rounding=truncate description="Mitchell logarithmic multiplier, 7 fraction bits"
 *
 * log2(2^E (1 + x)) ~ E + x, so the exponent|fraction field of a float is
 * its approximate logarithm in fixed point.  Adding the two fields adds the
 * logarithms; a carry out of the fraction adder (x + y >= 1) increments the
 * exponent and leaves x + y - 1, which is Mitchell's antilogarithm:
 *   x + y < 1:  2^(Ea+Eb)   (1 + x + y)
 *   x + y >= 1: 2^(Ea+Eb+1) (x + y)
 * Special values and exponent overflow are approxtrain's job (docs/design.md,
 * "Number semantics"); the model only needs to be right for normal operands.
 */
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static float float_of(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

static float mitchell(float a, float b, int m) {
  const uint32_t ua = bits_of(a), ub = bits_of(b);
  const uint32_t sign = (ua ^ ub) & 0x80000000u;
  const uint32_t log_field = 0x7fffffffu & ~((1u << (23 - m)) - 1u); /* exponent + top m fraction bits */
  const uint32_t bias = 127u << 23;
  return float_of(sign | ((ua & log_field) + (ub & log_field) - bias));
}

float mitchell1(float a, float b) { return mitchell(a, b, 1); }
float mitchell3(float a, float b) { return mitchell(a, b, 3); }
float mitchell5(float a, float b) { return mitchell(a, b, 5); }
float mitchell7(float a, float b) { return mitchell(a, b, 7); }
