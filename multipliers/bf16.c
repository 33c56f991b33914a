/* bfloat16 multipliers: 8-bit significands (1 + 7 fraction bits), exact product.
 *
 * approxtrain: name=bf16 symbol=bf16 mantissa_bits=7 rounding=nearest description="exact bfloat16 multiply (operands rounded to nearest even), fp32 accumulate"
 * approxtrain: name=bf16_trunc symbol=bf16_trunc mantissa_bits=7 rounding=truncate description="reference bfloat16: operands and product truncated to 7 fraction bits"
 *
 * Special values, exponent overflow and subnormals are handled by approxtrain
 * itself (docs/design.md, "Number semantics"); these models only need to be right for normal
 * operands whose product is normal.
 */
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static float float_of(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

/* float32 -> bfloat16, round to nearest even; a carry out of the fraction
 * increments the exponent, as in a real conversion. */
static float bf16_round_nearest(float x) {
  uint32_t u = bits_of(x);
  u += 0x7fffu + ((u >> 16) & 1u);
  return float_of(u & 0xffff0000u);
}

/* float32 -> bfloat16 by dropping the low 16 bits. */
static float bf16_truncate(float x) { return float_of(bits_of(x) & 0xffff0000u); }

/* Two 8-bit significands give at most a 16-bit product: exact in float32. */
float bf16(float a, float b) { return bf16_round_nearest(a) * bf16_round_nearest(b); }

float bf16_trunc(float a, float b) { return bf16_truncate(bf16_truncate(a) * bf16_truncate(b)); }
