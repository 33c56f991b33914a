#include "amsim/cpu/gemm_blocked.h"

#include <algorithm>
#include <cstring>

#include "amsim/cpu/aligned_buffer.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/packed_operands.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int64_t kMaxStripsPerTask = 4;
// Enough tasks for the pool to balance (it runs them in a few chunks per thread).
constexpr int64_t kMinTasks = 8;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t words_per_k(RightLayout layout) { return layout == RightLayout::kLutBytes ? 2 * kStripCols : 3 * kStripCols; }

// One right operand in the layout of its path.  kLutBytes: index dword
// [0x00, ib, ib, 0x3F] (bytes low to high) -- the kernels overwrite bytes 1
// and 2 with the entry's low and high byte, leaving t(entry) as a float.
// kGatherPairs: ib rounded down to even (the gather reads the aligned pair of
// entries) and the byte-shuffle control that picks the entry out of the pair
// into bytes 1..2 of the lane.
void pack_right_block(RightLayout layout, const PackedRight& r, int64_t lane, uint32_t* idx, uint32_t* scale,
                      uint32_t* ctrl) {
  scale[lane] = float_bits(r.scale);
  if (layout == RightLayout::kLutBytes) {
    idx[lane] = kPresetExponentBits | (r.index << 16) | (r.index << 8);
  } else {
    idx[lane] = r.index & ~1u;
    const uint32_t first = 4u * uint32_t(lane % 4) + 2u * (r.index & 1u);  // byte of the entry within its 128-bit lane
    ctrl[lane] = 0x80000080u | ((first + 1u) << 16) | (first << 8);
  }
}

// Also flags the rows k of B holding a finite value that rounds to infinity.
void pack_b(RightLayout layout, const Table& table, const MatrixView& b, int64_t k, int64_t n, uint32_t* out,
            uint8_t* rounds_to_inf, const ParallelFor& parallel) {
  const int64_t words = words_per_k(layout), strips = ceil_div(n, kStripCols);
  const PackedRight padding{0u, 0.0f};  // lanes past n: products of +0, never stored
  parallel(k, n * 10, [&](int64_t k0, int64_t k1) {
    for (int64_t kk = k0; kk < k1; ++kk) {
      bool any = false;
      for (int64_t s = 0; s < strips; ++s) {
        uint32_t* base = out + (s * k + kk) * words;
        for (int64_t lane = 0; lane < kStripCols; ++lane) {
          const int64_t j = s * kStripCols + lane;
          PackedRight r = padding;
          if (j < n) {
            const float bv = b.at(kk, j);
            r = pack_right(bv, table.mantissa_bits, table.rounding);
            any |= rounds_to_infinity(bv, table.mantissa_bits, table.rounding);
          }
          pack_right_block(layout, r, lane, base, base + kStripCols, base + 2 * kStripCols);
        }
      }
      rounds_to_inf[kk] = any;
    }
  });
}

void pack_a(const Table& table, const MatrixView& a, int64_t m, int64_t k, const uint8_t* b_rounds_to_inf,
            LeftRef* out, uint8_t* row_has_special, const ParallelFor& parallel) {
  parallel(m, k * 10, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      bool special = false;
      for (int64_t kk = 0; kk < k; ++kk) {
        const float av = a.at(i, kk);
        const PackedLeft p = pack_left(av, table.mantissa_bits, table.rounding);
        const bool exact = p.special || (b_rounds_to_inf[kk] && is_zero_operand(av));
        out[i * k + kk] = exact ? LeftRef{kSpecialRow, 0.0f} : LeftRef{p.row_offset >> table.mantissa_bits, p.scale};
        special |= exact;
      }
      row_has_special[i] = special;
    }
  });
}

