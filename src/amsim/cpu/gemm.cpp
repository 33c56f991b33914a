// GEMM entry points: shape checks, batching and the run-time choice of path.
#include "amsim/gemm.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "amsim/cpu/aligned_buffer.h"
#include "amsim/cpu/cpu_features.h"
#include "amsim/cpu/fp_env.h"
#include "amsim/cpu/gemm_blocked.h"
#include "amsim/cpu/gemm_bucket.h"
#include "amsim/cpu/gemm_float.h"
#include "amsim/cpu/gemm_generic.h"
#include "amsim/cpu/gemm_packed_left.h"
#include "amsim/cpu/gemm_shifted.h"
#include "amsim/cpu/multiply_simd.h"
#include "amsim/cpu/separable_table.h"
#include "amsim/packed_operands.h"

namespace amsim {

namespace {

// Register-table kernels: the whole table row of a left operand in zmm
// registers.  M <= 6: one permute per 16 products.
constexpr cpu::BlockedPath kLutPath{cpu::lut_block_avx512vbmi, cpu::RightLayout::kLutBytes, 64, 256};
// M = 7 whose entries fit their high byte: the same, over the 128 high bytes.
constexpr cpu::BlockedPath kLutHighPath{cpu::lut_high_block_avx512vbmi, cpu::RightLayout::kLutHighBytes, 64, 256};
// M = 7: byte planes looked up for 64 columns at once, then assembled.
constexpr cpu::BlockedPath kLutPlanesPath{cpu::lut_planes_block_avx512vbmi, cpu::RightLayout::kLutPlanes, 64, 256};
// M = 8..11: the same with the row's byte planes in 128-entry chunks.
constexpr cpu::BlockedPath kLutChunksPath{cpu::lut_chunks_block_avx512vbmi, cpu::RightLayout::kLutChunks, 64, 256};
// Gather kernel: any M; the path for tables too large for registers.
constexpr cpu::BlockedPath kGatherPath{cpu::gather_block_avx512, cpu::RightLayout::kGatherPairs, 32, 256};

// Below this many multiply-adds a GEMM of a batch runs on one thread.
constexpr int64_t kSmallGemmMacs = int64_t{1} << 20;
// With at least this many GEMMs per thread, threads take whole GEMMs whatever their size.
constexpr int64_t kGemmsPerThread = 4;

constexpr int kMaxLutMantissaBits = 7;  // 2^7 entries per row: two zmm per byte plane (kLutPlanesPath)

bool high_byte_entries(const Table& table) {
  if (table.entry_bytes != EntryBytes::kUnknown) return table.entry_bytes == EntryBytes::kHighOnly;
  if (table.entries == nullptr) return false;
  // In chunks, so a table with low bytes (most) answers after a few entries.
  constexpr int64_t kChunk = 256;
  for (int64_t e0 = 0; e0 < table.size(); e0 += kChunk) {
    uint16_t low_bits = 0;
    for (int64_t e = e0; e < std::min(e0 + kChunk, table.size()); ++e) low_bits |= table.entries[e];
    if (low_bits & 0xffu) return false;
  }
  return true;
}

// The SIMD path for this table on this CPU, nullptr for the generic one
// (narrowed by APPROXTRAIN_CPU_PATH, cpu_features.h).  A table without
// entries stands for any table of its width.
const cpu::BlockedPath* blocked_path(const Table& table) {
  const int mantissa_bits = table.mantissa_bits;
  static const bool vbmi = cpu::has_avx512_vbmi();
  static const bool avx512 = cpu::has_avx512_bw();
  if (cpu::forced_path_is("generic")) return nullptr;
  if (cpu::forced_path_is("avx512-gather")) return avx512 ? &kGatherPath : nullptr;
  if (cpu::forced_path_is("avx2") || cpu::forced_path_is("bucket-portable") || cpu::forced_path_is("no-avx512"))
    return nullptr;  // as on a CPU without AVX-512
  // "bucket-avx512" leaves this choice as it is: it is the path of GEMMs the
  // bucket method declines.
  if (vbmi && mantissa_bits == kMaxLutMantissaBits) return high_byte_entries(table) ? &kLutHighPath : &kLutPlanesPath;
  if (vbmi && mantissa_bits < kMaxLutMantissaBits) return &kLutPath;
  if (vbmi) return &kLutChunksPath;
  if (avx512) return &kGatherPath;
  return nullptr;
}

// Transposing a table costs 4^M entries: only worth it for small tables.
constexpr int kMaxTransposedTableBits = 8;

// Fraction of SIMD lanes doing useful work when C has `columns` columns.
double lane_use(int64_t columns) {
  // Lanes of the SIMD kernels run over columns of C in strips of cpu::kStripCols.
  const int64_t strips = ceil_div(columns, cpu::kStripCols);
  return strips == 0 ? 1.0 : double(columns) / double(strips * cpu::kStripCols);
}

std::vector<uint16_t> transposed_entries(const Table& table) {
  const int64_t side = int64_t{1} << table.mantissa_bits;
  std::vector<uint16_t> t(static_cast<size_t>(side * side));
  for (int64_t ia = 0; ia < side; ++ia)
    for (int64_t ib = 0; ib < side; ++ib) t[ib * side + ia] = table.entries[ia * side + ib];
  return t;
}

// --- the bucket method (gemm_bucket.h) and the per-shape choice ---

// Tables of at least this M keep the AVX2 bucket kernels on AVX-512 CPUs:
// with 2^M T rows of 32 columns, fp16m (M = 10) ran 8192 x 64 x 576 and
// 32768 x 64 x 576 in 31 and 99 ms with them, 48 and 139 ms with the
// 512-bit panel (Intel Xeon, two threads, `bench --section core_cpu`).
constexpr int kMinAvx2BucketBits = 9;

// Its kernels on this CPU for this table, nullptr where it has none: the
// AVX-512 panel, else AVX2 + FMA on x86, the portable kernels elsewhere
// (NEON through the compiler), or as forced.
const cpu::BucketKernels* bucket_kernels(const Table& table) {
  static const bool avx2 = cpu::has_avx2_fma();
  static const bool avx512 = avx2 && cpu::has_avx512_bw() && cpu::bucket_kernels_avx512() != nullptr;
  if (cpu::forced_path_is("generic") || cpu::forced_path_is("avx512-gather") || cpu::forced_path_is("avx512"))
    return nullptr;
  if (cpu::forced_path_is("bucket-portable")) return AMSIM_HAVE_FTZ_MODE ? cpu::bucket_kernels_portable() : nullptr;
  if (cpu::forced_path_is("bucket-avx512")) return avx512 ? cpu::bucket_kernels_avx512() : nullptr;
  if (avx512 && table.mantissa_bits < kMinAvx2BucketBits && !cpu::forced_path_is("avx2") &&
      !cpu::forced_path_is("no-avx512"))
    return cpu::bucket_kernels_avx512();
  if (avx2) return cpu::bucket_kernels_avx2();
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || !AMSIM_HAVE_FTZ_MODE
  return nullptr;  // x86 without AVX2, or no flush-to-zero mode: the generic path
#else
  return cpu::bucket_kernels_portable();  // AArch64: NEON through the compiler
#endif
}

// ns per multiply-add, one core (measured on Zen 4 at 1024^3 and
// 8192 x 64 x 576): the cost rule weighs these against cpu::bucket_cost().
double blocked_ns_per_mac(const cpu::BlockedPath* path) {
  if (path == &kLutPath || path == &kLutHighPath) return 0.06;
  if (path == &kLutPlanesPath) return 0.08;
  if (path == &kLutChunksPath || path == &kGatherPath) return 0.4;
  return 0.85;  // generic
}

// The bucket kernels when they are the cheapest path for this shape (always
// when forced by APPROXTRAIN_CPU_PATH=avx2, bucket-avx512 or
// bucket-portable), else nullptr.
const cpu::BucketKernels* bucket_for(const Table& table, const GemmShape& shape) {
  const cpu::BucketKernels* kernels = bucket_kernels(table);
  if (kernels == nullptr) return nullptr;
  if (cpu::forced_path_is("avx2") || cpu::forced_path_is("bucket-avx512") || cpu::forced_path_is("bucket-portable"))
    return kernels;
  const double other_ns = blocked_ns_per_mac(blocked_path(table));
  if (other_ns <= cpu::bucket_least_ns_per_mac(*kernels)) return nullptr;  // no shape would choose it
  const double macs = double(shape.m) * double(shape.n) * double(shape.k);
  return cpu::bucket_cost(*kernels, table, shape) < macs * other_ns ? kernels : nullptr;
}

// --- the float GEMM of separable tables (gemm_float.h) ---

// The float GEMM's kernels when the table is separable and the CPU has them.
const cpu::FloatGemmKernels* float_path(const Table& table) {
  const cpu::FloatGemmKernels* kernels = cpu::float_gemm_kernels();
  return kernels != nullptr && cpu::separable_factors(table) != nullptr ? kernels : nullptr;
}

// The shape gemm_cpu_path() reports for when asked without one.
constexpr GemmShape kReportShape{1024, 1024, 1024};

void gemm_dispatch(const Table& table, const GemmShape& shape, const MatrixView& a, const MatrixView& b, float* c,
                   int64_t ldc, const ParallelFor& parallel, bool accumulate) {
  if (const cpu::BlockedPath* path = blocked_path(table))
    cpu::gemm_blocked(*path, table, shape, a, b, c, ldc, parallel, accumulate);
  else
    cpu::gemm_generic(table, shape, a, b, c, ldc, parallel, accumulate);
}

}  // namespace

Table with_entry_bytes(const Table& table) {
  Table settled = table;
  if (table.entries != nullptr)
    settled.entry_bytes = high_byte_entries(table) ? EntryBytes::kHighOnly : EntryBytes::kBoth;
  return settled;
}

// A narrow C (a conv with few output channels, a filter gradient) leaves most
// lanes idle; its transpose C^T = B^T (x)' A^T, with the table transposed, has
// the long side across the lanes.  The AMSim product is symmetric but for the
// table index, am_T(a, b) == am_{T^T}(b, a) bit for bit, and every C^T element
// still sums its products for k ascending: the same bits either way.
// The transposed GEMM has at most 63 rows, so it packs op(A)^T (its right
// operand) strip by strip inside its tasks (gemm_blocked's streamed B).
namespace {

// Whether the table paths run this shape transposed (gemm_cpu_runs_transposed
// for tables that are not separable).
bool table_runs_transposed(const Table& table, const GemmShape& shape) {
  return bucket_for(table, shape) == nullptr && blocked_path(table) != nullptr &&
         table.mantissa_bits <= kMaxTransposedTableBits && shape.n < cpu::kStripCols &&
         lane_use(shape.m) >= 2.0 * lane_use(shape.n);
}

// ns per patch value the float GEMM pays for the patch matrix that the table
// paths' conv helpers (in-place, packed or gathered reads) never build.
constexpr double kPatchNs = 0.25;

// True when a conv GEMM of a separable table (shape: m x k the patch matrix
// or its transpose) is cheaper as gemm_cpu's float GEMM on materialized
// patches than through the table path's conv helpers.  Measured (bf16, one
// core, float-avx2 vs avx512vbmi): LeNet-5's conv1 forward (1 -> 6
// channels) 6.3 vs 1.0 ms and conv2's input gradient (16 -> 6) 5.0 vs 2.5
// ms stay on the helpers; ResNet-20's 3x3 convs (16..64 channels) run
// 1.1-2x faster as float GEMMs.
bool float_beats_conv_helper(const Table& table, const GemmShape& shape) {
  const cpu::FloatGemmKernels* kernels = float_path(table);
  if (kernels == nullptr) return false;
  // Forced: every conv GEMM on it (so its tests cover the narrow convs too).
  if (cpu::forced_path_is(kernels->name)) return true;
  const double macs = double(shape.m) * double(shape.n) * double(shape.k);
  const double patches = double(shape.m) * double(shape.k) * kPatchNs;
  return cpu::gemm_float_cost(*kernels, shape) + patches < macs * blocked_ns_per_mac(blocked_path(table));
}

}  // namespace

bool gemm_cpu_runs_transposed(const Table& table, const GemmShape& shape) {
  return float_path(table) == nullptr && table_runs_transposed(table, shape);
}

const char* gemm_cpu_path(const Table& table) { return gemm_cpu_path(table, kReportShape); }

const char* gemm_cpu_path(const Table& table, const GemmShape& shape) {
  if (const cpu::FloatGemmKernels* kernels = float_path(table)) return kernels->name;
  if (const cpu::BucketKernels* kernels = bucket_for(table, shape)) return kernels->name;
  const cpu::BlockedPath* path = blocked_path(table);
  if (path == &kLutPath || path == &kLutPlanesPath) return "avx512vbmi";
  if (path == &kLutHighPath) return "avx512vbmi-high";
  if (path == &kLutChunksPath) return "avx512vbmi-chunks";
  if (path == &kGatherPath) return "avx512-gather";
  return "generic";
}

// The bucket method expands T once per task and call (2^M x columns per k):
// with 1 MiB patch chunks a 16-channel conv's calls had 1,820 rows in 3
// tasks, and the expansions cost 44% of the adds (ResNet-20's AVX2 step 9%
// slower); 4,096 rows bring that to about 20%.
constexpr int64_t kBucketMinRows = 4096;

int64_t gemm_cpu_min_rows(const Table& table, const GemmShape& shape) {
  if (float_path(table) != nullptr) return 0;
  return bucket_for(table, shape) != nullptr ? std::max(kBucketMinRows, int64_t{8} << table.mantissa_bits) : 0;
}

void gemm_cpu(const Table& given, const GemmShape& shape, const MatrixView& a, const MatrixView& b, float* c,
              int64_t ldc, const ParallelFor& parallel, bool accumulate) {
  const Table table = with_entry_bytes(given);
  // A separable table is a float GEMM of transformed operands; it declines
  // an operand that rounds to infinity (the table paths take the call).
  if (const cpu::FloatGemmKernels* kernels = cpu::float_gemm_kernels())
    if (const cpu::SeparableFactorsPtr factors = cpu::separable_factors(table))
      if (cpu::gemm_float(*kernels, table, *factors, shape, a, b, c, ldc, parallel, accumulate)) return;
  // The bucket method declines operands it cannot take exactly (a right
  // operand >= 2^127 in magnitude): those go on to the other paths.
  if (const cpu::BucketKernels* kernels = bucket_for(table, shape))
    if (cpu::gemm_bucket(*kernels, table, shape, a, b, c, ldc, parallel, accumulate)) return;
  if (!table_runs_transposed(table, shape)) {
    gemm_dispatch(table, shape, a, b, c, ldc, parallel, accumulate);
    return;
  }
  const std::vector<uint16_t> entries_t = transposed_entries(table);
  const Table table_t{entries_t.data(), table.mantissa_bits, table.rounding, table.entry_bytes};  // same bytes
  const int64_t m = shape.m, n = shape.n;
  // op(B)^T (n x k) and op(A)^T (k x m) are the same data with swapped strides.
  const MatrixView bt{b.data, b.col_stride, b.row_stride};
  const MatrixView at{a.data, a.col_stride, a.row_stride};
  std::vector<float> ct(static_cast<size_t>(n * m));
  if (accumulate)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) ct[j * m + i] = c[i * ldc + j];
  gemm_dispatch(table_t, GemmShape{n, m, shape.k}, bt, at, ct.data(), m, parallel, accumulate);
  parallel(m, n * 2, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = ct[j * m + i];
  });
}

