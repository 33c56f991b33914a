// The float GEMM driver (gemm_float.h): packing and transforming both
// operands, blocking, threads.  Baseline code; the transform and the
// register tile are the ISA kernels' (gemm_float_avx512.cpp, _avx2.cpp,
// _portable.cpp).
#include "amsim/cpu/gemm_float.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "amsim/amsim.h"
#include "amsim/cpu/aligned_buffer.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/gemm_generic.h"

namespace amsim {
namespace cpu {

namespace {

// A K block: one B panel (kKBlock x nr floats, 16 KiB at nr = 32) stays in
// L1 while the row groups of a task pass over it.
constexpr int64_t kKBlock = 128;
// A task: about kTaskRows rows x kTaskCols columns of C; its A block
// (kTaskRows x kKBlock) and B panels stay in L2 over one K block.
constexpr int64_t kTaskRows = 64;
constexpr int64_t kTaskCols = 256;
// At least this many tasks where C allows (rows, then columns, split finer):
// a filter gradient's C is small and its K long.
constexpr int64_t kMinTasks = 8;
// Cost model (ns, one Zen 4 core, AVX2 kernels; 1024^3 and 8192 x 64 x 576).
constexpr double kLaneMacNs = 0.025;  // per padded multiply-add of the tiles
constexpr double kPackNs = 0.25;  // per operand value packed and transformed
// The largest tile of any kernel (the edge tiles' buffer).
constexpr int64_t kMaxTile = 8 * 32;


// rows x k of `x` (rows r0.., padded to `width` with +0) as [k][width].
void pack_rows(const MatrixView& x, int64_t r0, int64_t rows, int64_t k, int64_t width, float* out) {
  if (rows < width) std::fill(out, out + k * width, 0.0f);
  if (x.col_stride == 1 && rows == width && (width == 4 || width == 8)) {
    // Contiguous rows: `width` streams read side by side, each k's values written together.
    const float* src[8];
    for (int64_t r = 0; r < width; ++r) src[r] = x.data + (r0 + r) * x.row_stride;
    if (width == 4) {
      for (int64_t kk = 0; kk < k; ++kk)
        for (int r = 0; r < 4; ++r) out[kk * 4 + r] = src[r][kk];
    } else {
      for (int64_t kk = 0; kk < k; ++kk)
        for (int r = 0; r < 8; ++r) out[kk * 8 + r] = src[r][kk];
    }
  } else if (x.col_stride == 1) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = x.data + (r0 + r) * x.row_stride;
      for (int64_t kk = 0; kk < k; ++kk) out[kk * width + r] = src[kk];
    }
  } else if (x.row_stride == 1) {
    // Rows adjacent in memory (a transposed view: the patch matrix of a
    // filter gradient, a row-major right operand): each k's values are one
    // contiguous run.
    for (int64_t kk = 0; kk < k; ++kk) {
      const float* src = x.data + r0 + kk * x.col_stride;
      float* dst = out + kk * width;
      for (int64_t r = 0; r < rows; ++r) dst[r] = src[r];
    }
  } else {
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t r = 0; r < rows; ++r) out[kk * width + r] = x.at(r0 + r, kk);
  }
}

// C (rows x cols, ldc) = L . R where L's values are transformed by tl and
// R's by tr.  left_is_b: L is B^T (the transposed orientation), for the
// operand order of am_multiply.
struct Oriented {
  MatrixView left, right;  // left: rows x k, right: k x cols
  OperandTransform tl, tr;
  int64_t rows, cols, k;
  float* c;
  int64_t ldc;
  bool accumulate;
  bool left_is_b;
};

