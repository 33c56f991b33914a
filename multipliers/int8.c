/* 8-bit integer multipliers: exact references and three approximate circuits.
 *
 * approxtrain: name=mul8s_exact symbol=mul8s_exact integer_bits=8 signed=true description="exact 8x8-bit signed (two's complement) multiply"
 * approxtrain: name=mul8u_exact symbol=mul8u_exact integer_bits=8 signed=false description="exact 8x8-bit unsigned multiply"
 * approxtrain: name=mul8u_trunc4 symbol=mul8u_trunc4 integer_bits=8 signed=false description="unsigned array multiplier, 4 least significant partial-product columns dropped"
 * approxtrain: name=mul8u_trunc8 symbol=mul8u_trunc8 integer_bits=8 signed=false description="unsigned array multiplier, 8 least significant partial-product columns dropped"
 * approxtrain: name=mul8s_mitchell symbol=mul8s_mitchell integer_bits=8 signed=true description="Mitchell logarithmic multiplier on sign and magnitude, signed 8-bit"
 *
 * Each is an integer circuit as a C function of the operands' values; the table
 * builder calls it for all 65536 operand pairs (the first parameter is the table
 * row).  Exact definitions: docs/multipliers.md, "Integer multipliers".
 */
#include <stdint.h>

int16_t mul8s_exact(int8_t a, int8_t b) { return (int16_t)((int32_t)a * (int32_t)b); }

uint16_t mul8u_exact(uint8_t a, uint8_t b) { return (uint16_t)((uint32_t)a * (uint32_t)b); }

/* The 64 partial products a_i b_j sit in column i + j of the array; a truncated
 * array removes the adders of the columns below `dropped`, so those bits never
 * reach the sum.  The result never exceeds the exact product. */
static uint16_t truncated_array(uint8_t a, uint8_t b, int dropped) {
  uint32_t sum = 0;
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j)
      if (i + j >= dropped) sum += (uint32_t)(((a >> i) & 1u) & ((b >> j) & 1u)) << (i + j);
  return (uint16_t)sum;
}

/* Columns 0..3 (10 partial products) dropped: short by at most 1*1 + 2*2 + 3*4 + 4*8 = 49. */
uint16_t mul8u_trunc4(uint8_t a, uint8_t b) { return truncated_array(a, b, 4); }

/* Columns 0..7 (36 partial products) dropped: short by at most sum_{c<8} (c+1) 2^c = 1793;
 * every product below 2^8 is lost entirely (e.g. 15 x 15 = 0). */
uint16_t mul8u_trunc8(uint8_t a, uint8_t b) { return truncated_array(a, b, 8); }

/* floor(log2(m)) of m >= 1: the position of the leading one. */
static int leading_one(uint32_t m) {
  int k = 0;
  while (m >> (k + 1)) ++k;
  return k;
}

/* Mitchell (1962) on magnitudes |a|, |b| in [1, 128]: with |a| = 2^ka + xa
 * (0 <= xa < 2^ka) and |b| = 2^kb + xb, log2|a| ~ ka + xa/2^ka; adding the
 * logarithms and taking the piecewise-linear antilogarithm gives, exactly in integers,
 *   s = xa 2^kb + xb 2^ka
 *   s <  2^(ka+kb): 2^(ka+kb) + s
 *   s >= 2^(ka+kb): 2 s
 * A zero operand gives 0; the sign is the xor of the operand signs. */
int16_t mul8s_mitchell(int8_t a, int8_t b) {
  const int32_t va = a, vb = b;
  const uint32_t ma = (uint32_t)(va < 0 ? -va : va), mb = (uint32_t)(vb < 0 ? -vb : vb);
  if (ma == 0 || mb == 0) return 0;
  const int ka = leading_one(ma), kb = leading_one(mb);
  const uint32_t xa = ma - (1u << ka), xb = mb - (1u << kb);
  const uint32_t s = (xa << kb) + (xb << ka);
  const uint32_t base = 1u << (ka + kb);
  const int32_t magnitude = (int32_t)(s < base ? base + s : 2u * s);
  return (int16_t)(((va < 0) != (vb < 0)) ? -magnitude : magnitude);
}