namespace cpu {

// The float GEMM's kernels on this CPU, nullptr where it has none or a table path is
// forced: the one forced ("float-avx512", "float-avx2", "float-portable";
// never one the CPU lacks), else AVX-512 where its units are full width (on
// an Intel Xeon they ran 1024^3 and 32768 x 64 x 576 25-35% faster than the
// AVX2 ones), then AVX2 (on Zen 4, whose AVX-512 units are 256 bits wide,
// 15-20% faster than AVX-512 there: docs/cpu-kernels.md), then AVX-512,
// then the portable kernels.
const FloatGemmKernels* float_gemm_kernels() {
  static const bool avx512 = has_avx512_bw();
  static const bool avx2 = has_avx2_fma();
  const FloatGemmKernels* best_avx2 = avx2 ? float_kernels_avx2() : nullptr;
  const FloatGemmKernels* portable = AMSIM_HAVE_FTZ_MODE ? float_kernels_portable() : nullptr;
  if (forced_path_is("float-avx512")) return avx512 ? float_kernels_avx512() : nullptr;
  if (forced_path_is("float-avx2")) return best_avx2;
  if (forced_path_is("float-portable")) return portable;
  // A forced table path keeps separable tables on it (its tests run bf16 there).
  for (const char* table_path : {"generic", "avx512-gather", "avx2", "bucket-avx512", "bucket-portable", "avx512"})
    if (forced_path_is(table_path)) return nullptr;
  static const bool full_width_avx512 = avx512 && !has_half_width_avx512();
  if (full_width_avx512 && !forced_path_is("no-avx512")) return float_kernels_avx512();
  if (best_avx2 != nullptr) return best_avx2;
  if (avx512 && !forced_path_is("no-avx512")) return float_kernels_avx512();
  return portable;
}

bool shifted_layout(const Table& given, const GemmShape& shape, RightLayout* layout) {
  const Table table = with_entry_bytes(given);
  if (float_beats_conv_helper(table, shape)) return false;  // gemm_cpu's float GEMM on patches
  if (!table_runs_transposed(table, shape)) return false;
  const RightLayout l = blocked_path(table)->layout;
  if (l != RightLayout::kLutBytes && l != RightLayout::kLutHighBytes && l != RightLayout::kLutPlanes) return false;
  *layout = l;
  return true;
}

bool filter_grad_shifted_layout(const Table& given, const GemmShape& shape, RightLayout* layout) {
  const Table table = with_entry_bytes(given);
  if (float_beats_conv_helper(table, shape)) return false;  // gemm_cpu's float GEMM on patches
  const BlockedPath* path = blocked_path(table);
  if (path == nullptr || bucket_for(table, shape) != nullptr || shape.n >= kStripCols) return false;
  const RightLayout l = path->layout;
  if (l != RightLayout::kLutBytes && l != RightLayout::kLutHighBytes && l != RightLayout::kLutPlanes) return false;
  *layout = l;
  return true;
}

bool gemm_cpu_shifted(const Table& given, const GemmShape& shape, const MatrixView& b, float* ct,
                      const ParallelFor& parallel, const ShiftedRight& right, bool accumulate) {
  const Table table = with_entry_bytes(given);
  // B is the transposed GEMM's left operand: a special value of it would
  // need P's values (special_products), which are never materialized.
  // From 2^126 on the reduced exponent may reach 254 (pack_a_avx512's limit).
  constexpr uint32_t kLarge = 0x7e800000u;
  bool large = false;
  for (int64_t kk = 0; kk < shape.k; ++kk)
    for (int64_t j = 0; j < shape.n; ++j) large |= (float_bits(b.at(kk, j)) & 0x7fffffffu) >= kLarge;
  if (large) return false;
  const std::vector<uint16_t> entries_t = transposed_entries(table);
  const Table table_t{entries_t.data(), table.mantissa_bits, table.rounding, table.entry_bytes};  // same bytes
  const MatrixView bt{b.data, b.col_stride, b.row_stride};
  gemm_blocked(*blocked_path(table), table_t, GemmShape{shape.n, shape.m, shape.k}, bt, MatrixView{}, ct, shape.m,
               parallel, accumulate, nullptr, &right);
  return true;
}

bool packed_left_layout(const Table& given, const GemmShape& shape, RightLayout* layout) {
  const Table table = with_entry_bytes(given);
  if (float_beats_conv_helper(table, shape)) return false;  // gemm_cpu's float GEMM on patches
  const BlockedPath* path = blocked_path(table);
  if (path == nullptr || bucket_for(table, shape) != nullptr || table_runs_transposed(table, shape)) return false;
  *layout = path->layout;
  return true;
}

void gemm_cpu_packed_left(const Table& given, const GemmShape& shape, const LeftRowPacker& rows, const MatrixView& b,
                          float* c, int64_t ldc, const ParallelFor& parallel, bool accumulate) {
  const Table table = with_entry_bytes(given);
  gemm_blocked(*blocked_path(table), table, shape, MatrixView{}, b, c, ldc, parallel, accumulate, &rows);
}

}  // namespace cpu

