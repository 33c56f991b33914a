// AVX-512 VBMI block kernel for M <= 7: the table row of a broadcast left
// operand lives in registers and is looked up with byte permutes.
//
// C[i, j..j+63] += A[i, k] (x) B[k, j..j+63] (outer-product form).  Row ia of
// the table is split into a low-byte and a high-byte table of 2^M entries
// (two zmm each for M = 7; both in two zmm for M <= 6).  Per 16 products:
//   x = idx (dwords [0x00, ib, ib', 0x3F])
//   x.byte1 = low[ib]   (permute, merge-masked on byte 1)
//   x.byte2 = high[ib]  (permute, merge-masked on byte 2; for M <= 6 the
//                        same permute as byte 1, at index ib' = ib + 64)
//   -> x is the float t(entry) = 2^(carry-1) * 1.fraction
//   acc += (t * scale_a) * scale_b        (flush-to-zero on; see packed_operands.h)
// Compiled with -mavx512f -mavx512bw -mavx512vbmi; called only after a
// run-time check (cpu_features.h).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
#include "amsim/cpu/avx512_tile.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int kTileRows = 4;

// One row's table in registers.  Wide (M = 7): low and high bytes in two
// registers each, two permutes.  Narrow (M <= 6): [low | high] in two
// registers, one permute fills bytes 1 and 2 (the index dword holds ib and
// ib + 64).
template <bool Wide>
struct RowTable {
  __m512i low0, low1, high0, high1;
  explicit RowTable(const uint8_t* row) {
    low0 = _mm512_loadu_si512(row);
    low1 = _mm512_loadu_si512(row + 64);
    if (Wide) {
      high0 = _mm512_loadu_si512(row + 128);
      high1 = _mm512_loadu_si512(row + 192);
    }
  }
  __m512 lookup(__m512i idx) const {
    __m512i x;
    if (Wide) {
      x = _mm512_mask2_permutex2var_epi8(low0, idx, kEntryLowBytes, low1);
      x = _mm512_mask2_permutex2var_epi8(high0, x, kEntryHighBytes, high1);
    } else {
      x = _mm512_mask2_permutex2var_epi8(low0, idx, kEntryLowBytes | kEntryHighBytes, low1);
    }
    return _mm512_castsi512_ps(x);
  }
};

template <int Rows, bool Wide, bool Specials>
void lut_tile(const GemmPlan& p, int64_t i, int64_t strip, int64_t k0, int64_t k1) {
  const int64_t j0 = strip * kStripCols;
  const StripMasks masks(p.n, j0);
  float* c = p.c + i * p.ldc + j0;
  Tile<Rows> tile;
  tile.load(c, p.ldc, masks);
  const uint32_t* pb = p.packed_b + (strip * p.k + k0) * p.words_per_k;
  const LeftRef* pa = p.packed_a + i * p.k;
  for (int64_t kk = k0; kk < k1; ++kk, pb += p.words_per_k) {
    __m512i idx[kVectorsPerStrip];
    for (int v = 0; v < kVectorsPerStrip; ++v) idx[v] = _mm512_load_si512(pb + 16 * v);
    const float* scale_b = reinterpret_cast<const float*>(pb + kStripCols);
    for (int r = 0; r < Rows; ++r) {
      const LeftRef a = pa[r * p.k + kk];
      if (Specials && a.row == kSpecialRow) {
        tile.add_special(r, p, i + r, kk, j0, masks);
        continue;
      }
      const RowTable<Wide> table(p.lut_rows + int64_t{a.row} * 256);
      const __m512 scale_a = _mm512_set1_ps(a.scale);
      for (int v = 0; v < kVectorsPerStrip; ++v) {
        const __m512 t = table.lookup(idx[v]);
        const __m512 product = _mm512_mul_ps(_mm512_mul_ps(t, scale_a), _mm512_load_ps(scale_b + 16 * v));
        tile.acc[r][v] = _mm512_add_ps(tile.acc[r][v], product);
      }
    }
  }
  tile.store(c, p.ldc, masks);
}

template <int Rows, bool Wide>
void lut_tile_rows(const GemmPlan& p, int64_t i, int64_t strip, int64_t k0, int64_t k1) {
  bool specials = false;
  for (int r = 0; r < Rows; ++r) specials |= p.row_has_special[i + r] != 0;
  if (specials)
    lut_tile<Rows, Wide, true>(p, i, strip, k0, k1);
  else
    lut_tile<Rows, Wide, false>(p, i, strip, k0, k1);
}

template <bool Wide>
void lut_block(const GemmPlan& p, int64_t i0, int64_t i1, int64_t strip, int64_t k0, int64_t k1) {
  int64_t i = i0;
  for (; i + kTileRows <= i1; i += kTileRows) lut_tile_rows<kTileRows, Wide>(p, i, strip, k0, k1);
  switch (i1 - i) {
    case 3: lut_tile_rows<3, Wide>(p, i, strip, k0, k1); break;
    case 2: lut_tile_rows<2, Wide>(p, i, strip, k0, k1); break;
    case 1: lut_tile_rows<1, Wide>(p, i, strip, k0, k1); break;
    default: break;
  }
}

}  // namespace

void lut_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                          int64_t k1) {
  for (int64_t strip = s0; strip < s1; ++strip) {
    if (plan.table->mantissa_bits == 7)
      lut_block<true>(plan, i0, i1, strip, k0, k1);
    else
      lut_block<false>(plan, i0, i1, strip, k0, k1);
  }
}

}  // namespace cpu
}  // namespace amsim
#else  // built without AVX-512 flags: never selected (cpu_features.h), kept for the linker
#include "amsim/cpu/gemm_blocked.h"

namespace amsim {
namespace cpu {
void lut_block_avx512vbmi(const GemmPlan&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {}
}  // namespace cpu
}  // namespace amsim
#endif
