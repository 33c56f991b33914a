// Detecting separable tables (separable_table.h).
#include "amsim/cpu/separable_table.h"

#include <cmath>

#include "amsim/content_cache.h"

namespace amsim {
namespace cpu {

namespace {

constexpr size_t kCachedTables = 8;  // forward and two gradient multipliers, with room to spare

// The entry's value (1 + fraction / 2^15) * 2^carry, exact in a double.
double entry_value(uint16_t entry) { return std::ldexp(1.0 + double(entry & 0x7fffu) / 32768.0, entry >> 15); }

// A factor must be a float in [1, 2): a' = 2^ea * factor then has the
// operand's own exponent, so it overflows or underflows exactly where the
// AM product's operands do.
bool as_factor(double x, uint32_t* fraction) {
  if (!(x >= 1.0 && x < 2.0)) return false;
  const float f = static_cast<float>(x);
  if (static_cast<double>(f) != x) return false;
  *fraction = float_bits(f) & 0x7fffffu;
  return true;
}

double factor_value(uint32_t fraction) { return static_cast<double>(bits_float((127u << 23) | fraction)); }

struct Candidate {
  const Table& table;
  int64_t side;
  SeparableFactors f;

  double p(int64_t ia, int64_t ib) const { return entry_value(table.entries[ia * side + ib]); }
  // Products of two floats are exact in a double: equality is exactness.
  bool holds(int64_t ia, int64_t ib) const { return factor_value(f.left[ia]) * factor_value(f.right[ib]) == p(ia, ib); }
};

// The factors that make P[i][0] = left[i] * right0 and P[0][j] = left[0] *
// right[j]; false when one is not a float in [1, 2) or a sampled pair
// (the diagonal, the anti-diagonal, the last row) is no product.
bool factor_with(double right0, Candidate* c) {
  const int64_t side = c->side;
  c->f.left.assign(static_cast<size_t>(side), 0u);
  c->f.right.assign(static_cast<size_t>(side), 0u);
  for (int64_t i = 0; i < side; ++i)
    if (!as_factor(c->p(i, 0) / right0, &c->f.left[i])) return false;
  const double left0 = factor_value(c->f.left[0]);
  for (int64_t j = 0; j < side; ++j)
    if (!as_factor(c->p(0, j) / left0, &c->f.right[j])) return false;
  for (int64_t i = 0; i < side; ++i)
    if (!c->holds(i, i) || !c->holds(i, side - 1 - i) || !c->holds(side - 1, i)) return false;
  return true;
}

// The factors are fixed up to a scale moved from one side to the other; three
// choices are tried: right0 = sqrt(P[0][0]) finds symmetric factors (bf16,
// DRUM), right0 = 1 and left0 = 1 (right0 = P[0][0]) factors of which one
// side keeps fraction 0 exact.
bool sampled_factors(const Table& table, SeparableFactors* out) {
  const int64_t side = int64_t{1} << table.mantissa_bits;
  Candidate c{table, side, {}};
  const double p00 = c.p(0, 0);
  for (const double right0 : {std::sqrt(p00), 1.0, p00}) {
    if (factor_with(right0, &c)) {
      *out = std::move(c.f);
      return true;
    }
  }
  return false;
}

bool all_pairs_hold(const Table& table, const SeparableFactors& f) {
  const int64_t side = int64_t{1} << table.mantissa_bits;
  const Candidate c{table, side, f};
  for (int64_t ia = 0; ia < side; ++ia)
    for (int64_t ib = 0; ib < side; ++ib)
      if (!c.holds(ia, ib)) return false;
  return true;
}

}  // namespace

SeparableFactorsPtr separable_factors(const Table& table) {
  if (table.entries == nullptr || table.mantissa_bits < kMinMantissaBits || table.mantissa_bits > kMaxMantissaBits)
    return nullptr;
  SeparableFactors sampled;
  if (!sampled_factors(table, &sampled)) return nullptr;
  static ContentCache<SeparableFactorsPtr>& cache = *new ContentCache<SeparableFactorsPtr>(kCachedTables);  // never destroyed
  SeparableFactorsPtr out;
  cache.get(
      table.mantissa_bits, table.entries, static_cast<size_t>(table.size()) * sizeof(uint16_t),
      [&](SeparableFactorsPtr* made) {
        if (all_pairs_hold(table, sampled)) *made = std::make_shared<const SeparableFactors>(std::move(sampled));
        return true;  // a table that is not separable is kept too (as nullptr)
      },
      &out);
  return out;
}

}  // namespace cpu
}  // namespace amsim
