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

// One row of C against up to kMaxStrips strips: a table row (2^M entries,
// 2 KiB for M = 10) is gathered from for many columns while it is in L1.
constexpr int kMaxStrips = 4;

template <int Strips, bool Specials>
void gather_row(const GemmPlan& p, int64_t i, int64_t s0, int64_t k0, int64_t k1) {
  const int mbits = p.table->mantissa_bits;
  const int* entries = reinterpret_cast<const int*>(p.table->entries);
  const __m512i preset = _mm512_set1_epi32(0x3F000000);
  const StripMasks masks[kMaxStrips] = {StripMasks(p.n, (s0 + 0) * kStripCols), StripMasks(p.n, (s0 + 1) * kStripCols),
                                        StripMasks(p.n, (s0 + 2) * kStripCols), StripMasks(p.n, (s0 + 3) * kStripCols)};
  float* c = p.c + i * p.ldc + s0 * kStripCols;
  __m512 acc[Strips][kVectorsPerStrip];
  for (int s = 0; s < Strips; ++s)
    for (int v = 0; v < kVectorsPerStrip; ++v)
      acc[s][v] = _mm512_maskz_loadu_ps(masks[s].lanes[v], c + s * kStripCols + 16 * v);
  const LeftRef* pa = p.packed_a + (i - p.a_row0) * p.k;
  for (int64_t kk = k0; kk < k1; ++kk) {
    const LeftRef a = pa[kk];
    if (Specials && a.row == kSpecialRow) {
      for (int s = 0; s < Strips; ++s) {
        alignas(64) float products[kStripCols];
        special_products(p, i, kk, (s0 + s) * kStripCols, masks[s].ncols, products);
        for (int v = 0; v < kVectorsPerStrip; ++v)
          acc[s][v] = _mm512_add_ps(acc[s][v], _mm512_maskz_loadu_ps(masks[s].lanes[v], products + 16 * v));
      }
      continue;
    }
    const __m512i row = _mm512_set1_epi32(int(a.row << mbits));
    const __m512 scale_a = _mm512_castsi512_ps(_mm512_set1_epi32(int(a.scale)));
    for (int s = 0; s < Strips; ++s) {
      const uint32_t* pb = packed_b_at(p, s0 + s, kk);
      const float* scale_b = reinterpret_cast<const float*>(pb + p.scales_offset);
      const uint32_t* ctrl = pb + 2 * kStripCols;
      for (int v = 0; v < kVectorsPerStrip; ++v) {
        const __m512i pair = _mm512_add_epi32(row, _mm512_load_si512(pb + 16 * v));
        const __m512i dwords = _mm512_i32gather_epi32(pair, entries, 2);
        const __m512i x = _mm512_mask_shuffle_epi8(preset, kEntryLowBytes | kEntryHighBytes, dwords,
                                                   _mm512_load_si512(ctrl + 16 * v));
        const __m512 product =
            _mm512_mul_ps(_mm512_mul_ps(_mm512_castsi512_ps(x), scale_a), _mm512_load_ps(scale_b + 16 * v));
        acc[s][v] = _mm512_add_ps(acc[s][v], product);
      }
    }
  }
  for (int s = 0; s < Strips; ++s)
    for (int v = 0; v < kVectorsPerStrip; ++v)
      _mm512_mask_storeu_ps(c + s * kStripCols + 16 * v, masks[s].lanes[v], acc[s][v]);
}

template <int Strips>
void gather_rows(const GemmPlan& p, int64_t i0, int64_t i1, int64_t s0, int64_t k0, int64_t k1) {
  for (int64_t i = i0; i < i1; ++i) {
    if (p.row_has_special[i - p.a_row0])
      gather_row<Strips, true>(p, i, s0, k0, k1);
    else
      gather_row<Strips, false>(p, i, s0, k0, k1);
  }
}

}  // namespace

void gather_block_avx512(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0, int64_t k1) {
  for (int64_t s = s0; s < s1; s += kMaxStrips) {
    switch (s1 - s < kMaxStrips ? s1 - s : kMaxStrips) {
      case 1:
        gather_rows<1>(plan, i0, i1, s, k0, k1);
        break;
      case 2:
        gather_rows<2>(plan, i0, i1, s, k0, k1);
        break;
      case 3:
        gather_rows<3>(plan, i0, i1, s, k0, k1);
        break;
      default:
        gather_rows<4>(plan, i0, i1, s, k0, k1);
        break;
    }
  }
}

}  // namespace cpu
}  // namespace amsim
#else  // built without AVX-512 flags: never selected (cpu_features.h), kept for the linker
#include "amsim/cpu/gemm_blocked.h"

namespace amsim {
namespace cpu {
void gather_block_avx512(const GemmPlan&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {}
}  // namespace cpu
}  // namespace amsim
#endif
