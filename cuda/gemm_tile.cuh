// The tiled AM GEMM kernel behind matmul and the implicit-GEMM convolutions.
//
// Layout of the work (BigTile: 8 warps, TM = 8, TN = 4 -> 64 x 128 tiles):
// - A block computes a BM x BN tile of C; a warp owns TM rows of it and all
//   BN columns; lane l owns columns l*TN .. l*TN + TN - 1.  So at every k all
//   32 lanes of a warp multiply the SAME left operand A[i, k] (the table row)
//   by 32*TN different right operands: every table lookup of one instruction
//   falls in one row of 2^M uint16 entries.  For M <= 6 a row spans at most
//   the 32 banks once (conflict-free); M = 7 is at most 2-way, M = 8 4-way.
// - Operands are staged once per block into shared memory already packed
//   (staged_operands.cuh): A as uint2 (row, bits) per element, B as column
//   and scale arrays; the table (plus its zero row) sits in shared memory for
//   M <= 8 (loaded once per block: the grid is persistent), else it is read
//   through the read-only cache.
// - One thread owns each output element for the whole K loop and adds its
//   products for k = 0, 1, ..., K-1 in that order, starting from +0: exactly
//   the CPU's canonical order, so the bits agree.  K tiles are consumed in
//   order, partial last tiles stop at K (no padded products are added: a +0
//   product could turn a -0 sum into +0), and nothing splits K.
// - Double-buffered staging: the next K tile's raw values are loaded into
//   registers while the current tile is multiplied, then packed and stored
//   into the other buffer; one barrier per K tile.  The barrier is
//   __syncthreads_or(), which also tells the block whether the freshly
//   staged tiles hold a special operand (staged_operands.cuh); only such
//   tiles (and the partial last tile) take the checking loop.
//
// A Problem supplies the operands through four small lookups, so the same
// kernel serves dense batched GEMM and the three convolution GEMMs:
//   ARow a_row(batch, i), AK a_k(batch, k), float a_at(ARow, AK)
//   BCol b_col(batch, j), BK b_k(batch, k), float b_at(BK, BCol)
//   float* c_row(batch, i); fields m, n, k, batch, c_vec4 (rows of C are
//   16-byte aligned, so 4 columns may be stored at once).
// Out-of-range rows/columns read as 0 and are never stored.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "amsim/amsim.h"
#include "cuda/shared_table.cuh"
#include "cuda/staged_operands.cuh"

namespace amsim {
namespace cuda {

template <int kWarps_, int kTM_, int kTN_, int kBK_, int kMinBlocks_>
struct TileShape {
  static constexpr int kWarps = kWarps_, kTM = kTM_, kTN = kTN_, kBK = kBK_;
  static constexpr int kMinBlocks = kMinBlocks_;  // blocks per SM the register budget aims at
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBM = kWarps * kTM;
  static constexpr int kBN = 32 * kTN;
  // Row strides in shared memory: +2 uint2 / +4 uint32 keep 16-byte rows for
  // the vector loads and spread the staging stores over the banks.
  static constexpr int kAStride = kBM + 2;
  static constexpr int kBStride = kBN + 4;
  // Staging: thread t stores A[t / BK + s * kARowStep][t % BK] and
  // B[t / BN + s * kBKStep][t % BN].
  static constexpr int kAPerThread = kBM * kBK / kThreads;
  static constexpr int kBPerThread = kBN * kBK / kThreads;
  static constexpr int kARowStep = kThreads / kBK;
  static constexpr int kBKStep = kThreads / kBN;
  static constexpr size_t kAStageBytes = size_t{kBK} * kAStride * sizeof(uint2);
  static constexpr size_t kBStageBytes = size_t{kBK} * kBStride * sizeof(uint32_t);
  static constexpr size_t kStageBytes = kAStageBytes + 2 * kBStageBytes;
  static constexpr size_t kStagingBytes = 2 * kStageBytes;  // double buffer

  static_assert(kTM % 2 == 0, "A rows are loaded two at a time");
  static_assert(kTN == 1 || kTN == 2 || kTN == 4, "B columns are loaded as one vector");
  static_assert(kThreads % kBK == 0 && kThreads % kBN == 0, "staging covers whole rows");
  static_assert(kAPerThread * kARowStep == kBM && kBPerThread * kBKStep == kBK, "staging covers the tile");
};

using BigTile = TileShape<8, 8, 4, 16, 2>;  // 64 x 128, 256 threads, 32 outputs a thread, <= 128 registers
using NarrowTile = TileShape<8, 16, 2, 16, 2>;  // 128 x 64 for outputs <= 64 wide (early conv layers)
using SmallTile = TileShape<4, 4, 1, 16, 4>;  // 16 x 32, 128 threads, 4 outputs a thread, <= 128 registers

template <class Tile, class Problem, bool kSharedTable>
struct GemmTileBlock {
  static constexpr int TM = Tile::kTM, TN = Tile::kTN, BK = Tile::kBK;

