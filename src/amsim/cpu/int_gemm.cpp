// The integer GEMM driver (int_gemm.h): operand layout, the choice of path,
// blocking over k (int32 within a block, int64 across), threads.  Baseline
// code; the bucket method's vector kernels are int_gemm_kernels.inc's.
#include "amsim/cpu/int_gemm.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "amsim/cpu/aligned_buffer.h"
#include "amsim/cpu/cpu_features.h"
#include "amsim/cpu/int_gemm_kernels.h"

namespace amsim {

namespace {

using cpu::AlignedBuffer;
using cpu::int_tile_cols;
using cpu::IntBucketKernels;
using cpu::IntTileKernels;
using cpu::kIntSide;
using cpu::kIntTileCols;

// T of one K block: kc x 256 x w int32 (32 KiB per k for the widest block
// w = 32), kept in L2 with the C scratch of a row part beside it.
constexpr int64_t kTBlockBytes = int64_t{256} << 10;
int64_t block_k_for(int64_t tile) { return kTBlockBytes / (kIntSide * tile * 4); }
// Row parts: each expands its own T, so parts are few and large; capped so
// that a part's C scratch (rows x w int32) stays near L2 too: 2048 rows of
// the widest block, more of a narrower one.
constexpr int64_t kTargetTasks = 8;
constexpr int64_t kMinRowsPerPart = 512;
int64_t max_rows_per_part(int64_t tile) { return 2048 * (kIntTileCols / tile); }

// Cost model (ns on one core, rough; measured on Zen 4, where the two
// methods break even near 96^3): per padded int32 add of the bucket panel,
// per T element expanded, per table entry transposed (with the method's
// other fixed costs), per product of the direct path (a table read).
constexpr double kAddNs = 0.04;
constexpr double kExpandNs = 0.12;
constexpr double kTransposeNs = 1.5;
constexpr double kDirectNs = 0.55;

// The orientation-free problem: out = L . R through table(l, r), with
// L rows x k (row-major, ld_left), R k x cols (row-major, ld_right); output
// element (r, c) at out[r * out_row + c * out_col].
struct Problem {
  const uint8_t* left;
  int64_t ld_left;
  const uint8_t* right;
  int64_t ld_right;
  int64_t rows, cols, k;
};

template <class Out>
struct Output {
  Out* data;
  int64_t row, col;  // strides
  Out& at(int64_t r, int64_t c) const { return data[r * row + c * col]; }
};

// v as rows x cols, row-major with unit column stride: in place when it is,
// else packed into storage.
const uint8_t* row_major(const IntMatrixView& v, int64_t rows, int64_t cols, std::vector<uint8_t>& storage,
                         int64_t* ld) {
  if (v.col_stride == 1 || cols <= 1) {
    *ld = v.row_stride;
    return v.data;
  }
  storage.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) storage[r * cols + c] = v.data[r * v.row_stride + c * v.col_stride];
  *ld = cols;
  return storage.data();
}

IntMatrixView transposed(const IntMatrixView& v) { return IntMatrixView{v.data, v.col_stride, v.row_stride}; }

const IntBucketKernels* best_kernels(bool allow_avx512) {
  static const bool avx512 = cpu::has_avx512_bw() && cpu::int_bucket_kernels_avx512() != nullptr;
  static const bool avx2 = cpu::has_avx2_fma() && cpu::int_bucket_kernels_avx2() != nullptr;
  if (avx512 && allow_avx512) return cpu::int_bucket_kernels_avx512();
  if (avx2) return cpu::int_bucket_kernels_avx2();
  return cpu::int_bucket_kernels_portable();
}

double bucket_cost(int64_t rows, int64_t cols, int64_t k) {
  const int64_t tile = int_tile_cols(cols);
  const double padded = double(ceil_div(cols, tile) * tile);
  const double parts = double(std::max<int64_t>(1, ceil_div(rows, max_rows_per_part(tile))));
  return double(k) * padded * (double(rows) * kAddNs + parts * double(kIntSide) * kExpandNs) +
         double(kIntSide * kIntSide) * kTransposeNs;
}

struct PathChoice {
  const IntBucketKernels* kernels;  // nullptr: the direct path
  bool transposed;
};

PathChoice choose_path(const GemmShape& s) {
  const auto oriented = [&](const IntBucketKernels* kernels) {
    return PathChoice{kernels, bucket_cost(s.n, s.m, s.k) < bucket_cost(s.m, s.n, s.k)};
  };
  if (cpu::forced_path_is("generic")) return {nullptr, false};
  if (cpu::forced_path_is("bucket-portable")) return oriented(cpu::int_bucket_kernels_portable());
  if (cpu::forced_path_is("avx2") && cpu::has_avx2_fma() && cpu::int_bucket_kernels_avx2())
    return oriented(cpu::int_bucket_kernels_avx2());
  if (cpu::forced_path_is("avx512") && cpu::has_avx512_bw() && cpu::int_bucket_kernels_avx512())
    return oriented(cpu::int_bucket_kernels_avx512());
  const IntBucketKernels* kernels = best_kernels(!cpu::forced_path_is("no-avx512"));
  const double direct = double(s.m) * double(s.n) * double(s.k) * kDirectNs;
  const double bucket = std::min(bucket_cost(s.m, s.n, s.k), bucket_cost(s.n, s.m, s.k));
  if (direct <= bucket) return {nullptr, false};
  return oriented(kernels);
}

// Adds (first == false) or stores a chunk's int32 sums into the output.
template <class Out>
inline void emit(const Output<Out>& out, int64_t r, int64_t c, int32_t v, bool first) {
  if (first) {
    out.at(r, c) = static_cast<Out>(v);
  } else {
    out.at(r, c) += static_cast<Out>(v);
  }
}

// One table read per product: table[l][r], rows in parallel.
template <class Out>
void run_direct(const int32_t* table, const Problem& p, const Output<Out>& out, int64_t chunk_k,
                const ParallelFor& parallel) {
  parallel(p.rows, p.cols * p.k + 1, [&](int64_t i0, int64_t i1) {
    std::vector<int32_t> acc(static_cast<size_t>(p.cols));
    for (int64_t i = i0; i < i1; ++i) {
      const uint8_t* left = p.left + i * p.ld_left;
      for (int64_t c0 = 0; c0 < p.k; c0 += chunk_k) {
        const int64_t c1 = std::min(p.k, c0 + chunk_k);
        std::fill(acc.begin(), acc.end(), 0);
        for (int64_t kk = c0; kk < c1; ++kk) {
          const int32_t* row = table + int64_t{left[kk]} * kIntSide;
          const uint8_t* right = p.right + kk * p.ld_right;
          for (int64_t j = 0; j < p.cols; ++j) acc[j] += row[right[j]];
        }
        for (int64_t j = 0; j < p.cols; ++j) emit(out, i, j, acc[j], c0 == 0);
      }
    }
  });
}

// The bucket method; table_t[r][s] = product of left pattern s and right pattern r.
template <class Out>
void run_bucket(const IntBucketKernels& kernels, const int32_t* table_t, const Problem& p, const Output<Out>& out,
                int64_t chunk_k, const ParallelFor& parallel) {
  const IntTileKernels& tile_kernels = kernels.for_cols(p.cols);
  const int64_t tile = tile_kernels.cols;
  const int64_t col_blocks = ceil_div(p.cols, tile);
  const int64_t parts = std::max(
      ceil_div(p.rows, max_rows_per_part(tile)),
      std::clamp<int64_t>(ceil_div(kTargetTasks, col_blocks), 1, std::max<int64_t>(1, p.rows / kMinRowsPerPart)));
  const int64_t rows_per_part = ceil_div(p.rows, parts);
  const int64_t block_k = std::min(block_k_for(tile), p.k);
  parallel(parts * col_blocks, rows_per_part * tile * p.k / 16 + 1, [&](int64_t t0, int64_t t1) {
    AlignedBuffer<int32_t> t(block_k * kIntSide * tile);
    AlignedBuffer<int32_t> scratch(rows_per_part * tile);
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t part = task / col_blocks, cb = task % col_blocks;
      const int64_t r0 = part * rows_per_part, nr = std::min(p.rows, r0 + rows_per_part) - r0;
      const int64_t j0 = cb * tile, nc = std::min(p.cols, j0 + tile) - j0;
      if (nr <= 0) continue;
      for (int64_t c0 = 0; c0 < p.k; c0 += chunk_k) {
        const int64_t c1 = std::min(p.k, c0 + chunk_k);
        std::memset(scratch.data(), 0, static_cast<size_t>(nr * tile) * sizeof(int32_t));
        for (int64_t k0 = c0; k0 < c1; k0 += block_k) {
          const int64_t kc = std::min(block_k, c1 - k0);
          cpu::IntExpansion e;
          e.table_t = table_t;
          e.right = p.right + k0 * p.ld_right + j0;
          e.ld_right = p.ld_right;
          e.kc = kc;
          e.ncols = nc;
          e.out = t.data();
          tile_kernels.expand(e);
          cpu::IntPanel panel;
          panel.t = t.data();
          panel.kc = kc;
          panel.left = p.left + r0 * p.ld_left + k0;
          panel.ld_left = p.ld_left;
          panel.c = scratch.data();
          panel.rows = nr;
          tile_kernels.panel(panel);
        }
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t j = 0; j < nc; ++j) emit(out, r0 + r, j0 + j, scratch.data()[r * tile + j], c0 == 0);
      }
    }
  });
}

