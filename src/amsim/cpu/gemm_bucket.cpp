// The bucket GEMM driver (gemm_bucket.h): operand packing, the float table,
// blocking, threads and the exact rows.  Baseline code; the expansion and the
// panel of adds are the ISA kernels' (gemm_bucket_avx2.cpp, _portable.cpp).
#include "amsim/cpu/gemm_bucket.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "amsim/amsim.h"
#include "amsim/content_cache.h"
#include "amsim/cpu/aligned_buffer.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/gemm_blocked.h"
#include "amsim/cpu/gemm_generic.h"

namespace amsim {
namespace cpu {

namespace {

constexpr uint32_t kSignExponentMask = 0xff800000u;
// T of one K block sized for L2 (with the C rows and packed A beside it);
// measured at 1024^3 and 8192 x 64 x 576 on Zen 4 (1 MiB L2).
constexpr int64_t kTBlockBytes = int64_t{512} << 10;
constexpr int kWideTableBits = 9;
constexpr int64_t kWideTBlockBytes = int64_t{1} << 20;
constexpr int64_t kMaxBlockK = 64;
// Columns of C per task (a T block's columns): 64, or 32 for wide tables.
constexpr int64_t kBlockCols = 64;
constexpr int64_t kWideBlockCols = 32;
// Rows of a column-major selecting operand packed together: 16 floats, one cache line per k.
constexpr int64_t kLeftGroup = 16;
// Tasks per GEMM the driver aims at: each task expands its own T, so more
// row parts than threads need cost expansions for nothing.
constexpr int64_t kTargetTasks = 4;
// ... and a part has at least this many rows, and 4 x 2^M (expansion <= 1/4 of the adds).
constexpr int64_t kMinRowsPerPart = 96;

// Cost model (ns on one Zen 4 core at 1024^3, 8192 x 64 x 576 and 64^3;
// gemm.cpp weighs it against the other paths' ns per multiply-add).  The
// panel's own cost per row x k is the kernels' (BucketKernels::tile_ns,
// vector_ns); the rest is here.
constexpr double kWideFactor = 1.6;  // M >= kWideTableBits (T rows miss L1 more)
constexpr double kExpandNs = 0.25;  // per T element
constexpr double kTableNs = 0.05;  // per table entry (comparing the kept float table's source)
constexpr double kPackLeftNs = 0.15;  // per selecting operand packed, once per column block
constexpr double kPackRightNs = 2.0;  // per expanded operand packed

// An operand after step 2 of the contract, as the bucket method uses it.
enum class Kind : uint8_t { kZero, kOrdinary, kInfNaN, kRoundsToInf };
struct Packed {
  uint32_t index;  // reduced fraction
  float scale;  // sign * 2^(e - 127), +-0, or the value itself (inf/NaN)
  uint32_t exponent;
  Kind kind;
};

inline uint32_t rounding_bias(uint32_t u, int shift, Rounding rounding) {
  return rounding == Rounding::kNearestEven ? ((1u << (shift - 1)) - 1u) + ((u >> shift) & 1u) : 0u;
}

// The float table entry (1 + fraction / 2^15) * 2^carry.
inline float entry_value(uint16_t entry) {
  return bits_float(((127u + (entry >> 15)) << 23) | (uint32_t(entry & 0x7fffu) << 8));
}

// Nearest-even rounding as one integer add (a carry out of the fraction
// lands in the exponent, as reduce_operand() carries it).
inline Packed pack_value(float x, int mantissa_bits, Rounding rounding) {
  const uint32_t u = float_bits(x);
  const uint32_t e0 = (u >> 23) & 0xffu;
  if (e0 == 0) return {0u, bits_float(u & kSignMask), 0u, Kind::kZero};
  if (e0 == 0xffu) return {0u, (u & 0x7fffffu) ? bits_float(kQuietNaNBits) : x, 0xffu, Kind::kInfNaN};
  const int shift = 23 - mantissa_bits;
  const uint32_t r = u + rounding_bias(u, shift, rounding);
  const uint32_t e = (r >> 23) & 0xffu;
  if (e == 0xffu) return {0u, bits_float((u & kSignMask) | kInfBits), e, Kind::kRoundsToInf};
  return {(r >> shift) & ((1u << mantissa_bits) - 1u), bits_float(r & kSignExponentMask), e, Kind::kOrdinary};
}

// table_t[x][s] = the entry of (x, s << ignored) as a float, contiguous over
// the selecting fraction s for one expanded fraction x; (x, s) is (ib, ia),
// or (ia, ib) when the GEMM runs transposed.  Made once per table and
// orientation and kept (content_cache.h): a training step runs the same few
// tables in every GEMM, and making one costs 2^(2M) conversions (a million
// for M = 10) against a compare of its 2^(2M) entries when kept.
using FloatTable = std::shared_ptr<const std::vector<float>>;
constexpr size_t kCachedFloatTables = 8;  // forward and two gradient multipliers, both orientations

FloatTable float_table(const Table& table, bool left_is_b, int selecting_bits, const ParallelFor& parallel) {
  static ContentCache<FloatTable>& cache = *new ContentCache<FloatTable>(kCachedFloatTables);  // never destroyed
  const int64_t side = int64_t{1} << table.mantissa_bits, t_side = int64_t{1} << selecting_bits;
  const int ignored = table.mantissa_bits - selecting_bits;
  // The selecting bits follow from the contents, so (M, orientation) tags the value.
  const int64_t tag = int64_t{table.mantissa_bits} * 2 + (left_is_b ? 1 : 0);
  FloatTable out;
  cache.get(
      tag, table.entries, static_cast<size_t>(side * side) * sizeof(uint16_t),
      [&](FloatTable* made) {
        auto values = std::make_shared<std::vector<float>>(static_cast<size_t>(side * t_side));
        float* t = values->data();
        // In 32 x 32 tiles: one of the two sides is read or written across rows.
        constexpr int64_t kTile = 32;
        parallel(ceil_div(side, kTile), t_side * kTile * 2, [&](int64_t b0, int64_t b1) {
          for (int64_t x0 = b0 * kTile; x0 < std::min(side, b1 * kTile); x0 += kTile)
            for (int64_t s0 = 0; s0 < t_side; s0 += kTile)
              for (int64_t x = x0; x < std::min(side, x0 + kTile); ++x)
                for (int64_t s = s0; s < std::min(t_side, s0 + kTile); ++s) {
                  const int64_t fraction = s << ignored;
                  const int64_t ia = left_is_b ? x : fraction, ib = left_is_b ? fraction : x;
                  t[x * t_side + s] = entry_value(table.entries[ia * side + ib]);
                }
        });
        *made = std::move(values);
        return true;
      },
      &out);
  return out;
}

// Whether every entry equals the one whose selecting fraction differs in
// bit `bit` (the selecting operand is A, or B when left_is_b).  Checked
// for bit 0, 1, ... in turn, this finds the low bits no entry depends on.
// Runs on every cost estimate, so it is kept cheap: whole rows compared,
// or along a row runs of entries (for bit 0 adjacent pairs, in a loop the
// compiler vectorizes); a table that reads the bit differs within its
// first rows.
bool ignores_bit(const Table& table, bool left_is_b, int bit) {
  const int64_t side = int64_t{1} << table.mantissa_bits, step = int64_t{1} << bit;
  const uint16_t* e = table.entries;
  if (!left_is_b) {  // rows s and s + step, s with the bit clear
    for (int64_t s = 0; s < side; s += 2 * step)
      if (std::memcmp(e + s * side, e + (s + step) * side, static_cast<size_t>(step * side) * sizeof(uint16_t)) != 0)
        return false;
    return true;
  }
  for (int64_t x = 0; x < side; ++x) {  // along row x: entries s and s + step
    const uint16_t* row = e + x * side;
    if (bit == 0) {
      uint32_t differs = 0;
      for (int64_t s = 0; s < side; s += 2) differs |= uint32_t(row[s] ^ row[s + 1]);
      if (differs) return false;
    } else {
      for (int64_t s = 0; s < side; s += 2 * step)
        if (std::memcmp(row + s, row + s + step, static_cast<size_t>(step) * sizeof(uint16_t)) != 0) return false;
    }
  }
  return true;
}

// ns per row x k of the panel over `cols` columns: full tiles, then one of
// the tail's vectors.
double panel_row_ns(const BucketKernels& kernels, int64_t cols, int mantissa_bits) {
  const int64_t full = cols / kernels.tile_cols;
  const int64_t tail_vectors = ceil_div(cols % kernels.tile_cols, kernels.vector_cols);
  const double tile_vectors = double(kernels.tile_cols / kernels.vector_cols);
  double ns = double(full) * (kernels.tile_ns + tile_vectors * kernels.vector_ns);
  if (tail_vectors > 0) ns += kernels.tile_ns + double(tail_vectors) * kernels.vector_ns;
  return mantissa_bits >= kWideTableBits ? ns * kWideFactor : ns;
}

double oriented_cost(const BucketKernels& kernels, int64_t rows, int64_t cols, int64_t k, int mantissa_bits,
                     int selecting_bits) {
  const double side = double(int64_t{1} << selecting_bits);
  const double padded = double(ceil_div(cols, kernels.vector_cols) * kernels.vector_cols);
  return double(k) * (double(rows) * panel_row_ns(kernels, cols, selecting_bits) + padded * side * kExpandNs) +
         double(int64_t{1} << mantissa_bits) * side * kTableNs +
         double(k) * (double(rows) * kPackLeftNs * double(ceil_div(cols, kBlockCols)) + double(cols) * kPackRightNs);
}

// One orientation of the method: C (rows x cols, ldc) = L . R, where L's
// fraction selects the T row and R is expanded; table_t[x][s] is the product
// entry of R-fraction x and L-fraction s; `product` is am_multiply with the
// operands in the contract's order (for the special rows).
struct Problem {
  MatrixView left, right;
  int64_t rows, cols, k;
  float* c;
  int64_t ldc;
  bool accumulate;
  bool left_is_b;  // runs transposed: L = B^T, R = A^T
  int selecting_bits;  // of L's fraction (bucket_selecting_bits): T has 2^this rows
};

// The method's cost selecting on A (C as is) and on B (C^T), each with the
// fraction bits the table reads of that operand.
struct Orientations {
  int a_bits, b_bits;
  double direct, transposed;
};

Orientations orientations(const BucketKernels& kernels, const Table& table, const GemmShape& shape) {
  const int m = table.mantissa_bits;
  const int a_bits = bucket_selecting_bits(table, false), b_bits = bucket_selecting_bits(table, true);
  return {a_bits, b_bits, oriented_cost(kernels, shape.m, shape.n, shape.k, m, a_bits),
          oriented_cost(kernels, shape.n, shape.m, shape.k, m, b_bits)};
}

bool run_oriented(const BucketKernels& kernels, const Table& table, const Problem& p, const ParallelFor& parallel) {
  const int mbits = table.mantissa_bits;
  const int sbits = p.selecting_bits, ignored = mbits - sbits;
  const Rounding rounding = table.rounding;
  const int64_t side = int64_t{1} << sbits, rows = p.rows, cols = p.cols, k = p.k;  // side: T rows

  // The expanded operand, packed once: a reduced exponent >= 254 would
  // overflow T, and a value that rounds to infinity would meet a zero
  // left operand as inf * 0: the caller takes another path.
  std::vector<uint16_t> r_index(static_cast<size_t>(k * cols));
  std::vector<float> r_scale(static_cast<size_t>(k * cols));
  ExponentRange r_range;
  bool unsafe = false;
  std::mutex merge;
  const bool r_by_rows = p.right.col_stride == 1 || p.right.row_stride != 1;
  parallel(k, cols * 8, [&](int64_t k0, int64_t k1) {
    ExponentRange range;
    bool bad = false;
    const auto one = [&](int64_t kk, int64_t j) {
      const Packed v = pack_value(p.right.at(kk, j), mbits, rounding);
      r_index[kk * cols + j] = static_cast<uint16_t>(v.index);
      r_scale[kk * cols + j] = v.scale;
      if (v.kind == Kind::kOrdinary) {
        bad |= v.exponent >= 254u;
        range.min = std::min(range.min, v.exponent);
        range.max = std::max(range.max, v.exponent);
      }
      bad |= v.kind == Kind::kRoundsToInf;
    };
    if (r_by_rows) {
      for (int64_t kk = k0; kk < k1; ++kk)
        for (int64_t j = 0; j < cols; ++j) one(kk, j);
    } else {
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t kk = k0; kk < k1; ++kk) one(kk, j);
    }
    const std::lock_guard<std::mutex> lock(merge);
    r_range.merge(range);
    unsafe |= bad;
  });
  if (unsafe) return false;

