// AVX-512 VBMI block kernels: the table row of a broadcast left operand is
// looked up with byte permutes (in registers for M <= 7, in L1 beyond).
//
// C[i, j..j+63] += A[i, k] (x) B[k, j..j+63] (outer-product form).  Each
// product is composed as
//   x   = entry << 8                 (the entry's bytes in bytes 1 and 2)
//   x  += sign(a) | ea << 23         (integer add: x is now the float t * scale_a
//                                     of packed_operands.h, exactly)
//   acc += x * scale_b               (flush-to-zero on; one fused multiply-add
//                                     when the operands' exponents keep every
//                                     product normal: products_stay_normal)
// A zero a uses an all-zero table row and adds only its sign (x = +-0).
// Two ways to get x, by table width:
//   M <= 6 (kLutBytes): row = [low bytes | high bytes] in two zmm; index
//     dwords [0, ib, ib + 64, 0]; one merge-masked permute per 16 products.
//     So for M = 7 when every entry's low byte is zero (kLutHighBytes): the
//     row's 128 high bytes, index dwords [0, 0, ib, 0].
//   M = 7 (kLutPlanes): low and high bytes in two zmm each; per (row, k) two
//     permutes look up L and H for all 64 columns (index bytes ib), then one
//     zero-masked permute per 16 columns assembles [0, L, H, 0]: 1.5 permutes
//     per 16 products.
//   M = 8..11 (kLutChunks): as M = 7 over 2^(M-7) chunks of 128 entries per
//     byte plane, merged by chunk masks: about 4 times the speed of gathers.
// Compiled with -mavx512f -mavx512bw -mavx512vbmi; called only after a
// run-time check (cpu_features.h).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
#include <type_traits>

#include "amsim/cpu/avx512_tile.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int kTileRows = 4;

// One (strip, kk) of a right operand read in place whose 16-column vectors
// lie apart (ShiftedRight::vector_offsets).
struct VectorColumns {
  const uint8_t* index[kVectorsPerStrip];
  const float* scale[kVectorsPerStrip];
};

// Where a (strip, kk)'s scale vectors are: one run of kStripCols floats, or
// a pointer per vector.
struct ContiguousScales {
  const float* p;
  __m512 operator()(int v) const { return _mm512_loadu_ps(p + 16 * v); }
};
struct VectorScales {
  const float* const* p;
  __m512 operator()(int v) const { return _mm512_loadu_ps(p[v]); }
};

// The whole table row in two zmm, the strip's index dwords as permute
// indices: one merge-masked permute per 16 products.  The index's bytes
// outside EntryBytes are zero, so they zero those of the entry.
//   M <= 6: row [low bytes | high bytes], index [0, ib, ib + 64, 0];
//   M = 7 with zero low bytes: the row's 128 high bytes, index [0, 0, ib, 0].
template <__mmask64 EntryBytes>
struct RegisterRowLookup {
  static constexpr bool kReadsVectorsApart = true;  // Columns(const VectorColumns&)
  static constexpr int64_t kIndexBytes = 4;  // of a value read in place (ShiftedRight::index_bytes)
  struct Constants {};
  struct Columns {
    __m512i idx[kVectorsPerStrip];
    explicit Columns(const uint32_t* pb) {
      for (int v = 0; v < kVectorsPerStrip; ++v) idx[v] = _mm512_loadu_si512(pb + 16 * v);
    }
    explicit Columns(const VectorColumns& vc) {
      for (int v = 0; v < kVectorsPerStrip; ++v) idx[v] = _mm512_loadu_si512(vc.index[v]);
    }
  };
  struct Row {
    __m512i bytes0, bytes1;
    Row(const uint8_t* row, const Columns&) : bytes0(_mm512_loadu_si512(row)), bytes1(_mm512_loadu_si512(row + 64)) {}
    __m512i entry(int v, const Columns& cols, const Constants&) const {
      return _mm512_mask2_permutex2var_epi8(bytes0, cols.idx[v], EntryBytes, bytes1);
    }
  };
};
using NarrowLookup = RegisterRowLookup<kEntryLowBytes | kEntryHighBytes>;
using HighByteLookup = RegisterRowLookup<kEntryHighBytes>;

