// Tables whose entries are exact products of per-operand factors.
//
// Some multipliers transform each operand and then multiply exactly: bf16
// (the significand rounded to 7 bits), DRUM-k (the shortened significand with
// its set bit).  Their tables satisfy P[ia][ib] == left[ia] * right[ib]
// exactly, with every factor in [1, 2).  For them the AM product of a and b
// is the float32 product a' * b' of the transformed operands
// a' = sign(a) 2^ea left[ia], b' = sign(b) 2^eb right[ib] (reduced
// exponents and fractions), and the GEMM is a plain float GEMM (gemm_float.h).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "amsim/amsim.h"

namespace amsim {
namespace cpu {

// The factors of a separable table as float fraction fields (bits 22..0 of
// the factor, whose exponent field is 127), indexed by the reduced fraction.
struct SeparableFactors {
  std::vector<uint32_t> left, right;
};
using SeparableFactorsPtr = std::shared_ptr<const SeparableFactors>;

// The table's factors, nullptr when it is not separable (or has no entries).
// Settled once per table contents and kept (content_cache.h); a cheap
// necessary test on O(2^M) entries turns most other tables away first.
SeparableFactorsPtr separable_factors(const Table& table);

}  // namespace cpu
}  // namespace amsim