bool gemm_cpu_gathered(const Table& given, const GemmShape& shape, const GatheredLeft& a, const MatrixView& b, float* c,
                       int64_t ldc, const ParallelFor& parallel) {
  const Table table = with_entry_bytes(given);
  if (float_beats_conv_helper(table, shape)) return false;  // gemm_cpu's float GEMM on patches
  const cpu::BlockedPath* path = blocked_path(table);
  if (bucket_for(table, shape) != nullptr) return false;  // the bucket method takes the materialized patches
  if (path == nullptr || shape.m == 0 || shape.n == 0 || shape.k == 0 || shape.k != a.runs * a.run_len) return false;
  if (table_runs_transposed(table, shape)) return false;
  for (int64_t kk = 0; kk < shape.k; ++kk)
    for (int64_t j = 0; j < shape.n; ++j)
      if (rounds_to_infinity(b.at(kk, j), table.mantissa_bits, table.rounding)) return false;

  // Every source value decoded once; a special one sends the caller back to
  // the materialized path, whose kernels take such products from am_multiply().
  const int64_t len = a.run_len;
  cpu::AlignedBuffer<cpu::LeftRef> packed(a.source_rows * len);
  cpu::AlignedBuffer<uint8_t> source_special(a.source_rows);
  const std::vector<uint8_t> no_infinite_b(static_cast<size_t>(len), 0);
  bool any_special = false;
  cpu::LeftRowPacker rows;
  std::mutex merge;
  parallel(a.source_rows, len * 4, [&](int64_t r0, int64_t r1) {
    cpu::ExponentRange range;
    cpu::pack_a_avx512(path->layout, table, a.source, len, r0, r1, 0, len, no_infinite_b.data(),
                       packed.data() + r0 * len, source_special.data() + r0, &range);
    const bool special =
        std::any_of(source_special.data() + r0, source_special.data() + r1, [](uint8_t s) { return s != 0; });
    const std::lock_guard<std::mutex> lock(merge);
    any_special |= special;
    rows.range.merge(range);
  });
  if (any_special) return false;
  const float zero = 0.0f;
  const uint8_t no_inf = 0;
  cpu::LeftRef zero_ref;
  uint8_t zero_special;
  cpu::ExponentRange zero_range;
  cpu::pack_a_avx512(path->layout, table, MatrixView{&zero, 1, 1}, 1, 0, 1, 0, 1, &no_inf, &zero_ref, &zero_special,
                     &zero_range);

  rows.pack = [&](int64_t i0, int64_t i1, cpu::LeftRef* out) {
    std::vector<int64_t> run_rows(static_cast<size_t>((i1 - i0) * a.runs));
    a.run_rows(i0, i1, run_rows.data());
    for (const int64_t row : run_rows) {
      if (row < 0)
        std::fill(out, out + len, zero_ref);
      else
        std::memcpy(out, packed.data() + row * len, sizeof(cpu::LeftRef) * len);
      out += len;
    }
  };
  cpu::gemm_blocked(*path, table, shape, MatrixView{}, b, c, ldc, parallel, /*accumulate=*/false, &rows);
  return true;
}