  const Problem& p;
  const uint16_t* table;
  uint32_t zero_row;
  int mbits;
  Rounding rounding;
  unsigned char* staging;  // 2 stages of [A | B columns | B scales]
  int tid, warp, lane;

  __device__ uint2* a_stage(int s) const { return reinterpret_cast<uint2*>(staging + s * Tile::kStageBytes); }
  __device__ uint32_t* bcol_stage(int s) const {
    return reinterpret_cast<uint32_t*>(staging + s * Tile::kStageBytes + Tile::kAStageBytes);
  }
  __device__ float* bscale_stage(int s) const {
    return reinterpret_cast<float*>(staging + s * Tile::kStageBytes + Tile::kAStageBytes + Tile::kBStageBytes);
  }

  // One k step of the warp's TM x (32 TN) outputs.
  template <bool kCheckSpecial>
  __device__ __forceinline__ void mac_step(const uint2* a_k, const uint32_t* bcol_k, const float* bscale_k,
                                           float (&acc)[TM][TN]) const {
    uint2 a[TM];
    const uint4* a_vec = reinterpret_cast<const uint4*>(a_k + warp * TM);
#pragma unroll
    for (int q = 0; q < TM / 2; ++q) {
      const uint4 v = a_vec[q];  // same address in every lane: a broadcast
      a[2 * q] = make_uint2(v.x, v.y);
      a[2 * q + 1] = make_uint2(v.z, v.w);
    }
    uint32_t col[TN];
    float sb[TN];
    if constexpr (TN == 4) {
      const uint4 c4 = reinterpret_cast<const uint4*>(bcol_k)[lane];
      const float4 s4 = reinterpret_cast<const float4*>(bscale_k)[lane];
      col[0] = c4.x, col[1] = c4.y, col[2] = c4.z, col[3] = c4.w;
      sb[0] = s4.x, sb[1] = s4.y, sb[2] = s4.z, sb[3] = s4.w;
    } else if constexpr (TN == 2) {
      const uint2 c2 = reinterpret_cast<const uint2*>(bcol_k)[lane];
      const float2 s2 = reinterpret_cast<const float2*>(bscale_k)[lane];
      col[0] = c2.x, col[1] = c2.y;
      sb[0] = s2.x, sb[1] = s2.y;
    } else {
      col[0] = bcol_k[lane];
      sb[0] = bscale_k[lane];
    }
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
      for (int c = 0; c < TN; ++c)
        acc[r][c] =
            add_rn_ftz(acc[r][c], kCheckSpecial ? any_product<kSharedTable>(table, a[r], col[c], sb[c], mbits, rounding)
                                                : staged_product<kSharedTable>(table, a[r], col[c], sb[c]));
  }