// Row ia of the table split into its entries' low bytes (bytes 0..127) and
// high bytes (128..255), the form the byte-permute kernels load.
void split_rows(const Table& table, uint8_t* out) {
  const int64_t side = int64_t{1} << table.mantissa_bits;
  std::memset(out, 0, static_cast<size_t>(side * 256));
  for (int64_t ia = 0; ia < side; ++ia) {
    for (int64_t ib = 0; ib < side; ++ib) {
      const uint16_t e = table.entries[ia * side + ib];
      out[ia * 256 + ib] = uint8_t(e & 0xffu);
      out[ia * 256 + 128 + ib] = uint8_t(e >> 8);
    }
  }
}

}  // namespace

void special_products(const GemmPlan& plan, int64_t i, int64_t k, int64_t j0, int64_t ncols, float* out) {
  const float av = plan.a->at(i, k);
  for (int64_t j = 0; j < ncols; ++j) out[j] = am_multiply(av, plan.b->at(k, j0 + j), *plan.table);
}

void gemm_blocked(const BlockedPath& path, const Table& table, const GemmShape& shape, const MatrixView& a,
                  const MatrixView& b, float* c, int64_t ldc, const ParallelFor& parallel, bool accumulate) {
  const int64_t m = shape.m, n = shape.n, k = shape.k;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  const int64_t strips = ceil_div(n, kStripCols), words = words_per_k(path.layout);

  AlignedBuffer<uint32_t> packed_b(strips * k * words);
  AlignedBuffer<LeftRef> packed_a(m * k);
  AlignedBuffer<uint8_t> row_has_special(m);
  AlignedBuffer<uint8_t> lut_rows(path.layout == RightLayout::kLutBytes ? (int64_t{256} << table.mantissa_bits) : 0);
  AlignedBuffer<uint8_t> b_rounds_to_inf(k);
  pack_b(path.layout, table, b, k, n, packed_b.data(), b_rounds_to_inf.data(), parallel);
  pack_a(table, a, m, k, b_rounds_to_inf.data(), packed_a.data(), row_has_special.data(), parallel);
  if (path.layout == RightLayout::kLutBytes) split_rows(table, lut_rows.data());

  GemmPlan plan;
  plan.table = &table;
  plan.a = &a;
  plan.b = &b;
  plan.m = m;
  plan.n = n;
  plan.k = k;
  plan.packed_a = packed_a.data();
  plan.row_has_special = row_has_special.data();
  plan.packed_b = packed_b.data();
  plan.words_per_k = words;
  plan.lut_rows = lut_rows.data();
  plan.c = c;
  plan.ldc = ldc;

  // Tasks: row blocks x groups of strips, smaller when C is small so both
  // cores get work.
  int64_t strips_per_task = std::clamp<int64_t>(ceil_div(strips * ceil_div(m, path.block_rows), kMinTasks), 1,
                                                kMaxStripsPerTask);
  const int64_t groups = ceil_div(strips, strips_per_task);
  int64_t block_rows = path.block_rows;
  while (block_rows > 4 && ceil_div(m, block_rows) * groups < kMinTasks) block_rows /= 2;
  const int64_t row_blocks = ceil_div(m, block_rows);

  parallel(row_blocks * groups, block_rows * strips_per_task * kStripCols * k / 4, [&](int64_t t0, int64_t t1) {
    FlushToZeroScope ftz;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / groups) * block_rows, i1 = std::min(m, i0 + block_rows);
      const int64_t s0 = (t % groups) * strips_per_task, s1 = std::min(strips, s0 + strips_per_task);
      if (!accumulate) {
        const int64_t j0 = s0 * kStripCols, j1 = std::min(n, s1 * kStripCols);
        for (int64_t i = i0; i < i1; ++i) std::fill(c + i * ldc + j0, c + i * ldc + j1, 0.0f);
      }
      for (int64_t k0 = 0; k0 < k; k0 += path.block_k) {
        const int64_t k1 = std::min(k, k0 + path.block_k);
        for (int64_t s = s0; s < s1; ++s) path.kernel(plan, i0, i1, s, k0, k1);
      }
    }
  });
}

}  // namespace cpu
}  // namespace amsim
