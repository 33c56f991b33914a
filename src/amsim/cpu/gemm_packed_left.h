// Blocked GEMMs whose left operand arrives already packed (LeftRowPacker,
// gemm_blocked.h), for callers that can encode each source value once and
// copy its packed form into every row that holds it: a conv's filter
// gradient, whose rows (kh, kw, c) all read the same input pixels.
#pragma once

#include <cstdint>

#include "amsim/cpu/gemm_blocked.h"
#include "amsim/gemm.h"

namespace amsim {
namespace cpu {

// The layout to pack A's rows in when gemm_cpu would run this shape, as
// given (neither transposed nor on the bucket path), on a blocked AVX-512
// path; false where it would not (the caller then takes gemm_cpu).
bool packed_left_layout(const Table& table, const GemmShape& shape, RightLayout* layout);

// C (m x n, ldc apart) (+)= A . B with A's rows from `rows` (their packed
// form in the layout packed_left_layout() gave, none special), B as in
// gemm_cpu: the bits of gemm_cpu on the materialized A.  No value of B may
// round to infinity (a zero of A would be special against it).
void gemm_cpu_packed_left(const Table& table, const GemmShape& shape, const LeftRowPacker& rows, const MatrixView& b,
                          float* c, int64_t ldc, const ParallelFor& parallel, bool accumulate);

}  // namespace cpu
}  // namespace amsim