// M >= 7: byte planes for all 64 columns, then assembly per 16.  The row's
// 2^M low bytes (and high bytes) are Chunks tables of 128 bytes; a column
// whose ib lies in chunk c takes its byte from the permute over chunk c
// (merged by a mask computed once per k from the chunk bytes ib >> 7).
template <int Chunks>
struct ByteChunksLookup {
  static constexpr int64_t kHigh = 128 * Chunks;  // offset of the high bytes in a row
  static constexpr bool kReadsVectorsApart = Chunks == 1;
  static constexpr int64_t kIndexBytes = 1;  // kLutPlanes: the fraction's byte
  // Dword d of vector v takes L[16v + d] into byte 1 and H[16v + d] (index
  // 64 + 16v + d: the second source) into byte 2.
  struct Constants {
    __m512i assembly[kVectorsPerStrip];
    Constants() {
      for (int v = 0; v < kVectorsPerStrip; ++v) {
        const __m512i d = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(16 * v));
        assembly[v] =
            _mm512_or_si512(_mm512_slli_epi32(d, 8), _mm512_slli_epi32(_mm512_add_epi32(d, _mm512_set1_epi32(64)), 16));
      }
    }
  };
  struct Columns {
    __m512i ib;
    __mmask64 in_chunk[Chunks];  // [0] unused: chunk 0 is the base
    explicit Columns(const uint32_t* pb) : ib(_mm512_loadu_si512(pb)) {
      if (Chunks > 1) {
        const __m512i chunk = _mm512_loadu_si512(pb + kStripCols / 4);
        for (int c = 1; c < Chunks; ++c) in_chunk[c] = _mm512_cmpeq_epi8_mask(chunk, _mm512_set1_epi8(char(c)));
      }
    }
    // Index bytes 16 per vector (kLutPlanes only: one chunk).
    explicit Columns(const VectorColumns& vc) {
      static_assert(Chunks == 1, "vectors read apart only with M <= 7");
      const __m256i low = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(vc.index[0]))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(vc.index[1])), 1);
      const __m256i high = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(vc.index[2]))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(vc.index[3])), 1);
      ib = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
    }
  };
  static __m512i plane(const uint8_t* bytes, const Columns& cols) {
    __m512i out = _mm512_permutex2var_epi8(_mm512_loadu_si512(bytes), cols.ib, _mm512_loadu_si512(bytes + 64));
    for (int c = 1; c < Chunks; ++c)
      out = _mm512_mask_mov_epi8(out, cols.in_chunk[c],
                                 _mm512_permutex2var_epi8(_mm512_loadu_si512(bytes + 128 * c), cols.ib,
                                                          _mm512_loadu_si512(bytes + 128 * c + 64)));
    return out;
  }
  struct Row {
    __m512i low, high;
    Row(const uint8_t* row, const Columns& cols) : low(plane(row, cols)), high(plane(row + kHigh, cols)) {}
    __m512i entry(int v, const Columns&, const Constants& consts) const {
      return _mm512_maskz_permutex2var_epi8(kEntryLowBytes | kEntryHighBytes, low, consts.assembly[v], high);
    }
  };
};
using PlanesLookup = ByteChunksLookup<1>;

// acc[v] += the 64 products of one left operand (its table row and scale)
// and one (strip, k) of B (index columns and scales).
// Vectors: how many of the strip's 16-column vectors hold columns of C (a
// narrow C's only strip, or the last one, may need fewer than all).
template <typename Lookup, bool Fused, int Vectors = kVectorsPerStrip, typename Scales = ContiguousScales>
void add_strip_products(__m512 (&acc)[kVectorsPerStrip], const typename Lookup::Row& row,
                        const typename Lookup::Columns& cols, const typename Lookup::Constants& consts, __m512i scale_a,
                        const Scales& scale_b) {
  for (int v = 0; v < Vectors; ++v) {
    const __m512 t_scaled = _mm512_castsi512_ps(_mm512_add_epi32(row.entry(v, cols, consts), scale_a));
    acc[v] = accumulate<Fused>(acc[v], t_scaled, scale_b(v));
  }
}

// Calls run(specials, fused) with the flags as compile-time constants:
// tiles with a special left operand never fuse (their kernel is the general one).
template <typename Run>
void with_kernel_variant(bool specials, bool fused, const Run& run) {
  if (specials)
    run(std::true_type{}, std::false_type{});
  else if (fused)
    run(std::false_type{}, std::true_type{});
  else
    run(std::false_type{}, std::false_type{});
}