  // Wide tables: T rows of 32 columns, and a larger T block, so a K block
  // still holds several k (each k costs a load and store of the C tile).
  const bool wide = sbits >= kWideTableBits;
  const int64_t block_cols = wide ? kWideBlockCols : kBlockCols;
  const int64_t t_block_bytes = wide ? kWideTBlockBytes : kTBlockBytes;
  const int64_t col_blocks = ceil_div(cols, block_cols);
  // Every column block's T rows are ldt apart (a narrower last block pads).
  const int64_t ldt = ceil_div(std::min(cols, block_cols), kernels.vector_cols) * kernels.vector_cols;
  // As many k per block as a table reading all M bits gets: a table that
  // reads fewer has a smaller T block, not a longer one (1024^3, 8192 x 64
  // x 576 and LeNet-300-100's GEMMs timed alike within noise, in half the memory).
  const int64_t block_k = std::clamp<int64_t>(t_block_bytes / ((int64_t{1} << mbits) * ldt * 4), 1, kMaxBlockK);

  const FloatTable table_t = float_table(table, p.left_is_b, sbits, parallel);
  const int64_t row_parts = std::clamp<int64_t>(ceil_div(kTargetTasks, col_blocks), 1,
                                                std::max<int64_t>(1, rows / std::max(kMinRowsPerPart, 4 * side)));
  const int64_t rows_per_part = ceil_div(rows, row_parts);

