/* DRUM-k, dynamic range unbiased multiplier (Hashemi, Bahar, Reda, ICCAD 2015),
 * applied to the float32 significand.
 *
 * approxtrain: name=drum4 symbol=drum4 mantissa_bits=3 rounding=truncate description="DRUM-4 on the significand (leading one + 2 bits + forced 1)"
 * approxtrain: name=drum5 symbol=drum5 mantissa_bits=4 rounding=truncate description="DRUM-5 on the significand (leading one + 3 bits + forced 1)"
 * approxtrain: name=drum6 symbol=drum6 mantissa_bits=5 rounding=truncate description="DRUM-6 on the significand (leading one + 4 bits + forced 1)"
 *
 * DRUM keeps k bits from the leading one of each operand, forces the last
 * kept bit to 1 (the midpoint of the dropped range, which makes the cut
 * unbiased) and multiplies the two k-bit numbers exactly.  In a float the
 * leading one is the hidden bit, so k bits are the hidden one and k - 1
 * fraction bits, the last of them forced to 1.  Special values and exponent
 * overflow are approxtrain's job (docs/design.md, "Number semantics").
 */
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static float float_of(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

static float drum_operand(float x, int k) {
  const int drop = 23 - (k - 1);
  return float_of((bits_of(x) & (0xffffffffu << drop)) | (1u << drop));
}

/* Two k-bit significands give at most a 2k-bit product: exact in float32. */
static float drum(float a, float b, int k) { return drum_operand(a, k) * drum_operand(b, k); }

float drum4(float a, float b) { return drum(a, b, 4); }
float drum5(float a, float b) { return drum(a, b, 5); }
float drum6(float a, float b) { return drum(a, b, 6); }
