// Picks the tile shape and the table's placement for a GEMM-shaped Problem
// and launches am_gemm_kernel (gemm_tile.cuh) on the caller's stream.
#pragma once

#include "cuda/gemm_tile.cuh"
#include "cuda/launch_util.cuh"

namespace amsim {
namespace cuda {

enum class TileKind { kBig, kNarrow, kSmall };

// The kernel variant a GEMM runs: its tile shape and where the table sits.
struct TileChoice {
  TileKind tile;
  bool shared_table;
};

template <class Tile>
int64_t tile_count(int64_t m, int64_t n, int64_t batch) {
  return ceil_div(m, Tile::kBM) * ceil_div(n, Tile::kBN) * batch;
}

// 64 x 128 tiles, or 128 x 64 ones for outputs at most 64 wide, when they
// alone give every SM a block; otherwise 16 x 32 tiles so that small outputs
// (filter gradients, late conv layers) still spread over the device.  The
// tile shape never changes the order of a sum.
inline TileChoice choose_tile(int mantissa_bits, int64_t m, int64_t n, int64_t batch, const DeviceLimits& limits) {
  TileChoice choice;
  size_t staging;
  if (n <= NarrowTile::kBN && tile_count<NarrowTile>(m, n, batch) >= limits.sm_count) {
    choice.tile = TileKind::kNarrow;
    staging = NarrowTile::kStagingBytes;
  } else if (tile_count<BigTile>(m, n, batch) >= limits.sm_count) {
    choice.tile = TileKind::kBig;
    staging = BigTile::kStagingBytes;
  } else {
    choice.tile = TileKind::kSmall;
    staging = SmallTile::kStagingBytes;
  }
  choice.shared_table = table_fits_shared(mantissa_bits, staging, limits);
  return choice;
}

inline const char* tile_choice_name(const TileChoice& choice) {
  switch (choice.tile) {
    case TileKind::kBig:
      return choice.shared_table ? "tile64x128/shared-table" : "tile64x128/global-table";
    case TileKind::kNarrow:
      return choice.shared_table ? "tile128x64/shared-table" : "tile128x64/global-table";
    default:
      return choice.shared_table ? "tile16x32/shared-table" : "tile16x32/global-table";
  }
}

template <class Tile, class Problem, bool kSharedTable>
cudaError_t launch_gemm_kernel(const Problem& p, const Table& table, const DeviceLimits& limits, cudaStream_t stream) {
  const int64_t tiles = tile_count<Tile>(p.m, p.n, p.batch);
  const size_t shared_bytes = Tile::kStagingBytes + (kSharedTable ? shared_table_bytes(table.mantissa_bits) : 0);
  auto kernel = am_gemm_kernel<Tile, Problem, kSharedTable>;
  int64_t blocks = 0;
  cudaError_t err = persistent_blocks(kernel, Tile::kThreads, shared_bytes, tiles, limits, &blocks);
  if (err != cudaSuccess) return err;
  kernel<<<static_cast<unsigned>(blocks), Tile::kThreads, shared_bytes, stream>>>(p, table);
  return cudaGetLastError();
}

// Launches the GEMM of `p` (m x n outputs per batch entry, K = p.k).
template <class Problem>
cudaError_t launch_gemm(const Problem& p, const Table& table, cudaStream_t stream) {
  if (p.m <= 0 || p.n <= 0 || p.batch <= 0) return cudaSuccess;  // nothing to write
  if (table.entries == nullptr || table.mantissa_bits < kMinMantissaBits || table.mantissa_bits > kMaxMantissaBits)
    return cudaErrorInvalidValue;
  DeviceLimits limits;
  cudaError_t err = current_device_limits(&limits);
  if (err != cudaSuccess) return err;
  const TileChoice choice = choose_tile(table.mantissa_bits, p.m, p.n, p.batch, limits);
  switch (choice.tile) {
    case TileKind::kBig:
      return choice.shared_table ? launch_gemm_kernel<BigTile, Problem, true>(p, table, limits, stream)
                                 : launch_gemm_kernel<BigTile, Problem, false>(p, table, limits, stream);
    case TileKind::kNarrow:
      return choice.shared_table ? launch_gemm_kernel<NarrowTile, Problem, true>(p, table, limits, stream)
                                 : launch_gemm_kernel<NarrowTile, Problem, false>(p, table, limits, stream);
    default:
      return choice.shared_table ? launch_gemm_kernel<SmallTile, Problem, true>(p, table, limits, stream)
                                 : launch_gemm_kernel<SmallTile, Problem, false>(p, table, limits, stream);
  }
}

}  // namespace cuda
}  // namespace amsim
