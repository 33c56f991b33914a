// GEMM entry points: shape checks, batching and the run-time choice of path.
#include "amsim/gemm.h"

#include <algorithm>

#include "amsim/cpu/cpu_features.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/gemm_generic.h"

namespace amsim {

const char* gemm_cpu_path(int /*mantissa_bits*/) { return "generic"; }

void gemm_cpu(const Table& table, const GemmShape& shape, const MatrixView& a,
              const MatrixView& b, float* c, int64_t ldc, const ParallelFor& parallel,
              bool accumulate) {
  cpu::gemm_generic(table, shape, a, b, c, ldc, parallel, accumulate);
}

void batched_gemm_cpu(const Table& table, const GemmShape& shape, int64_t batch,
                      const MatrixView& a, int64_t batch_stride_a, const MatrixView& b,
                      int64_t batch_stride_b, float* c, const ParallelFor& parallel) {
  for (int64_t bi = 0; bi < batch; ++bi) {
    MatrixView ab = a, bb = b;
    ab.data += bi * batch_stride_a;
    bb.data += bi * batch_stride_b;
    gemm_cpu(table, shape, ab, bb, c + bi * shape.m * shape.n, shape.n, parallel);
  }
}

void multiply_cpu(const Table& table, const float* a, const float* b, float* c, int64_t n,
                  const ParallelFor& parallel) {
  parallel(n, 20, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) c[i] = am_multiply(a[i], b[i], table);
  });
}

}  // namespace amsim
