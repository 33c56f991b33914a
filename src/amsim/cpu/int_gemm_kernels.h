// The ISA-specific part of the integer bucket GEMM (int_gemm.h): expanding
// T_k and the panel of row-selected int32 adds.  One source
// (int_gemm_kernels.inc) is compiled three times: for baseline targets
// (int_gemm_portable.cpp), with AVX2 (int_gemm_avx2.cpp) and with AVX-512
// (int_gemm_avx512.cpp); the driver (int_gemm.cpp) picks one at run time.
#pragma once

#include <cstdint>

namespace amsim {
namespace cpu {

// Columns of one column block: the row length of T and of the C scratch.
// The widest block is kIntTileCols; a C of at most 8 or 16 columns (a conv
// with few output channels) takes a block of its own width, so the adds and
// the expansion do not run over padding (kIntTileWidths, narrowest first).
constexpr int64_t kIntTileCols = 32;
constexpr int64_t kIntTileWidths[] = {8, 16, kIntTileCols};
constexpr int kIntTileKinds = 3;
constexpr int64_t kIntSide = 256;

// The column block width for a C of `cols` columns.
constexpr int64_t int_tile_cols(int64_t cols) { return cols <= 8 ? 8 : cols <= 16 ? 16 : kIntTileCols; }

// T for kc consecutive k of one column block of width w:
// out[kk][s][j] = table_t[right[kk * ld_right + j]][s] for j < ncols, 0 beyond (j < w).
struct IntExpansion {
  const int32_t* table_t = nullptr;  // [256][256]: table_t[r][s] = product of left pattern s, right pattern r
  const uint8_t* right = nullptr;
  int64_t ld_right = 0;
  int64_t kc = 0, ncols = 0;
  int32_t* out = nullptr;  // [kc][256][w], 64-byte aligned
};

// c[r][:] += sum over kk < kc of t[kk][left[r * ld_left + kk]][:], r < rows.
struct IntPanel {
  const int32_t* t = nullptr;  // [kc][256][w], 64-byte aligned
  int64_t kc = 0;
  const uint8_t* left = nullptr;
  int64_t ld_left = 0;
  int32_t* c = nullptr;  // [rows][w], 64-byte aligned
  int64_t rows = 0;
};

// The kernels of one column block width w.
struct IntTileKernels {
  int64_t cols;  // w
  void (*expand)(const IntExpansion& e);
  void (*panel)(const IntPanel& p);
};

struct IntBucketKernels {
  const char* name;  // "bucket-portable", "bucket-avx2", "bucket-avx512"
  IntTileKernels tiles[kIntTileKinds];  // widths kIntTileWidths, in that order

  const IntTileKernels& for_cols(int64_t cols) const {
    const int64_t w = int_tile_cols(cols);
    return tiles[w == 8 ? 0 : w == 16 ? 1 : 2];
  }
};

// nullptr where the build has no such kernels (non-x86 targets).
const IntBucketKernels* int_bucket_kernels_portable();
const IntBucketKernels* int_bucket_kernels_avx2();
const IntBucketKernels* int_bucket_kernels_avx512();

}  // namespace cpu
}  // namespace amsim
