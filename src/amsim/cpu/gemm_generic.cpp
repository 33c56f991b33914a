#include "amsim/cpu/gemm_generic.h"

#include <algorithm>
#include <vector>

#include "amsim/cpu/fp_env.h"
#include "amsim/packed_operands.h"

namespace amsim {
namespace cpu {

namespace {
// Blocks sized so a packed B block (8 bytes an element) sits in L2.
constexpr int64_t kBlockK = 128;
constexpr int64_t kBlockN = 256;
constexpr int64_t kRowsPerTask = 8;
}  // namespace

void accumulate_special_left(const Table& table, float a, const MatrixView& b, int64_t k, int64_t col_begin,
                             int64_t col_end, float* c_row) {
  for (int64_t j = col_begin; j < col_end; ++j) {
    c_row[j] = add_ftz(c_row[j], am_multiply(a, b.at(k, j), table));
  }
}

void gemm_generic(const Table& table, const GemmShape& shape, const MatrixView& a, const MatrixView& b, float* c,
                  int64_t ldc, const ParallelFor& parallel, bool accumulate) {
  const int64_t m = shape.m, n = shape.n, k = shape.k;
  const int mbits = table.mantissa_bits;
  if (!accumulate)
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  if (m == 0 || n == 0 || k == 0) return;

  std::vector<PackedRight> packed_b(static_cast<size_t>(k * n));
  std::vector<uint8_t> rounds_to_inf(static_cast<size_t>(k));  // row k has a b that rounds to inf
  parallel(k, n * 8, [&](int64_t k0, int64_t k1) {
    for (int64_t kk = k0; kk < k1; ++kk) {
      bool any = false;
      for (int64_t j = 0; j < n; ++j) {
        packed_b[kk * n + j] = pack_right(b.at(kk, j), mbits, table.rounding);
        any |= rounds_to_infinity(b.at(kk, j), mbits, table.rounding);
      }
      rounds_to_inf[kk] = any;
    }
  });

  const int64_t row_tasks = ceil_div(m, kRowsPerTask);
  parallel(row_tasks, kRowsPerTask * n * k * 4, [&](int64_t t0, int64_t t1) {
    FlushToZeroScope ftz;
    const int64_t i0 = t0 * kRowsPerTask, i1 = std::min(m, t1 * kRowsPerTask);
    for (int64_t jb = 0; jb < n; jb += kBlockN) {
      const int64_t je = std::min(n, jb + kBlockN);
      for (int64_t kb = 0; kb < k; kb += kBlockK) {
        const int64_t ke = std::min(k, kb + kBlockK);
        for (int64_t i = i0; i < i1; ++i) {
          float* c_row = c + i * ldc;
          for (int64_t kk = kb; kk < ke; ++kk) {
            const float av = a.at(i, kk);
            const PackedLeft pa = pack_left(av, mbits, table.rounding);
            if (pa.special || (rounds_to_inf[kk] && is_zero_operand(av))) {
              accumulate_special_left(table, av, b, kk, jb, je, c_row);
              continue;
            }
            const uint16_t* row = table.entries + pa.row_offset;
            const PackedRight* pb = packed_b.data() + kk * n;
            for (int64_t j = jb; j < je; ++j) {
              const float p = (entry_as_float(row[pb[j].index]) * pa.scale) * pb[j].scale;
#if AMSIM_HAVE_FTZ_MODE
              c_row[j] += p;
#else
              c_row[j] = add_ftz(c_row[j], add_ftz(0.0f, p));
#endif
            }
          }
        }
      }
    }
  });
}

bool gemm_empty(const GemmShape& shape, float* c, int64_t ldc, bool accumulate) {
  if (shape.m != 0 && shape.n != 0 && shape.k != 0) return false;
  if (shape.k == 0 && !accumulate)
    for (int64_t i = 0; i < shape.m; ++i) std::fill(c + i * ldc, c + i * ldc + shape.n, 0.0f);
  return true;
}

void gemm_rows_exactly(const Table& table, const MatrixView& left, const MatrixView& right, bool left_is_b,
                       const std::vector<int64_t>& rows, int64_t cols, int64_t k, float* c, int64_t ldc,
                       bool accumulate, const ParallelFor& parallel) {
  parallel(static_cast<int64_t>(rows.size()), cols * k * 20, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t i = rows[s];
      float* c_row = c + i * ldc;
      for (int64_t j = 0; j < cols; ++j) {
        float sum = accumulate ? c_row[j] : 0.0f;
        for (int64_t kk = 0; kk < k; ++kk) {
          const float l = left.at(i, kk), r = right.at(kk, j);
          sum = add_ftz(sum, left_is_b ? am_multiply(r, l, table) : am_multiply(l, r, table));
        }
        c_row[j] = sum;
      }
    }
  });
}

}  // namespace cpu
}  // namespace amsim
