// AVX-512 block kernel for any M (used for M = 8..11, whose table rows do
// not fit in registers): the entries are gathered from the table.
//
// Per 16 products of A[i, k] with B[k, j..j+15]: gather the aligned dword
// holding entries (ia * 2^M + ib) rounded down to even and its neighbour
// (never reads past the table), move the wanted 16 bits into bytes 1..2 of
// a dword preset to 0x3F000000 (one merge-masked byte shuffle with a
// per-column control), giving the float t(entry); then
// acc += (t * scale_a) * scale_b under flush-to-zero (packed_operands.h).
// Compiled with -mavx512f -mavx512bw; called only after a run-time check.
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include "amsim/cpu/avx512_tile.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int kTileRows = 2;

template <int Rows, bool Specials>
void gather_tile(const GemmPlan& p, int64_t i, int64_t strip, int64_t k0, int64_t k1) {
  const int64_t j0 = strip * kStripCols;
  const StripMasks masks(p.n, j0);
  float* c = p.c + i * p.ldc + j0;
  Tile<Rows> tile;
  tile.load(c, p.ldc, masks);
  const int mbits = p.table->mantissa_bits;
  const int* entries = reinterpret_cast<const int*>(p.table->entries);
  const __m512i preset = _mm512_set1_epi32(0x3F000000);
  const uint32_t* pb = p.packed_b + (strip * p.k + k0) * p.words_per_k;
  const LeftRef* pa = p.packed_a + i * p.k;
  for (int64_t kk = k0; kk < k1; ++kk, pb += p.words_per_k) {
    __m512i pair[kVectorsPerStrip];
    for (int v = 0; v < kVectorsPerStrip; ++v) pair[v] = _mm512_load_si512(pb + 16 * v);
    const float* scale_b = reinterpret_cast<const float*>(pb + kStripCols);
    const uint32_t* ctrl = pb + 2 * kStripCols;
    for (int r = 0; r < Rows; ++r) {
      const LeftRef a = pa[r * p.k + kk];
      if (Specials && a.row == kSpecialRow) {
        tile.add_special(r, p, i + r, kk, j0, masks);
        continue;
      }
      const __m512i row = _mm512_set1_epi32(int(a.row << mbits));
      const __m512 scale_a = _mm512_set1_ps(a.scale);
      for (int v = 0; v < kVectorsPerStrip; ++v) {
        const __m512i dwords = _mm512_i32gather_epi32(_mm512_add_epi32(row, pair[v]), entries, 2);
        const __m512i x = _mm512_mask_shuffle_epi8(preset, kEntryLowBytes | kEntryHighBytes, dwords,
                                                   _mm512_load_si512(ctrl + 16 * v));
        const __m512 product =
            _mm512_mul_ps(_mm512_mul_ps(_mm512_castsi512_ps(x), scale_a), _mm512_load_ps(scale_b + 16 * v));
        tile.acc[r][v] = _mm512_add_ps(tile.acc[r][v], product);
      }
    }
  }
  tile.store(c, p.ldc, masks);
}

template <int Rows>
void gather_tile_rows(const GemmPlan& p, int64_t i, int64_t strip, int64_t k0, int64_t k1) {
  bool specials = false;
  for (int r = 0; r < Rows; ++r) specials |= p.row_has_special[i + r] != 0;
  if (specials)
    gather_tile<Rows, true>(p, i, strip, k0, k1);
  else
    gather_tile<Rows, false>(p, i, strip, k0, k1);
}

}  // namespace

void gather_block_avx512(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t strip, int64_t k0, int64_t k1) {
  int64_t i = i0;
  for (; i + kTileRows <= i1; i += kTileRows) gather_tile_rows<kTileRows>(plan, i, strip, k0, k1);
  if (i < i1) gather_tile_rows<1>(plan, i, strip, k0, k1);
}

}  // namespace cpu
}  // namespace amsim
#else  // built without AVX-512 flags: never selected (cpu_features.h), kept for the linker
#include "amsim/cpu/gemm_blocked.h"

namespace amsim {
namespace cpu {
void gather_block_avx512(const GemmPlan&, int64_t, int64_t, int64_t, int64_t, int64_t) {}
}  // namespace cpu
}  // namespace amsim
#endif