// One task's rows of L for all k, packed and transformed: groups of mr rows
// as [k][mr]; `rounds_to_inf[r]` for a row with a value that rounds to infinity.
void pack_left(const FloatGemmKernels& kern, const Oriented& p, int64_t g_begin, int64_t g_end, float* out,
               uint8_t* rounds_to_inf) {
  const int64_t mr = kern.mr, k = p.k;
  for (int64_t g = g_begin; g < g_end; ++g) {
    float* group = out + (g - g_begin) * k * mr;
    const int64_t i0 = g * mr, rows = std::min(mr, p.rows - i0);
    pack_rows(p.left, i0, rows, k, mr, group);
    uint8_t* flags = rounds_to_inf + (g - g_begin) * mr;
    std::fill(flags, flags + mr, uint8_t{0});
    if (!kern.transform(group, k * mr, p.tl)) continue;
    // Rare: find the rows (the packed values are the transformed ones, so
    // ask the transform again, row by row, on the source values).
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t kk = 0; kk < k; ++kk) row[kk] = p.left.at(i0 + r, kk);
      flags[r] = kern.transform(row.data(), k, p.tl) ? 1 : 0;
    }
  }
}

// False, having written nothing, when R has a value that rounds to
// infinity.  Rows of L with such a value are summed from am_multiply().
bool run(const FloatGemmKernels& kern, const Table& table, const Oriented& p, const ParallelFor& parallel) {
  const int64_t mr = kern.mr, nr = kern.nr, k = p.k;
  const int64_t groups = ceil_div(p.rows, mr), panels = ceil_div(p.cols, nr);
  AlignedBuffer<float> bp(panels * k * nr);
  std::atomic<bool> right_rounds_to_inf{false};
  const MatrixView rt = transposed(p.right);  // cols x k
  parallel(panels, k * nr * 4, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      float* out = bp.data() + q * k * nr;
      pack_rows(rt, q * nr, std::min(nr, p.cols - q * nr), k, nr, out);
      if (kern.transform(out, k * nr, p.tr)) right_rounds_to_inf = true;
    }
  });
  if (right_rounds_to_inf) return false;

  int64_t groups_per_task = std::max<int64_t>(1, kTaskRows / mr);
  int64_t panels_per_task = std::max<int64_t>(1, kTaskCols / nr);
  const auto tasks = [&] { return ceil_div(groups, groups_per_task) * ceil_div(panels, panels_per_task); };
  while (tasks() < kMinTasks && groups_per_task > 1) groups_per_task = ceil_div(groups_per_task, 2);
  while (tasks() < kMinTasks && panels_per_task > 1) panels_per_task = ceil_div(panels_per_task, 2);
  const int64_t row_tasks = ceil_div(groups, groups_per_task), col_tasks = ceil_div(panels, panels_per_task);
  const int64_t task_cost = groups_per_task * mr * panels_per_task * nr * k / 4 + 1;
  std::vector<uint8_t> special(static_cast<size_t>(row_tasks * groups_per_task * mr), 0);
  parallel(row_tasks * col_tasks, task_cost, [&](int64_t t0, int64_t t1) {
    FlushToZeroScope ftz;
    alignas(64) float edge[kMaxTile];
    // The task's rows of L, packed once for consecutive tasks of one row block.
    AlignedBuffer<float> ap(groups_per_task * k * mr);
    std::vector<uint8_t> task_special(static_cast<size_t>(groups_per_task * mr));
    int64_t packed_rt = -1;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t rt_i = task / col_tasks, ct_i = task % col_tasks;
      const int64_t g_begin = rt_i * groups_per_task, g_end = std::min(groups, g_begin + groups_per_task);
      const int64_t q_begin = ct_i * panels_per_task, q_end = std::min(panels, q_begin + panels_per_task);
      if (packed_rt != rt_i) {
        pack_left(kern, p, g_begin, g_end, ap.data(), task_special.data());
        packed_rt = rt_i;
      }
      if (ct_i == 0)  // one writer per row block
        std::copy(task_special.begin(), task_special.end(), special.begin() + g_begin * mr);
      for (int64_t k0 = 0; k0 < k; k0 += kKBlock) {
        const int64_t kc = std::min(kKBlock, k - k0);
        const bool load_c = k0 > 0 || p.accumulate;  // later K blocks continue the sums: k stays ascending
        for (int64_t q = q_begin; q < q_end; ++q) {
          const float* b = bp.data() + q * k * nr + k0 * nr;
          const int64_t j0 = q * nr, cols = std::min(nr, p.cols - j0);
          for (int64_t g = g_begin; g < g_end; ++g) {
            const float* a = ap.data() + (g - g_begin) * k * mr + k0 * mr;
            const int64_t i0 = g * mr, rows = std::min(mr, p.rows - i0);
            const uint8_t* row_special = task_special.data() + (g - g_begin) * mr;
            float* c = p.c + i0 * p.ldc + j0;
            const bool all_ordinary = std::none_of(row_special, row_special + rows, [](uint8_t s) { return s != 0; });
            if (rows == mr && cols == nr && all_ordinary) {
              kern.tile(a, b, kc, c, p.ldc, load_c);
              continue;
            }
            // An edge tile, or one with special rows (left untouched), runs on a full-size copy.
            if (load_c)
              for (int64_t r = 0; r < rows; ++r) std::memcpy(edge + r * nr, c + r * p.ldc, sizeof(float) * cols);
            kern.tile(a, b, kc, edge, nr, load_c);
            for (int64_t r = 0; r < rows; ++r)
              if (!row_special[r]) std::memcpy(c + r * p.ldc, edge + r * nr, sizeof(float) * cols);
          }
        }
      }
    }
  });

  // Rows with a value that rounds to infinity (which may meet a zero: a
  // signed zero by the contract, NaN as a float product), from am_multiply().
  std::vector<int64_t> special_rows;
  for (int64_t i = 0; i < p.rows; ++i)
    if (special[i]) special_rows.push_back(i);
  gemm_rows_exactly(table, p.left, p.right, p.left_is_b, special_rows, p.cols, k, p.c, p.ldc, p.accumulate,
                    parallel);
  return true;
}

