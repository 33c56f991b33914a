#include "amsim/cpu/gemm_blocked.h"

#include <algorithm>
#include <mutex>

#include "amsim/amsim.h"
#include "amsim/cpu/aligned_buffer.h"
#include "amsim/cpu/fp_env.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int64_t kMaxStripsPerTask = 4;
// Enough tasks for the pool to balance (it runs them in a few chunks per thread).
constexpr int64_t kMinTasks = 8;
// A streamed B with this few rows of A is not worth packing twice.
constexpr int64_t kStreamedMinRows = 4;
// Row tasks of a GEMM whose B is read in place over a long K (see gemm_blocked):
// enough for a few threads, each task still a whole tile or more.
constexpr int64_t kKOuterRowTasks = 4;

}  // namespace

int64_t words_per_k(RightLayout layout) {
  switch (layout) {
    case RightLayout::kLutBytes:
    case RightLayout::kLutHighBytes:
      return kLutWordsPerK;
    case RightLayout::kLutPlanes:
      return kLutPlanesWordsPerK;
    case RightLayout::kLutChunks:
      return kLutChunksWordsPerK;
    default:
      return kGatherWordsPerK;
  }
}

int64_t scales_offset(RightLayout layout) {
  switch (layout) {
    case RightLayout::kLutPlanes:
      return kStripCols / 4;
    case RightLayout::kLutChunks:
      return kStripCols / 2;
    default:
      return kStripCols;
  }
}

int64_t lut_row_bytes(RightLayout layout, int mantissa_bits) {
  if (layout == RightLayout::kLutHighBytes) return int64_t{1} << mantissa_bits;
  return std::max<int64_t>(128, int64_t{2} << mantissa_bits);
}

void special_products(const GemmPlan& plan, int64_t i, int64_t k, int64_t j0, int64_t ncols, float* out) {
  const float av = plan.a->at(i, k);
  for (int64_t j = 0; j < ncols; ++j) out[j] = am_multiply(av, plan.b->at(k, j0 + j), *plan.table);
}