// Calls run(vectors) with how many of a strip's 16-column vectors hold its
// `columns` (1, 2, 3 or all) as a compile-time constant: a strip of at most
// 16, 32 or 48 columns (a filter gradient's 25 or 144 = 2 x 64 + 16 patch
// columns, a conv with 48 output channels: AMConv3D's three depth taps of 16
// side by side) computes only those.
template <typename Run>
void with_vectors(int64_t columns, const Run& run) {
  if (columns <= 16)
    run(std::integral_constant<int, 1>{});
  else if (columns <= 32)
    run(std::integral_constant<int, 2>{});
  else if (columns <= 48)
    run(std::integral_constant<int, 3>{});
  else
    run(std::integral_constant<int, kVectorsPerStrip>{});
}


// How lut_tile reads B: packed strips, in place (one run per (strip, kk)),
// or in place with each 16-column vector apart (ShiftedRight::vector_offsets).
enum RightRead { kPackedRight, kShiftedRight, kShiftedVectors };

template <typename Lookup, int Rows, bool Specials, bool Fused, int Read, int Vectors>
void lut_tile(const GemmPlan& p, int64_t i, int64_t strip, int64_t k0, int64_t k1) {
  constexpr bool Shifted = Read == kShiftedRight;
  const int64_t j0 = strip * kStripCols;
  const StripMasks masks(p.n, j0);
  float* c = p.c + i * p.ldc + j0;
  Tile<Rows> tile;
  tile.load(c, p.ldc, masks);
  const typename Lookup::Constants consts;
  const uint32_t* pb = Read == kPackedRight ? packed_b_at(p, strip, k0) : nullptr;
  const LeftRef* pa = p.packed_a + (i - p.a_row0) * p.k;
  // B read in place: the planes, the strip's column offset (or its vectors'
  // offsets) hoisted out of the k loop, and the index width a constant of
  // the layout, so each (kk, vector) is one address from k_offsets[kk].
  constexpr int64_t kIndexBytes = Lookup::kIndexBytes;
  const uint8_t* const index = Read == kPackedRight ? nullptr : p.shifted->index;
  const float* const scales = Read == kPackedRight ? nullptr : p.shifted->scales;
  const int64_t* const k_offsets = Read == kPackedRight ? nullptr : p.shifted->k_offsets;
  int64_t apart[kVectorsPerStrip] = {};
  if constexpr (Read == kShiftedVectors)
    for (int v = 0; v < kVectorsPerStrip; ++v) apart[v] = p.shifted->vector_offsets[strip * kVectorsPerStrip + v];
  const auto add_rows = [&](int64_t kk, const typename Lookup::Columns& cols, const auto& scale_b) {
    for (int r = 0; r < Rows; ++r) {
      const LeftRef a = pa[r * p.k + kk];
      if (Specials && a.row == kSpecialRow) {
        tile.add_special(r, p, i + r, kk, j0, masks);
        continue;
      }
      const typename Lookup::Row row(p.lut_rows + int64_t{a.row} * p.lut_row_bytes, cols);
      add_strip_products<Lookup, Fused, Vectors>(tile.acc[r], row, cols, consts, _mm512_set1_epi32(int(a.scale)),
                                                 scale_b);
    }
  };
  // do-while, not for: with a zero-trip path GCC 12 keeps the accumulators'
  // stack copies up to date in every iteration (16 extra stores per k).
  int64_t kk = k0;
  do {
    if constexpr (Read == kShiftedVectors) {
      const int64_t at = k_offsets[kk];
      VectorColumns vc;
      for (int v = 0; v < kVectorsPerStrip; ++v) {
        vc.index[v] = index + (at + apart[v]) * kIndexBytes;
        vc.scale[v] = scales + at + apart[v];
      }
      add_rows(kk, typename Lookup::Columns(vc), VectorScales{vc.scale});
    } else {
      const float* scale_b;
      if (Shifted) {
        const int64_t at = k_offsets[kk] + j0;
        pb = reinterpret_cast<const uint32_t*>(index + at * kIndexBytes);
        scale_b = scales + at;
      } else {
        scale_b = reinterpret_cast<const float*>(pb + p.scales_offset);
      }
      add_rows(kk, typename Lookup::Columns(pb), ContiguousScales{scale_b});
      if (!Shifted) pb += p.words_per_k;
    }
  } while (++kk < k1);
  tile.store(c, p.ldc, masks);
}