  // A selecting operand whose rows are adjacent in memory (a transposed view:
  // the patch matrix of a filter gradient, K-major patch lines) is read
  // kLeftGroup rows at a time, one cache line per k, into a small row-major
  // tile: packing it row by row would stride through the whole operand once
  // per row.  The packed values are the same either way.
  const bool left_rows_adjacent = p.left.row_stride == 1 && p.left.col_stride != 1;

  // The rows holding an inf, a NaN or a value that rounds to infinity:
  // their products come from am_multiply() below.  Every task of a row part
  // finds the same ones; the first column block's tasks record them.
  std::vector<int64_t> special_rows;

  // Each task packs its rows' selecting operand K block by K block, just
  // before the panel reads it (cache-resident, and no copy of the whole
  // operand: at 32768 x 64 x 576 that copy was 75 MB of page faults and
  // memory traffic), so each K block's exponent range decides whether that
  // block's multiply-adds may fuse.
  parallel(row_parts * col_blocks, rows_per_part * block_cols * k / 8 + 1, [&](int64_t t0, int64_t t1) {
    FlushToZeroScope ftz;
    AlignedBuffer<float> t(block_k * side * ldt);
    // The task's C block, accumulated in rows ldt apart: C's own rows may
    // be a power of two apart (4 KiB at 1024 columns), and a block of them
    // maps to a few cache sets, falling out of L2 between K blocks.
    AlignedBuffer<float> c_block(rows_per_part * ldt);
    AlignedBuffer<BucketLeft> left(rows_per_part * block_k);
    std::vector<float> tile(left_rows_adjacent ? static_cast<size_t>(kLeftGroup * block_k) : 0);
    std::vector<uint8_t> special(static_cast<size_t>(rows_per_part)), block_special(special.size());
    std::vector<const BucketLeft*> a_rows(static_cast<size_t>(rows_per_part));
    std::vector<float*> c_rows(static_cast<size_t>(rows_per_part));
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t part = task / col_blocks, cb = task % col_blocks;
      const int64_t r0 = part * rows_per_part, r1 = std::min(rows, r0 + rows_per_part);
      const int64_t j0 = cb * block_cols, j1 = std::min(cols, j0 + block_cols);
      const int64_t nr = r1 - r0;
      if (nr <= 0) continue;
      const auto c_at = [&](int64_t r) { return p.c + (r0 + r) * p.ldc + j0; };
      for (int64_t r = 0; r < nr; ++r) {
        float* line = c_block.data() + r * ldt;
        if (p.accumulate)
          std::copy(c_at(r), c_at(r) + (j1 - j0), line);
        else
          std::fill(line, line + (j1 - j0), 0.0f);
      }
      std::fill(special.begin(), special.begin() + nr, uint8_t{0});
      int64_t live = -1;  // rows the panels take (the ordinary ones), listed again when one turns special
      for (int64_t k0 = 0; k0 < k; k0 += block_k) {
        const int64_t kc = std::min(block_k, k - k0);
        ExponentRange l_range;
        if (!left_rows_adjacent) {
          const BucketLeftBlock block{p.left.data + r0 * p.left.row_stride + k0 * p.left.col_stride,
                                      p.left.row_stride,
                                      p.left.col_stride,
                                      nr,
                                      kc,
                                      left.data(),
                                      block_k};
          kernels.pack_left(block, mbits, ignored, rounding, block_special.data(), &l_range.min, &l_range.max);
        } else {
          for (int64_t g = 0; g < nr; g += kLeftGroup) {
            const int64_t gn = std::min(nr - g, kLeftGroup);
            for (int64_t kk = 0; kk < kc; ++kk) {
              const float* src = p.left.data + r0 + g + (k0 + kk) * p.left.col_stride;
              for (int64_t r = 0; r < gn; ++r) tile[r * block_k + kk] = src[r];
            }
            const BucketLeftBlock block{tile.data(), block_k, 1, gn, kc, left.data() + g * block_k, block_k};
            kernels.pack_left(block, mbits, ignored, rounding, block_special.data() + g, &l_range.min, &l_range.max);
          }
        }
        bool newly_special = false;
        for (int64_t r = 0; r < nr; ++r) {
          newly_special |= block_special[r] && !special[r];
          special[r] |= block_special[r];
        }
        if (live < 0 || newly_special) {
          live = 0;
          for (int64_t r = 0; r < nr; ++r) {
            if (special[r]) continue;
            a_rows[live] = left.data() + r * block_k;
            c_rows[live] = c_block.data() + r * ldt;
            ++live;
          }
        }
        BucketExpansion e;
        e.table_t = table_t->data();
        e.selecting_bits = sbits;
        e.index = r_index.data() + k0 * cols + j0;
        e.scale = r_scale.data() + k0 * cols + j0;
        e.ld_in = cols;
        e.kc = kc;
        e.ncols = j1 - j0;
        e.ldt = ldt;
        e.out = t.data();
        kernels.expand(e);
        BucketPanel panel;
        panel.t = t.data();
        panel.kc = kc;
        panel.t_k_stride = side * ldt;
        panel.ldt = ldt;
        panel.ncols = j1 - j0;
        panel.a_rows = a_rows.data();
        panel.c_rows = c_rows.data();
        panel.rows = live;
        panel.fused = products_stay_normal(l_range, r_range);
        kernels.panel(panel);
      }
      for (int64_t r = 0; r < nr; ++r)
        if (!special[r]) std::copy(c_block.data() + r * ldt, c_block.data() + r * ldt + (j1 - j0), c_at(r));
      if (cb == 0 && std::find(special.begin(), special.begin() + nr, uint8_t{1}) != special.begin() + nr) {
        const std::lock_guard<std::mutex> lock(merge);
        for (int64_t r = 0; r < nr; ++r)
          if (special[r]) special_rows.push_back(r0 + r);
      }
    }
  });