void batched_gemm_cpu(const Table& given, const BatchPlan& plan, const float* a, const float* b, float* c,
                      const ParallelFor& parallel, int64_t threads) {
  const Table table = with_entry_bytes(given);
  const GemmShape& s = plan.shape;
  const auto view = [](MatrixView v, const float* data, int64_t offset) {
    v.data = data + offset;
    return v;
  };
  // One B for a run's batches and A's batches stacked row after row (a Dense
  // layer on a sequence): one tall GEMM packs B once and gives the same bits.
  const auto stacks_rows = [&](const BatchRun& r) {
    return r.count > 1 && r.b_stride == 0 && r.a_stride == s.m * plan.a.row_stride;
  };
  if (!plan.runs.empty() && std::all_of(plan.runs.begin(), plan.runs.end(), stacks_rows)) {
    for (const BatchRun& r : plan.runs)
      gemm_cpu(table, GemmShape{s.m * r.count, s.n, s.k}, view(plan.a, a, r.a_offset), view(plan.b, b, r.b_offset),
               c + r.begin * s.m * s.n, s.n, parallel);
    return;
  }
  const auto one_gemm = [&](const BatchRun& r, int64_t i, const ParallelFor& inner) {
    const int64_t j = i - r.begin;
    gemm_cpu(table, s, view(plan.a, a, r.a_offset + j * r.a_stride), view(plan.b, b, r.b_offset + j * r.b_stride),
             c + i * s.m * s.n, s.n, inner);
  };
  // Many small GEMMs (attention heads), or many more GEMMs than threads:
  // threads take whole GEMMs.
  const int64_t macs = s.m * s.n * s.k;
  if (plan.batch > 1 && (macs < kSmallGemmMacs || plan.batch >= kGemmsPerThread * threads)) {
    parallel(plan.batch, macs / 4 + 1000, [&](int64_t b0, int64_t b1) {
      // The run holding b0 (runs are in order), then onwards.
      auto r = std::upper_bound(plan.runs.begin(), plan.runs.end(), b0,
                                [](int64_t i, const BatchRun& run) { return i < run.begin; }) -
               1;
      for (int64_t i = b0; i < b1; ++i) {
        if (i >= r->begin + r->count) ++r;
        one_gemm(*r, i, serial_for);
      }
    });
    return;
  }
  for (const BatchRun& r : plan.runs)
    for (int64_t i = r.begin; i < r.begin + r.count; ++i) one_gemm(r, i, parallel);
}

void multiply_cpu(const Table& table, const float* a, const float* b, float* c, int64_t n,
                  const ParallelFor& parallel) {
  static const bool avx512 = cpu::has_avx512_bw();
  if (avx512 && !cpu::forced_path_is("generic")) {
    parallel(n, 2, [&](int64_t begin, int64_t end) {
      cpu::multiply_avx512(table, a + begin, b + begin, c + begin, end - begin);
    });
    return;
  }
  parallel(n, 20, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) c[i] = am_multiply(a[i], b[i], table);
  });
}

}  // namespace amsim
