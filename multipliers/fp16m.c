/* Half-precision significands in float32's exponent range.
 *
 * approxtrain: name=fp16m symbol=fp16m mantissa_bits=10 rounding=nearest description="exact 11-bit-significand multiply (fp16 mantissa, fp32 range), 15-bit product fraction"
 *
 * Operands are rounded to 10 fraction bits (nearest even, a carry
 * increments the exponent); the 22-bit product of the two 11-bit
 * significands is exact in float32 and is then truncated to the 15 fraction
 * bits a table entry holds.  Special values and exponent overflow are
 * approxtrain's job (docs/design.md, "Number semantics").
 */
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static float float_of(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

static float round_to_10_fraction_bits(float x) {
  uint32_t u = bits_of(x);
  u += 0xfffu + ((u >> 13) & 1u);
  return float_of(u & 0xffffe000u);
}

float fp16m(float a, float b) {
  const float product = round_to_10_fraction_bits(a) * round_to_10_fraction_bits(b);
  return float_of(bits_of(product) & 0xffffff00u);
}
