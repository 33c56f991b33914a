// Narrow stride-1 conv GEMMs read in place (gemm.cpp, conv.cpp).  A conv
// with few output channels runs as its transpose (gemm_cpu_runs_transposed),
// whose right operand is the patch matrix: packing it value by value costs
// as much as its few products per value, and building it as much again.
// With stride 1, column kk = (kh, kw, c) of the patch matrix is channel
// plane c of the (padded) source shifted by a fixed offset, so the kernels
// read it in place from planes encoded once (ShiftedRight): the output is
// computed on the whole padded grid and the conv keeps the valid part.
#pragma once

#include <cstdint>

#include "amsim/cpu/gemm_blocked.h"
#include "amsim/gemm.h"

namespace amsim {
namespace cpu {

// The layout of the right operand (and so of the encoded planes) of the
// transposed form of C (m x n) = P . B, when gemm_cpu runs this shape
// transposed on a table-in-register path with one index per value
// (kLutBytes, kLutHighBytes, kLutPlanes); false otherwise.
bool shifted_layout(const Table& table, const GemmShape& shape, RightLayout* layout);

// The layout for gemm_cpu_shifted on a filter gradient's GEMM (kcols x O x
// K, P = the patch matrix transposed) where its transposed form, read in
// place, pays: a table-in-register path and fewer than kStripCols output
// channels (measured faster than the materialized patch GEMM at O = 16 and
// 32, 144 and 288 patch columns, whichever form gemm_cpu takes there).
bool filter_grad_shifted_layout(const Table& table, const GemmShape& shape, RightLayout* layout);

// ct (n x m, dense) (+)= (P . B)^T for the m x k matrix P with P[j, kk] the
// value of `right` at k_offsets[kk] + j (or, with right.vector_offsets, at
// k_offsets[kk] + vector_offsets[j / 16] + j % 16): the products and the K order of
// gemm_cpu on the materialized P, bit for bit.  Returns false, having done
// nothing, when a value of B is inf, NaN or at least 2^126 in magnitude
// (its products would need am_multiply() and P's values).  Call only where
// shifted_layout() (or filter_grad_shifted_layout()) holds, with `right`
// encoded in that layout.
bool gemm_cpu_shifted(const Table& table, const GemmShape& shape, const MatrixView& b, float* ct,
                      const ParallelFor& parallel, const ShiftedRight& right, bool accumulate = false);

}  // namespace cpu
}  // namespace amsim