template <class Out>
void int_gemm(const int32_t* products, const GemmShape& s, const IntMatrixView& a, const IntMatrixView& b, Out* c,
              int64_t ldc, const ParallelFor& parallel) {
  if (s.m == 0 || s.n == 0) return;
  if (s.k == 0) {
    for (int64_t i = 0; i < s.m; ++i) std::fill(c + i * ldc, c + i * ldc + s.n, Out{0});
    return;
  }
  const int64_t chunk_k = std::min(s.k, int_safe_block_k(int_products_max_abs(products)));
  const PathChoice path = choose_path(s);
  std::vector<uint8_t> left_storage, right_storage;
  Problem p;
  if (path.kernels == nullptr || !path.transposed) {
    p.left = row_major(a, s.m, s.k, left_storage, &p.ld_left);
    p.right = row_major(b, s.k, s.n, right_storage, &p.ld_right);
    p.rows = s.m;
    p.cols = s.n;
    p.k = s.k;
    const Output<Out> out{c, ldc, 1};
    if (path.kernels == nullptr) {
      run_direct(products, p, out, chunk_k, parallel);
      return;
    }
    // table_t = products^T, in 32 x 32 tiles.
    std::vector<int32_t> table_t(static_cast<size_t>(kIntSide * kIntSide));
    for (int64_t x0 = 0; x0 < kIntSide; x0 += 32)
      for (int64_t y0 = 0; y0 < kIntSide; y0 += 32)
        for (int64_t x = x0; x < x0 + 32; ++x)
          for (int64_t y = y0; y < y0 + 32; ++y) table_t[x * kIntSide + y] = products[y * kIntSide + x];
    run_bucket(*path.kernels, table_t.data(), p, out, chunk_k, parallel);
    return;
  }
  // C^T = B^T . A^T: left patterns from B, right from A; table_t[r][s] =
  // products[r][s] (r: A's pattern, the table row) is the table itself.
  p.left = row_major(transposed(b), s.n, s.k, left_storage, &p.ld_left);
  p.right = row_major(transposed(a), s.k, s.m, right_storage, &p.ld_right);
  p.rows = s.n;
  p.cols = s.m;
  p.k = s.k;
  run_bucket(*path.kernels, products, p, Output<Out>{c, 1, ldc}, chunk_k, parallel);
}