// Lanes computed for a rows x cols C (the padded tiles).
int64_t padded_area(int64_t rows, int64_t cols, int64_t mr, int64_t nr) {
  return ceil_div(rows, mr) * mr * ceil_div(cols, nr) * nr;
}

// A narrow C (few columns: conv outputs with few channels) pads its tiles'
// columns; C^T = B'^T . A'^T gives the same bits (float products commute
// and each element's sum keeps k ascending) with the long side across them.
bool runs_transposed(const FloatGemmKernels& kern, const GemmShape& shape) {
  return 2 * padded_area(shape.n, shape.m, kern.mr, kern.nr) < padded_area(shape.m, shape.n, kern.mr, kern.nr);
}

}  // namespace

double gemm_float_cost(const FloatGemmKernels& kern, const GemmShape& shape) {
  const bool t = runs_transposed(kern, shape);
  const double padded = double(t ? padded_area(shape.n, shape.m, kern.mr, kern.nr) : padded_area(shape.m, shape.n, kern.mr, kern.nr));
  return padded * double(shape.k) * kLaneMacNs + double(shape.m + shape.n) * double(shape.k) * kPackNs;
}

bool gemm_float(const FloatGemmKernels& kern, const Table& table, const SeparableFactors& factors,
                const GemmShape& shape, const MatrixView& a, const MatrixView& b, float* c, int64_t ldc,
                const ParallelFor& parallel, bool accumulate) {
  if (gemm_empty(shape, c, ldc, accumulate)) return true;
  const int64_t m = shape.m, n = shape.n, k = shape.k;
  const OperandTransform ta = operand_transform(table, factors.left), tb = operand_transform(table, factors.right);
  if (!runs_transposed(kern, shape)) return run(kern, table, Oriented{a, b, ta, tb, m, n, k, c, ldc, accumulate, false}, parallel);
  return gemm_through_transposed_c(shape, c, ldc, accumulate, parallel, [&](float* ct) {
    return run(kern, table, Oriented{transposed(b), transposed(a), tb, ta, n, m, k, ct, m, accumulate, true}, parallel);
  });
}

OperandTransform operand_transform(const Table& table, const std::vector<uint32_t>& factors) {
  OperandTransform t;
  t.factors = factors.data();
  t.shift = 23 - table.mantissa_bits;
  t.mask = (1u << table.mantissa_bits) - 1u;
  t.nearest = table.rounding == Rounding::kNearestEven;
  t.set_bits = factors.empty() ? 0u : factors[0];
  t.affine = !factors.empty();
  for (uint32_t i = 0; i < factors.size(); ++i) t.affine &= factors[i] == ((i << t.shift) | t.set_bits);
  return t;
}

}  // namespace cpu
}  // namespace amsim