template <typename Lookup, int Rows>
void lut_tile_rows(const GemmPlan& p, int64_t i, int64_t strip, int64_t k0, int64_t k1) {
  bool specials = false;
  for (int r = 0; r < Rows; ++r) specials |= p.row_has_special[i - p.a_row0 + r] != 0;
  const int64_t columns = p.n - strip * kStripCols;
  if (p.shifted != nullptr) {  // no special left operands (gemm_blocked's contract)
    if constexpr (Lookup::kReadsVectorsApart) {
      if (p.shifted->vector_offsets != nullptr) {
        with_kernel_variant(false, p.fused_multiply_add, [&](auto, auto fused) {
          with_vectors(columns, [&](auto vectors) {
            lut_tile<Lookup, Rows, false, decltype(fused)::value, kShiftedVectors, decltype(vectors)::value>(
                p, i, strip, k0, k1);
          });
        });
        return;
      }
    }
    with_kernel_variant(false, p.fused_multiply_add, [&](auto, auto fused) {
      lut_tile<Lookup, Rows, false, decltype(fused)::value, kShiftedRight, kVectorsPerStrip>(p, i, strip, k0, k1);
    });
    return;
  }
  with_kernel_variant(specials, p.fused_multiply_add, [&](auto with_specials, auto fused) {
    with_vectors(columns, [&](auto vectors) {
      lut_tile<Lookup, Rows, decltype(with_specials)::value, decltype(fused)::value, kPackedRight,
               decltype(vectors)::value>(p, i, strip, k0, k1);
    });
  });
}

// Rows of a tile over a packed strip of 33..48 columns (3 vectors): 18
// accumulators, so each (strip, k) of B is loaded once per 18 products of 16
// instead of 12 (AMConv3D's 48-channel forward and input gradient).
constexpr int kThreeVectorTileRows = 6;

template <typename Lookup>
void lut_three_vector_tile(const GemmPlan& p, int64_t i, int64_t strip, int64_t k0, int64_t k1) {
  bool specials = false;
  for (int r = 0; r < kThreeVectorTileRows; ++r) specials |= p.row_has_special[i - p.a_row0 + r] != 0;
  with_kernel_variant(specials, p.fused_multiply_add, [&](auto with_specials, auto fused) {
    lut_tile<Lookup, kThreeVectorTileRows, decltype(with_specials)::value, decltype(fused)::value, kPackedRight, 3>(
        p, i, strip, k0, k1);
  });
}

template <typename Lookup>
void lut_block(const GemmPlan& p, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0, int64_t k1) {
  if (k0 >= k1) return;  // the tiles' k loops run at least once
  for (int64_t strip = s0; strip < s1; ++strip) {
    int64_t i = i0;
    const int64_t columns = p.n - strip * kStripCols;
    if (p.shifted == nullptr && columns > 32 && columns <= 48)
      for (; i + kThreeVectorTileRows <= i1; i += kThreeVectorTileRows)
        lut_three_vector_tile<Lookup>(p, i, strip, k0, k1);
    for (; i + kTileRows <= i1; i += kTileRows) lut_tile_rows<Lookup, kTileRows>(p, i, strip, k0, k1);
    switch (i1 - i) {
      case 3:
        lut_tile_rows<Lookup, 3>(p, i, strip, k0, k1);
        break;
      case 2:
        lut_tile_rows<Lookup, 2>(p, i, strip, k0, k1);
        break;
      case 1:
        lut_tile_rows<Lookup, 1>(p, i, strip, k0, k1);
        break;
      default:
        break;
    }
  }
}

// One row against up to kMaxStrips strips: for large tables (M >= 10, a row
// of byte planes is 2 KiB or more) each row is fetched once per k for 256
// columns instead of 64.
constexpr int kMaxStrips = 4;