// Every GEMM of a batch plan; `after(va, vb, out)` then runs on each one's operands and output.
template <class Out, class After>
void batched(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b, Out* c,
             const ParallelFor& parallel, After after) {
  const GemmShape& s = plan.shape;
  for (const BatchRun& run : plan.runs) {
    for (int64_t q = 0; q < run.count; ++q) {
      const IntMatrixView va{a + run.a_offset + q * run.a_stride, plan.a.row_stride, plan.a.col_stride};
      const IntMatrixView vb{b + run.b_offset + q * run.b_stride, plan.b.row_stride, plan.b.col_stride};
      Out* out = c + (run.begin + q) * s.m * s.n;
      int_gemm(products, s, va, vb, out, s.n, parallel);
      after(va, vb, out);
    }
  }
}

template <class Out>
void batched(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b, Out* c,
             const ParallelFor& parallel) {
  batched(products, plan, a, b, c, parallel, [](const IntMatrixView&, const IntMatrixView&, Out*) {});
}

// sum over k of v(r, k) for one row of an operand view (uint8 values).
int64_t row_sum(const uint8_t* row, int64_t stride, int64_t k) {
  int64_t total = 0;
  // uint32 blocks: 2^24 values of at most 255 cannot overflow; vectorizes.
  constexpr int64_t kBlock = int64_t{1} << 24;
  for (int64_t k0 = 0; k0 < k; k0 += kBlock) {
    const int64_t k1 = std::min(k, k0 + kBlock);
    uint32_t part = 0;
    if (stride == 1) {
      for (int64_t kk = k0; kk < k1; ++kk) part += row[kk];
    } else {
      for (int64_t kk = k0; kk < k1; ++kk) part += row[kk * stride];
    }
    total += part;
  }
  return total;
}

// sum over k of v(k, j) for every column j of a k x n operand view.
std::vector<int64_t> column_sums(const IntMatrixView& v, int64_t k, int64_t n) {
  std::vector<int64_t> sums(static_cast<size_t>(n), 0);
  if (v.col_stride != 1) {
    for (int64_t j = 0; j < n; ++j) sums[j] = row_sum(v.data + j * v.col_stride, v.row_stride, k);
    return sums;
  }
  // Row by row (unit stride), in uint32 blocks of k that cannot overflow.
  constexpr int64_t kBlock = int64_t{1} << 24;
  std::vector<uint32_t> part(static_cast<size_t>(n));
  for (int64_t k0 = 0; k0 < k; k0 += kBlock) {
    std::fill(part.begin(), part.end(), 0u);
    for (int64_t kk = k0; kk < std::min(k, k0 + kBlock); ++kk) {
      const uint8_t* row = v.data + kk * v.row_stride;
      for (int64_t j = 0; j < n; ++j) part[j] += row[j];
    }
    for (int64_t j = 0; j < n; ++j) sums[j] += part[j];
  }
  return sums;
}

