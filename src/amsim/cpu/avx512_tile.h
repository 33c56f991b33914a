// Helpers for the AVX-512 block kernels: a register tile of TileRows rows x
// kStripCols columns of C (4 zmm per row).
//
// Included only by translation units compiled for AVX-512.  Everything here
// has internal linkage (anonymous namespace) on purpose: an inline function
// with external linkage compiled with AVX-512 could be picked by the linker
// for baseline callers too.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "amsim/cpu/gemm_blocked.h"

namespace amsim {
namespace cpu {
namespace {

constexpr int kVectorsPerStrip = int(kStripCols / 16);

// acc + x * scale_b: two roundings, or one fused multiply-add where the plan
// allows it (products_stay_normal: the same bits).
template <bool Fused>
__m512 accumulate(__m512 acc, __m512 x, __m512 scale_b) {
  return Fused ? _mm512_fmadd_ps(x, scale_b, acc) : _mm512_add_ps(acc, _mm512_mul_ps(x, scale_b));
}

// Masks of the columns of the strip that exist in C (the last strip may be short).
struct StripMasks {
  __mmask16 lanes[kVectorsPerStrip];
  int64_t ncols;
  StripMasks(int64_t n, int64_t j0) {
    ncols = n - j0 < kStripCols ? n - j0 : kStripCols;
    for (int v = 0; v < kVectorsPerStrip; ++v) {
      const int64_t left = ncols - 16 * v;
      lanes[v] = left >= 16 ? __mmask16(0xffff) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1u);
    }
  }
};

template <int TileRows>
struct Tile {
  __m512 acc[TileRows][kVectorsPerStrip];

  void load(const float* c, int64_t ldc, const StripMasks& masks) {
    for (int r = 0; r < TileRows; ++r)
      for (int v = 0; v < kVectorsPerStrip; ++v)
        acc[r][v] = _mm512_maskz_loadu_ps(masks.lanes[v], c + r * ldc + 16 * v);
  }
  void store(float* c, int64_t ldc, const StripMasks& masks) const {
    for (int r = 0; r < TileRows; ++r)
      for (int v = 0; v < kVectorsPerStrip; ++v) _mm512_mask_storeu_ps(c + r * ldc + 16 * v, masks.lanes[v], acc[r][v]);
  }
  // Row r += am_multiply() products of a special left operand A[i, k].
  void add_special(int r, const GemmPlan& plan, int64_t i, int64_t k, int64_t j0, const StripMasks& masks) {
    alignas(64) float products[kStripCols];
    special_products(plan, i, k, j0, masks.ncols, products);
    for (int v = 0; v < kVectorsPerStrip; ++v)
      acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_maskz_loadu_ps(masks.lanes[v], products + 16 * v));
  }
};

// Bytes 1 and 2 of every dword: where the entry's low and high byte go.
constexpr __mmask64 kEntryLowBytes = 0x2222222222222222ull;
constexpr __mmask64 kEntryHighBytes = 0x4444444444444444ull;

}  // namespace
}  // namespace cpu
}  // namespace amsim