void gemm_blocked(const BlockedPath& path, const Table& table, const GemmShape& shape, const MatrixView& a,
                  const MatrixView& b, float* c, int64_t ldc, const ParallelFor& parallel, bool accumulate,
                  const LeftRowPacker* left_rows, const ShiftedRight* shifted) {
  const int64_t m = shape.m, n = shape.n, k = shape.k;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  const int64_t strips = ceil_div(n, kStripCols), words = words_per_k(path.layout);
  // A short A (m <= one row block: a transposed narrow GEMM, a small batch)
  // reads each packed strip of B once: each task then packs its own strips,
  // one K block at a time, into a buffer that stays in cache, instead of
  // all of B up front.
  const bool stream_b = m <= 2 * path.block_rows && shifted == nullptr;

  const bool lut = path.layout != RightLayout::kGatherPairs;
  const int64_t row_bytes = lut_row_bytes(path.layout, table.mantissa_bits);
  AlignedBuffer<uint8_t> lut_rows(lut ? row_bytes * ((int64_t{1} << table.mantissa_bits) + 1) : 0);
  if (lut) split_rows_avx512(path.layout, table, lut_rows.data());
  AlignedBuffer<uint32_t> packed_b(stream_b || shifted != nullptr ? 0 : strips * k * words);
  AlignedBuffer<uint8_t> b_rounds_to_inf(stream_b ? 0 : k);
  ExponentRange b_range;
  if (shifted != nullptr) {
    std::fill(b_rounds_to_inf.data(), b_rounds_to_inf.data() + k, uint8_t{0});
    b_range = shifted->range;
  } else if (!stream_b) {
    std::mutex merge;
    parallel(k, n * 2, [&](int64_t k0, int64_t k1) {
      ExponentRange range;
      pack_b_avx512(path.layout, table, b, n, k0, k1, 0, strips, packed_b.data(), 0, k, b_rounds_to_inf.data(), &range);
      const std::lock_guard<std::mutex> lock(merge);
      b_range.merge(range);
    });
  }

  GemmPlan plan;
  plan.table = &table;
  plan.a = &a;
  plan.b = &b;
  plan.m = m;
  plan.n = n;
  plan.k = k;
  plan.packed_b = packed_b.data();
  plan.b_k_count = k;
  plan.words_per_k = words;
  plan.scales_offset = scales_offset(path.layout);
  plan.lut_rows = lut_rows.data();
  plan.lut_row_bytes = row_bytes;
  plan.c = c;
  plan.ldc = ldc;
  plan.shifted = shifted;

  // Tasks: row blocks x groups of strips, smaller when C is small so both
  // cores get work.  A streamed B is packed once per row block, so its rows
  // are split (in two) only when there is a single group of strips.
  int64_t strips_per_task =
      std::clamp<int64_t>(ceil_div(strips * ceil_div(m, path.block_rows), kMinTasks), 1, kMaxStripsPerTask);
  int64_t block_rows = path.block_rows;
  // B read in place over a long K (a filter gradient: K = output pixels, its
  // strips the taps, which read the same planes a few pixels apart): a task
  // takes every strip, K block by K block, so the planes under a K block stay
  // in L2 while all strips read them (by strips, each task streamed all the
  // planes from memory); tasks split the rows instead.
  const bool k_outer = shifted != nullptr && k > path.block_k;
  if (k_outer) {
    strips_per_task = strips;
    block_rows = std::min(path.block_rows, ceil_div(ceil_div(m, kKOuterRowTasks), 4) * 4);
  }
  const int64_t groups = ceil_div(strips, strips_per_task);
  if (stream_b)
    block_rows = groups > 1 || m <= kStreamedMinRows ? m : ceil_div(ceil_div(m, 2), 4) * 4;
  else if (!k_outer)
    while (block_rows > 4 && ceil_div(m, block_rows) * groups < kMinTasks) block_rows /= 2;
  const int64_t row_blocks = ceil_div(m, block_rows);

  // Each run of tasks packs the A rows of its row block when it reaches a new
  // one (consecutive tasks share a row block), so packed A stays small.
  parallel(row_blocks * groups, block_rows * strips_per_task * kStripCols * k / 4, [&](int64_t t0, int64_t t1) {
    FlushToZeroScope ftz;
    AlignedBuffer<LeftRef> packed_a(block_rows * k);
    AlignedBuffer<uint8_t> row_has_special(block_rows);
    AlignedBuffer<uint32_t> task_b(stream_b ? strips_per_task * path.block_k * words : 0);
    AlignedBuffer<uint8_t> task_b_rounds_to_inf(stream_b ? k : 0);
    GemmPlan task_plan = plan;
    task_plan.packed_a = packed_a.data();
    task_plan.row_has_special = row_has_special.data();
    task_plan.a_row0 = -1;
    // Packs A rows [i0, i1), columns [k0, k1); the products of the task's
    // operands (B's range given) decide whether the kernel may fuse.
    const auto pack_a_rows = [&](int64_t i0, int64_t i1, int64_t k0, int64_t k1, const uint8_t* rounds_to_inf,
                                 const ExponentRange& task_b_range) {
      ExponentRange a_range;
      if (left_rows != nullptr) {
        if (k0 == 0) left_rows->pack(i0, i1, packed_a.data());
        std::fill(row_has_special.data(), row_has_special.data() + (i1 - i0), uint8_t{0});
        a_range = left_rows->range;
      } else {
        pack_a_avx512(path.layout, table, a, k, i0, i1, k0, k1, rounds_to_inf, packed_a.data(), row_has_special.data(),
                      &a_range);
      }
      task_plan.a_row0 = i0;
      task_plan.fused_multiply_add = products_stay_normal(a_range, task_b_range);
    };
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / groups) * block_rows, i1 = std::min(m, i0 + block_rows);
      const int64_t s0 = (t % groups) * strips_per_task, s1 = std::min(strips, s0 + strips_per_task);
      if (!accumulate) {
        const int64_t j0 = s0 * kStripCols, j1 = std::min(n, s1 * kStripCols);
        for (int64_t i = i0; i < i1; ++i) std::fill(c + i * ldc + j0, c + i * ldc + j1, 0.0f);
      }
      if (!stream_b && task_plan.a_row0 != i0) pack_a_rows(i0, i1, 0, k, b_rounds_to_inf.data(), b_range);
      for (int64_t k0 = 0; k0 < k; k0 += path.block_k) {
        const int64_t k1 = std::min(k, k0 + path.block_k);
        if (stream_b) {
          // Which zeros of A are special depends on these columns of B only.
          ExponentRange task_b_range;
          pack_b_avx512(path.layout, table, b, n, k0, k1, s0, s1, task_b.data(), k0, k1 - k0,
                        task_b_rounds_to_inf.data(), &task_b_range);
          task_plan.packed_b = task_b.data();
          task_plan.b_strip0 = s0;
          task_plan.b_k0 = k0;
          task_plan.b_k_count = k1 - k0;
          pack_a_rows(i0, i1, k0, k1, task_b_rounds_to_inf.data(), task_b_range);
        }
        path.kernel(task_plan, i0, i1, s0, s1, k0, k1);
      }
    }
  });
}

}  // namespace cpu
}  // namespace amsim
