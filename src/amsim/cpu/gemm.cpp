// GEMM entry points: shape checks, batching and the run-time choice of path.
#include "amsim/gemm.h"

#include <algorithm>

#include "amsim/cpu/cpu_features.h"
#include "amsim/cpu/gemm_blocked.h"
#include "amsim/cpu/gemm_generic.h"
#include "amsim/cpu/multiply_simd.h"

namespace amsim {

namespace {

// Register-table kernels: the whole table row of a left operand in zmm
// registers.  M <= 6: one permute per 16 products.
constexpr cpu::BlockedPath kLutPath{cpu::lut_block_avx512vbmi, cpu::RightLayout::kLutBytes, 64, 256};
// M = 7: byte planes looked up for 64 columns at once, then assembled.
constexpr cpu::BlockedPath kLutPlanesPath{cpu::lut_planes_block_avx512vbmi, cpu::RightLayout::kLutPlanes, 64, 256};
// M = 8..11: the same with the row's byte planes in 128-entry chunks.
constexpr cpu::BlockedPath kLutChunksPath{cpu::lut_chunks_block_avx512vbmi, cpu::RightLayout::kLutChunks, 64, 256};
// Gather kernel: any M; the path for tables too large for registers.
constexpr cpu::BlockedPath kGatherPath{cpu::gather_block_avx512, cpu::RightLayout::kGatherPairs, 32, 256};

// Below this many multiply-adds a GEMM of a batch runs on one thread.
constexpr int64_t kSmallGemmMacs = int64_t{1} << 20;

constexpr int kMaxLutMantissaBits = 7;  // 2^7 entries per row: two zmm per byte plane (kLutPlanesPath)

// The SIMD path for M mantissa bits on this CPU, nullptr for the generic one
// (narrowed by APPROXTRAIN_CPU_PATH, cpu_features.h).
const cpu::BlockedPath* blocked_path(int mantissa_bits) {
  static const bool vbmi = cpu::has_avx512_vbmi();
  static const bool avx512 = cpu::has_avx512_bw();
  if (cpu::forced_path_is("generic")) return nullptr;
  if (cpu::forced_path_is("avx512-gather")) return avx512 ? &kGatherPath : nullptr;
  if (vbmi && mantissa_bits == kMaxLutMantissaBits) return &kLutPlanesPath;
  if (vbmi && mantissa_bits < kMaxLutMantissaBits) return &kLutPath;
  if (vbmi) return &kLutChunksPath;
  if (avx512) return &kGatherPath;
  return nullptr;
}

}  // namespace

const char* gemm_cpu_path(int mantissa_bits) {
  const cpu::BlockedPath* path = blocked_path(mantissa_bits);
  if (path == &kLutPath || path == &kLutPlanesPath) return "avx512vbmi";
  if (path == &kLutChunksPath) return "avx512vbmi-chunks";
  if (path == &kGatherPath) return "avx512-gather";
  return "generic";
}

void gemm_cpu(const Table& table, const GemmShape& shape, const MatrixView& a,
              const MatrixView& b, float* c, int64_t ldc, const ParallelFor& parallel,
              bool accumulate) {
  if (const cpu::BlockedPath* path = blocked_path(table.mantissa_bits))
    cpu::gemm_blocked(*path, table, shape, a, b, c, ldc, parallel, accumulate);
  else
    cpu::gemm_generic(table, shape, a, b, c, ldc, parallel, accumulate);
}

void batched_gemm_cpu(const Table& table, const GemmShape& shape, int64_t batch,
                      const MatrixView& a, int64_t batch_stride_a, const MatrixView& b,
                      int64_t batch_stride_b, float* c, const ParallelFor& parallel) {
  // One B for every batch and A's batches stacked row after row (a Dense layer
  // on a sequence): one tall GEMM packs B once and gives the same bits.
  if (batch > 1 && batch_stride_b == 0 && batch_stride_a == shape.m * a.row_stride) {
    gemm_cpu(table, GemmShape{shape.m * batch, shape.n, shape.k}, a, b, c, shape.n, parallel);
    return;
  }
  const auto run = [&](int64_t b0, int64_t b1, const ParallelFor& inner) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      MatrixView ab = a, bb = b;
      ab.data += bi * batch_stride_a;
      bb.data += bi * batch_stride_b;
      gemm_cpu(table, shape, ab, bb, c + bi * shape.m * shape.n, shape.n, inner);
    }
  };
  // Many small products (attention heads): threads take whole batch entries.
  const int64_t macs = shape.m * shape.n * shape.k;
  if (batch > 1 && macs < kSmallGemmMacs) {
    parallel(batch, macs / 4 + 1000, [&](int64_t b0, int64_t b1) { run(b0, b1, serial_for); });
    return;
  }
  run(0, batch, parallel);
}

void multiply_cpu(const Table& table, const float* a, const float* b, float* c, int64_t n,
                  const ParallelFor& parallel) {
  static const bool avx512 = cpu::has_avx512_bw();
  if (avx512 && !cpu::forced_path_is("generic")) {
    parallel(n, 2, [&](int64_t begin, int64_t end) { cpu::multiply_avx512(table, a + begin, b + begin, c + begin, end - begin); });
    return;
  }
  parallel(n, 20, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) c[i] = am_multiply(a[i], b[i], table);
  });
}

}  // namespace amsim