  __device__ void run_tile(int64_t batch_index, int64_t i0, int64_t j0) const {
    // This thread's staging slots.
    const int a_kk = tid % BK, a_row0 = tid / BK;
    const int b_jj = tid % Tile::kBN, b_k0 = tid / Tile::kBN;
    typename Problem::ARow arow[Tile::kAPerThread];
#pragma unroll
    for (int s = 0; s < Tile::kAPerThread; ++s) arow[s] = p.a_row(batch_index, i0 + a_row0 + s * Tile::kARowStep);
    const typename Problem::BCol bcol = p.b_col(batch_index, j0 + b_jj);

    float ra[Tile::kAPerThread], rb[Tile::kBPerThread];
    auto load = [&](int64_t k0) {
      const typename Problem::AK ak = p.a_k(batch_index, k0 + a_kk);
#pragma unroll
      for (int s = 0; s < Tile::kAPerThread; ++s) ra[s] = p.a_at(arow[s], ak);
#pragma unroll
      for (int s = 0; s < Tile::kBPerThread; ++s)
        rb[s] = p.b_at(p.b_k(batch_index, k0 + b_k0 + s * Tile::kBKStep), bcol);
    };
    // Packs and stores the loaded values; true when one of them is special.
    auto store = [&](int stage) {
      bool special = false;
      uint2* as = a_stage(stage);
#pragma unroll
      for (int s = 0; s < Tile::kAPerThread; ++s) {
        const uint2 v = stage_left<kSharedTable>(ra[s], mbits, rounding, zero_row);
        special |= v.x == kSpecialRow;
        as[a_kk * Tile::kAStride + a_row0 + s * Tile::kARowStep] = v;
      }
      uint32_t* bc = bcol_stage(stage);
      float* bs = bscale_stage(stage);
#pragma unroll
      for (int s = 0; s < Tile::kBPerThread; ++s) {
        const StagedRight v = stage_right<kSharedTable>(rb[s], mbits, rounding);
        const int at = (b_k0 + s * Tile::kBKStep) * Tile::kBStride + b_jj;
        special |= v.col == kSpecialCol;
        bc[at] = v.col;
        bs[at] = v.scale;
      }
      return special;
    };

    float acc[TM][TN];
#pragma unroll
    for (int r = 0; r < TM; ++r)
#pragma unroll
      for (int c = 0; c < TN; ++c) acc[r][c] = 0.0f;

    const int64_t k_tiles = ceil_div(p.k, BK);
    if (k_tiles > 0) {
      load(0);
      bool special = __syncthreads_or(store(0));
      for (int64_t kt = 0; kt < k_tiles; ++kt) {
        const bool has_next = kt + 1 < k_tiles;
        if (has_next) load((kt + 1) * BK);
        const int stage = static_cast<int>(kt & 1);
        const uint2* as = a_stage(stage);
        const uint32_t* bc = bcol_stage(stage);
        const float* bs = bscale_stage(stage);
        const int64_t k_left = p.k - kt * BK;
        const int k_valid = k_left < BK ? static_cast<int>(k_left) : BK;
        if (k_valid == BK && !special) {
#pragma unroll
          for (int kk = 0; kk < BK; ++kk)
            mac_step<false>(as + kk * Tile::kAStride, bc + kk * Tile::kBStride, bs + kk * Tile::kBStride, acc);
        } else {
#pragma unroll 1
          for (int kk = 0; kk < k_valid; ++kk)
            mac_step<true>(as + kk * Tile::kAStride, bc + kk * Tile::kBStride, bs + kk * Tile::kBStride, acc);
        }
        if (has_next) special = __syncthreads_or(store(static_cast<int>((kt + 1) & 1)));
      }
    }

    // Epilogue: each lane writes its TN adjacent columns of TM rows.
    const int64_t j = j0 + lane * TN;
#pragma unroll
    for (int r = 0; r < TM; ++r) {
      const int64_t i = i0 + warp * TM + r;
      if (i >= p.m) break;
      float* c_row = p.c_row(batch_index, i);
      if constexpr (TN == 4) {
        if (p.c_vec4 && j + 3 < p.n) {
          *reinterpret_cast<float4*>(c_row + j) = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
          continue;
        }
      }
#pragma unroll
      for (int c = 0; c < TN; ++c)
        if (j + c < p.n) c_row[j + c] = acc[r][c];
    }
  }
};

// Persistent kernel: block b handles tiles b, b + gridDim.x, ... in the order
// (batch, tile row, tile column), column fastest.
template <class Tile, class Problem, bool kSharedTable>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocks) am_gemm_kernel(const Problem p, const Table table) {
  extern __shared__ __align__(16) unsigned char shared[];
  unsigned char* staging = shared;
  const uint16_t* entries = table.entries;
  if constexpr (kSharedTable) {
    load_shared_table(table.entries, table.mantissa_bits, reinterpret_cast<uint16_t*>(shared));
    entries = reinterpret_cast<const uint16_t*>(shared);
    staging = shared + shared_table_bytes(table.mantissa_bits);
  }
  const GemmTileBlock<Tile, Problem, kSharedTable> block{p,
                                                         entries,
                                                         zero_row_bytes(table.mantissa_bits),
                                                         table.mantissa_bits,
                                                         table.rounding,
                                                         staging,
                                                         static_cast<int>(threadIdx.x),
                                                         static_cast<int>(threadIdx.x / 32),
                                                         static_cast<int>(threadIdx.x % 32)};
  const int64_t tiles_m = ceil_div(p.m, Tile::kBM);
  const int64_t tiles_n = ceil_div(p.n, Tile::kBN);
  const int64_t tiles = tiles_m * tiles_n * p.batch;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    __syncthreads();  // the table is loaded; the previous tile no longer reads the staging buffers
    const int64_t batch_index = t / (tiles_m * tiles_n);
    const int64_t in_batch = t - batch_index * tiles_m * tiles_n;
    const int64_t tm = in_batch / tiles_n, tn = in_batch - tm * tiles_n;
    block.run_tile(batch_index, tm * Tile::kBM, tn * Tile::kBN);
  }
}

}  // namespace cuda
}  // namespace amsim