template <typename Lookup, int Strips, bool Specials, bool Fused>
void lut_wide_row(const GemmPlan& p, int64_t i, int64_t s0, int64_t k0, int64_t k1) {
  const StripMasks masks[kMaxStrips] = {StripMasks(p.n, (s0 + 0) * kStripCols), StripMasks(p.n, (s0 + 1) * kStripCols),
                                        StripMasks(p.n, (s0 + 2) * kStripCols), StripMasks(p.n, (s0 + 3) * kStripCols)};
  float* c = p.c + i * p.ldc + s0 * kStripCols;
  Tile<Strips> tile;  // tile row s = strip s0 + s of C row i
  for (int s = 0; s < Strips; ++s)
    for (int v = 0; v < kVectorsPerStrip; ++v)
      tile.acc[s][v] = _mm512_maskz_loadu_ps(masks[s].lanes[v], c + s * kStripCols + 16 * v);
  const typename Lookup::Constants consts;
  const LeftRef* pa = p.packed_a + (i - p.a_row0) * p.k;
  int64_t kk = k0;
  do {  // see lut_tile
    const LeftRef a = pa[kk];
    if (Specials && a.row == kSpecialRow) {
      for (int s = 0; s < Strips; ++s) tile.add_special(s, p, i, kk, (s0 + s) * kStripCols, masks[s]);
      continue;
    }
    const uint8_t* row_bytes = p.lut_rows + int64_t{a.row} * p.lut_row_bytes;
    const __m512i scale_a = _mm512_set1_epi32(int(a.scale));
    for (int s = 0; s < Strips; ++s) {
      const uint32_t* pb = packed_b_at(p, s0 + s, kk);
      const typename Lookup::Columns cols(pb);
      const typename Lookup::Row row(row_bytes, cols);
      add_strip_products<Lookup, Fused>(tile.acc[s], row, cols, consts, scale_a,
                                        ContiguousScales{reinterpret_cast<const float*>(pb + p.scales_offset)});
    }
  } while (++kk < k1);
  for (int s = 0; s < Strips; ++s)
    for (int v = 0; v < kVectorsPerStrip; ++v)
      _mm512_mask_storeu_ps(c + s * kStripCols + 16 * v, masks[s].lanes[v], tile.acc[s][v]);
}

template <typename Lookup, int Strips>
void lut_wide_rows(const GemmPlan& p, int64_t i0, int64_t i1, int64_t s0, int64_t k0, int64_t k1) {
  for (int64_t i = i0; i < i1; ++i) {
    with_kernel_variant(
        p.row_has_special[i - p.a_row0] != 0, p.fused_multiply_add, [&](auto with_specials, auto fused) {
          lut_wide_row<Lookup, Strips, decltype(with_specials)::value, decltype(fused)::value>(p, i, s0, k0, k1);
        });
  }
}

template <typename Lookup>
void lut_wide_block(const GemmPlan& p, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0, int64_t k1) {
  if (k0 >= k1) return;  // the rows' k loops run at least once
  for (int64_t s = s0; s < s1; s += kMaxStrips) {
    switch (s1 - s < kMaxStrips ? s1 - s : kMaxStrips) {
      case 1:
        lut_wide_rows<Lookup, 1>(p, i0, i1, s, k0, k1);
        break;
      case 2:
        lut_wide_rows<Lookup, 2>(p, i0, i1, s, k0, k1);
        break;
      case 3:
        lut_wide_rows<Lookup, 3>(p, i0, i1, s, k0, k1);
        break;
      default:
        lut_wide_rows<Lookup, 4>(p, i0, i1, s, k0, k1);
        break;
    }
  }
}

}  // namespace

void lut_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                          int64_t k1) {
  lut_block<NarrowLookup>(plan, i0, i1, s0, s1, k0, k1);
}

void lut_high_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                               int64_t k1) {
  lut_block<HighByteLookup>(plan, i0, i1, s0, s1, k0, k1);
}

void lut_planes_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                                 int64_t k1) {
  lut_block<PlanesLookup>(plan, i0, i1, s0, s1, k0, k1);
}

void lut_chunks_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                                 int64_t k1) {
  switch (plan.table->mantissa_bits) {
    case 8:
      lut_block<ByteChunksLookup<2>>(plan, i0, i1, s0, s1, k0, k1);
      break;
    case 9:
      lut_block<ByteChunksLookup<4>>(plan, i0, i1, s0, s1, k0, k1);
      break;
    case 10:
      lut_wide_block<ByteChunksLookup<8>>(plan, i0, i1, s0, s1, k0, k1);
      break;
    default:
      lut_wide_block<ByteChunksLookup<16>>(plan, i0, i1, s0, s1, k0, k1);
      break;
  }
}

}  // namespace cpu
}  // namespace amsim
#else  // built without AVX-512 flags: never selected (cpu_features.h), kept for the linker
#include "amsim/cpu/gemm_blocked.h"

namespace amsim {
namespace cpu {
void lut_block_avx512vbmi(const GemmPlan&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {}
void lut_high_block_avx512vbmi(const GemmPlan&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {}
void lut_planes_block_avx512vbmi(const GemmPlan&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {}
void lut_chunks_block_avx512vbmi(const GemmPlan&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) {}
}  // namespace cpu
}  // namespace amsim
#endif