  // The special rows, element by element from am_multiply() (k ascending).
  gemm_rows_exactly(table, p.left, p.right, p.left_is_b, special_rows, cols, k, p.c, p.ldc, p.accumulate, parallel);
  return true;
}

}  // namespace

double bucket_least_ns_per_mac(const BucketKernels& kernels) {
  return panel_row_ns(kernels, kernels.tile_cols, 0) / double(kernels.tile_cols);
}

int bucket_selecting_bits(const Table& table, bool left_is_b) {
  if (table.entries == nullptr) return table.mantissa_bits;  // a path asked for by width alone
  int ignored = 0;
  while (ignored < table.mantissa_bits && ignores_bit(table, left_is_b, ignored)) ++ignored;
  return table.mantissa_bits - ignored;
}

double bucket_cost(const BucketKernels& kernels, const Table& table, const GemmShape& shape) {
  const Orientations o = orientations(kernels, table, shape);
  return std::min(o.direct, o.transposed);
}

bool gemm_bucket(const BucketKernels& kernels, const Table& table, const GemmShape& shape, const MatrixView& a,
                 const MatrixView& b, float* c, int64_t ldc, const ParallelFor& parallel, bool accumulate) {
  if (gemm_empty(shape, c, ldc, accumulate)) return true;
  const int64_t m = shape.m, n = shape.n, k = shape.k;
  const Orientations o = orientations(kernels, table, shape);
  if (!(o.transposed < o.direct))
    return run_oriented(kernels, table, Problem{a, b, m, n, k, c, ldc, accumulate, false, o.a_bits}, parallel);
  // C^T = B^T . A^T: op(B)^T and op(A)^T are the same data with swapped strides.
  return gemm_through_transposed_c(shape, c, ldc, accumulate, parallel, [&](float* ct) {
    return run_oriented(kernels, table,
                        Problem{transposed(b), transposed(a), n, m, k, ct, m, accumulate, true, o.b_bits}, parallel);
  });
}

}  // namespace cpu
}  // namespace amsim
