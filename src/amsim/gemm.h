// AM GEMM on the CPU: C = op(A) . op(B), every product through the table.
//
// Canonical order (docs/design.md, "Canonical summation orders"): for each C[i, j] the sum starts at
// +0 and adds A[i, k] (x) B[k, j] for k = 0, 1, ..., K-1, one float32 add
// per product, flush-to-zero.  Any blocking that keeps k ascending per output
// element gives the same bits.
#pragma once

#include <cstdint>
#include <functional>

#include "amsim/amsim.h"
#include "amsim/batch_plan.h"
#include "amsim/parallel.h"
#include "amsim/shapes.h"

namespace amsim {

// C (m x n, row-major with leading dimension ldc) = A (m x k) . B (k x n).
// C is overwritten, or with accumulate = true the sums continue from the
// values already in C (each product added to C's element in k order), so a
// long K can be fed in consecutive chunks with the same bits as one call.
// Thread-safe; parallelises over rows/columns of C.
void gemm_cpu(const Table& table, const GemmShape& shape, const MatrixView& a, const MatrixView& b, float* c,
              int64_t ldc, const ParallelFor& parallel = serial_for, bool accumulate = false);

// True when gemm_cpu() computes this shape as its transpose: a narrow C (few
// columns) leaves most SIMD lanes idle, C^T has the long side across them.
bool gemm_cpu_runs_transposed(const Table& table, const GemmShape& shape);

// A left operand gathered from runs of a source matrix (an implicit im2col
// patch matrix): row i of A is `runs` runs of `run_len` values, run t being
// row rows[(i - i0) * runs + t] of `source` (source_rows x run_len) as
// run_rows(i0, i1, rows) fills them for rows [i0, i1), or run_len zeros (+0)
// where that index is negative.
struct GatheredLeft {
  MatrixView source;
  int64_t source_rows = 0;
  int64_t run_len = 0;
  int64_t runs = 0;
  std::function<void(int64_t i0, int64_t i1, int64_t* rows)> run_rows;
};

// C = A . B for a gathered A (shape.k == runs * run_len) with the bits of
// gemm_cpu on the materialized A, which it never builds: each source value
// is decoded once, not once per patch that holds it.  Returns false, having
// done nothing, where this machine or these operands have no such path (no
// AVX-512 table kernel, a narrow C that runs transposed, a special value in
// the source or a B value that rounds to infinity); the caller then
// materializes A.
bool gemm_cpu_gathered(const Table& table, const GemmShape& shape, const GatheredLeft& a, const MatrixView& b, float* c,
                       int64_t ldc, const ParallelFor& parallel = serial_for);

// Batched form: the GEMMs of `plan` (batch_plan.h) on the whole operands a
// and b, C dense [plan.batch, m, n].  `threads` is how many threads
// `parallel` runs on; with it the one scheduling rule of every caller picks
// whether whole GEMMs or the parts of each GEMM are the parallel work.
void batched_gemm_cpu(const Table& table, const BatchPlan& plan, const float* a, const float* b, float* c,
                      const ParallelFor& parallel = serial_for, int64_t threads = 1);

// Elementwise c[i] = a[i] (x) b[i] for i < n.
void multiply_cpu(const Table& table, const float* a, const float* b, float* c, int64_t n,
                  const ParallelFor& parallel = serial_for);

// The table with entry_bytes settled: kHighOnly when every entry's low byte
// is zero (results with at most 7 fraction bits: mbm7, mitchell7,
// bf16_trunc), whose M = 7 GEMMs look up only the high bytes.  One scan of
// the entries unless already known; the CPU entry points settle it once per
// call, so their per-batch and per-chunk GEMMs do not scan again.
Table with_entry_bytes(const Table& table);

// Which CPU GEMM path this machine takes for the table ("avx512vbmi",
// "avx512vbmi-high", "avx512vbmi-chunks", "avx512-gather", "avx2" (the bucket
// method, cpu/gemm_bucket.h), "bucket-avx512", "bucket-portable", "generic",
// or a float GEMM's "float-...") and shape, by
// default a 1024^3 GEMM; a table without entries stands for any table of its
// width -- reported by build_info() and the benchmark.
const char* gemm_cpu_path(const Table& table);
const char* gemm_cpu_path(const Table& table, const GemmShape& shape);

// The fewest rows a GEMM of this shape's path should be called with when a
// caller cuts the rows in chunks (conv patch matrices): the bucket method
// (cpu/gemm_bucket.h) builds a float table and expands B once per call, so
// it wants max(4096, 8 x 2^M) rows or more; 0 for the other paths.
int64_t gemm_cpu_min_rows(const Table& table, const GemmShape& shape);

}  // namespace amsim