// Adds the zero-point terms of one GEMM (batched_int_gemm_zero_point_cpu) to
// its table sums c (m x n, dense).
void add_zero_point_terms(const GemmShape& s, const IntMatrixView& a, const IntMatrixView& b, int64_t za,
                          const int32_t* zb, int64_t zb_count, int64_t* c, const ParallelFor& parallel) {
  const auto zb_at = [&](int64_t j) { return int64_t{zb[zb_count == 1 ? 0 : j]}; };
  bool any_zb = false;
  for (int64_t j = 0; j < zb_count; ++j) any_zb = any_zb || zb[j] != 0;
  if (za == 0 && !any_zb) return;
  // column_term[j] = za * (K * zb[j] - sum_k pb(k, j))
  std::vector<int64_t> column_term(static_cast<size_t>(s.n), 0);
  if (za != 0) {
    const std::vector<int64_t> b_sums = column_sums(b, s.k, s.n);
    for (int64_t j = 0; j < s.n; ++j) column_term[j] = za * (s.k * zb_at(j) - b_sums[j]);
  }
  parallel(s.m, s.k + 2 * s.n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t a_sum = any_zb ? row_sum(a.data + i * a.row_stride, a.col_stride, s.k) : 0;
      int64_t* out = c + i * s.n;
      if (zb_count == 1) {
        const int64_t row_term = zb[0] * a_sum;
        for (int64_t j = 0; j < s.n; ++j) out[j] += column_term[j] - row_term;
      } else {
        for (int64_t j = 0; j < s.n; ++j) out[j] += column_term[j] - zb[j] * a_sum;
      }
    }
  });
}

}  // namespace

int64_t int_products_max_abs(const int32_t* products) {
  int64_t lo = 0, hi = 0;
  for (int64_t e = 0; e < kIntSide * kIntSide; ++e) {
    lo = std::min<int64_t>(lo, products[e]);
    hi = std::max<int64_t>(hi, products[e]);
  }
  return std::max(-lo, hi);
}

int64_t int_safe_block_k(int64_t max_abs) {
  if (max_abs <= 0) return std::numeric_limits<int64_t>::max();
  // One product always fits (|INT32_MIN| = 2^31 gives 0 here).
  return std::max<int64_t>(1, int64_t{std::numeric_limits<int32_t>::max()} / max_abs);
}

const char* int_gemm_cpu_path(const GemmShape& shape) {
  const PathChoice path = choose_path(shape);
  if (path.kernels == nullptr) return "direct";
  static const std::string names[] = {"bucket-portable", "bucket-avx2", "bucket-avx512"};
  static const std::string transposed_names[] = {"bucket-portable/transposed", "bucket-avx2/transposed",
                                                 "bucket-avx512/transposed"};
  for (int i = 0; i < 3; ++i)
    if (names[i] == path.kernels->name) return path.transposed ? transposed_names[i].c_str() : names[i].c_str();
  return path.kernels->name;
}

void int_gemm_cpu(const int32_t* products, const GemmShape& shape, const IntMatrixView& a, const IntMatrixView& b,
                  int64_t* c, int64_t ldc, const ParallelFor& parallel) {
  int_gemm(products, shape, a, b, c, ldc, parallel);
}

void int_gemm_cpu(const int32_t* products, const GemmShape& shape, const IntMatrixView& a, const IntMatrixView& b,
                  int32_t* c, int64_t ldc, const ParallelFor& parallel) {
  int_gemm(products, shape, a, b, c, ldc, parallel);
}

void batched_int_gemm_cpu(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                          int64_t* c, const ParallelFor& parallel) {
  batched(products, plan, a, b, c, parallel);
}

void batched_int_gemm_cpu(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                          int32_t* c, const ParallelFor& parallel) {
  batched(products, plan, a, b, c, parallel);
}

void batched_int_gemm_zero_point_cpu(const int32_t* products, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                                     int32_t za, const int32_t* zb, int64_t zb_count, int64_t* c,
                                     const ParallelFor& parallel) {
  const GemmShape& s = plan.shape;
  batched(products, plan, a, b, c, parallel, [&](const IntMatrixView& va, const IntMatrixView& vb, int64_t* out) {
    if (s.m > 0 && s.n > 0) add_zero_point_terms(s, va, vb, za, zb, zb_count, out, parallel);
  });
}

}  // namespace amsim
