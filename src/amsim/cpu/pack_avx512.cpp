// AVX-512 packing of the GEMM operands for the blocked paths: the rules of
// packed_operands.h (pack_left, pack_right, rounds_to_infinity), 16 values
// at a time.  Compiled with -mavx512f -mavx512bw; called only after a
// run-time check.
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

#include <algorithm>

#include "amsim/cpu/avx512_reduce.h"
#include "amsim/cpu/gemm_blocked.h"

namespace amsim {
namespace cpu {

namespace {

// The exponent range of the values packed, kept per lane while packing and
// merged into an ExponentRange at the end.
class ExponentTracker {
 public:
  explicit ExponentTracker(ExponentRange* range)
      : range_(range), min_(_mm512_set1_epi32(int(range->min))), max_(_mm512_set1_epi32(int(range->max))) {}
  // The lanes of `ordinary` hold ordinary values with these reduced exponents.
  void add(__mmask16 ordinary, __m512i exponents) {
    min_ = _mm512_mask_min_epu32(min_, ordinary, min_, exponents);
    max_ = _mm512_mask_max_epu32(max_, ordinary, max_, exponents);
  }
  // Plain loop: GCC 12's _mm512_reduce_min_epu32 warns about its own undefined vector.
  ~ExponentTracker() {
    alignas(64) uint32_t lo[16], hi[16];
    _mm512_store_si512(lo, min_);
    _mm512_store_si512(hi, max_);
    for (int i = 0; i < 16; ++i) range_->merge(ExponentRange{lo[i], hi[i]});
  }

 private:
  ExponentRange* range_;
  __m512i min_, max_;
};

// Dword 16x16 transpose in registers: rows[t] lane q  ->  rows[q] lane t.
void transpose16x16(__m512i (&rows)[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(rows[i], rows[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(rows[i], rows[i + 1]);
  }
  // u[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g + 3.
  for (int g = 0; g < 4; ++g) {
    const __m512i* tg = t + 4 * g;
    u[4 * g + 0] = _mm512_unpacklo_epi64(tg[0], tg[2]);
    u[4 * g + 1] = _mm512_unpackhi_epi64(tg[0], tg[2]);
    u[4 * g + 2] = _mm512_unpacklo_epi64(tg[1], tg[3]);
    u[4 * g + 3] = _mm512_unpackhi_epi64(tg[1], tg[3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i low01 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44),
                  high01 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
    const __m512i low23 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44),
                  high23 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
    rows[c] = _mm512_shuffle_i32x4(low01, low23, 0x88);
    rows[4 + c] = _mm512_shuffle_i32x4(low01, low23, 0xDD);
    rows[8 + c] = _mm512_shuffle_i32x4(high01, high23, 0x88);
    rows[12 + c] = _mm512_shuffle_i32x4(high01, high23, 0xDD);
  }
}

// The 16 x 16 block of a matrix stored the other way round: lines t < lines
// of 16 floats (lanes, +0 elsewhere) at first + t * stride, transposed, so
// block[q] holds element q of every line.
void load_transposed(const float* first, int64_t stride, int64_t lines, __mmask16 lanes, __m512i (&block)[16]) {
  for (int t = 0; t < 16; ++t)
    block[t] =
        t < lines ? _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, first + t * stride)) : _mm512_setzero_si512();
  transpose16x16(block);
}

// Writes the packed form of 16 right operands (bits u; +0 past the matrix)
// as vector v of one (strip, k) of the layout at base; returns the lanes
// that round to infinity.
class RightEncoder {
 public:
  RightEncoder(RightLayout layout, const Table& table, ExponentRange* range)
      : layout_(layout), table_(table), exponents_(range), scale_at_(scales_offset(layout)) {}

  __mmask16 encode(__m512i u, uint32_t* base, int v) {
    const __m512i zero = _mm512_setzero_si512(), exp_max = _mm512_set1_epi32(255);
    const Reduced16 r = reduce16(u, table_.mantissa_bits, table_.rounding);
    const __mmask16 is_zero = _mm512_cmpeq_epi32_mask(r.raw_exponent, zero);
    const __mmask16 is_inf_nan = _mm512_cmpeq_epi32_mask(r.raw_exponent, exp_max);
    const __mmask16 is_normal = __mmask16(~(is_zero | is_inf_nan));
    const __mmask16 to_inf = _mm512_mask_cmpeq_epi32_mask(is_normal, r.exponent, exp_max);
    exponents_.add(__mmask16(is_normal & ~to_inf), r.exponent);
    // scale: sign | e << 23 (e = 255 gives the signed inf), +-0 for zeros,
    // the value itself for inf, the quiet NaN for NaN.
    __m512i scale = _mm512_or_si512(r.sign, _mm512_slli_epi32(r.exponent, 23));
    scale = _mm512_mask_mov_epi32(scale, is_zero, r.sign);
    scale = _mm512_mask_mov_epi32(scale, is_inf_nan, u);
    const __mmask16 is_nan = _mm512_mask_cmpgt_epu32_mask(
        is_inf_nan, _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    scale = _mm512_mask_mov_epi32(scale, is_nan, _mm512_set1_epi32(int(kQuietNaNBits)));
    store(_mm512_maskz_mov_epi32(__mmask16(is_normal & ~to_inf), r.fraction), scale, base, v);
    return to_inf;
  }

  // Vector v past the matrix's last column: the encoding of +0, never read into C.
  void encode_zeros(uint32_t* base, int v) { store(_mm512_setzero_si512(), _mm512_setzero_si512(), base, v); }

 private:
  void store(__m512i fraction, __m512i scale, uint32_t* base, int v) {
    _mm512_store_si512(base + scale_at_ + 16 * v, scale);
    if (layout_ == RightLayout::kLutPlanes || layout_ == RightLayout::kLutChunks) {
      _mm_store_si128(reinterpret_cast<__m128i*>(base) + v, _mm512_cvtepi32_epi8(fraction));
      if (layout_ == RightLayout::kLutChunks)
        _mm_store_si128(reinterpret_cast<__m128i*>(base) + 4 + v, _mm512_cvtepi32_epi8(_mm512_srli_epi32(fraction, 7)));
    } else if (layout_ == RightLayout::kLutBytes) {
      const __m512i idx =
          _mm512_or_si512(_mm512_set1_epi32(int(kLutNarrowHighIndex << 16)),
                          _mm512_or_si512(_mm512_slli_epi32(fraction, 16), _mm512_slli_epi32(fraction, 8)));
      _mm512_store_si512(base + 16 * v, idx);
    } else if (layout_ == RightLayout::kLutHighBytes) {
      _mm512_store_si512(base + 16 * v, _mm512_slli_epi32(fraction, 16));
    } else {
      // Byte offset of each lane's dword within its 128-bit lane (the gather layout's shuffle control).
      const __m512i lane_bytes = _mm512_set_epi32(12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0);
      const __m512i one = _mm512_set1_epi32(1);
      _mm512_store_si512(base + 16 * v, _mm512_andnot_si512(one, fraction));
      const __m512i first = _mm512_add_epi32(lane_bytes, _mm512_slli_epi32(_mm512_and_si512(fraction, one), 1));
      const __m512i ctrl = _mm512_or_si512(
          _mm512_set1_epi32(int(0x80000080u)),
          _mm512_or_si512(_mm512_slli_epi32(_mm512_add_epi32(first, one), 16), _mm512_slli_epi32(first, 8)));
      _mm512_store_si512(base + 2 * kStripCols + 16 * v, ctrl);
    }
  }

  RightLayout layout_;
  const Table& table_;
  ExponentTracker exponents_;
  int64_t scale_at_;
};

}  // namespace

void pack_b_avx512(RightLayout layout, const Table& table, const MatrixView& b, int64_t n, int64_t k0, int64_t k1,
                   int64_t s0, int64_t s1, uint32_t* out, int64_t out_k0, int64_t out_k_count, uint8_t* rounds_to_inf,
                   ExponentRange* range) {
  const int64_t words = words_per_k(layout);
  RightEncoder encoder(layout, table, range);
  auto packed_at = [&](int64_t s, int64_t kk) { return out + ((s - s0) * out_k_count + kk - out_k0) * words; };
  constexpr int kVectors = int(kStripCols / 16);
  if (b.row_stride == 1 && b.col_stride != 1) {
    // B stored transposed (B[k, j] at k + j * ld: a transposed matmul or
    // conv operand): blocks of 16 j x 16 k, one load per j and a transpose,
    // walking each j's k in order.
    std::fill(rounds_to_inf + k0, rounds_to_inf + k1, uint8_t{0});
    for (int64_t s = s0; s < s1; ++s) {
      for (int v = 0; v < kVectors; ++v) {
        const int64_t j = s * kStripCols + 16 * v;
        if (j >= n) {
          for (int64_t kk = k0; kk < k1; ++kk) encoder.encode_zeros(packed_at(s, kk), v);
          continue;
        }
        for (int64_t kb = k0; kb < k1; kb += 16) {
          const int64_t kn = k1 - kb < 16 ? k1 - kb : 16;
          const __mmask16 k_lanes = tail_mask(kn);
          __m512i block[16];
          load_transposed(b.data + kb + j * b.col_stride, b.col_stride, n - j, k_lanes, block);
          for (int q = 0; q < kn; ++q)
            if (encoder.encode(block[q], packed_at(s, kb + q), v)) rounds_to_inf[kb + q] = 1;
        }
      }
    }
    return;
  }
  alignas(64) float column[kStripCols];
  for (int64_t kk = k0; kk < k1; ++kk) {
    __mmask16 any_to_inf = 0;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t j0 = s * kStripCols, count = n - j0 < kStripCols ? n - j0 : kStripCols;
      const float* src = b.data + kk * b.row_stride + j0 * b.col_stride;
      if (b.col_stride != 1) {
        for (int64_t j = 0; j < count; ++j) column[j] = src[j * b.col_stride];
        src = column;
      }
      for (int v = 0; v < kVectors; ++v) {
        const int64_t left = count - 16 * v;
        if (left <= 0) {
          encoder.encode_zeros(packed_at(s, kk), v);
          continue;
        }
        const __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(tail_mask(left), src + 16 * v));  // past n: +0
        any_to_inf |= encoder.encode(u, packed_at(s, kk), v);
      }
    }
    rounds_to_inf[kk] = any_to_inf != 0;
  }
}

bool encode_right_values_avx512(RightLayout layout, const Table& table, const float* x, int64_t count,
                                uint32_t* index, float* scale, ExponentRange* range) {
  ExponentTracker exponents(range);
  const __m512i zero = _mm512_setzero_si512(), large = _mm512_set1_epi32(0x7e800000);  // 2^126
  const __m512i narrow_high = _mm512_set1_epi32(int(kLutNarrowHighIndex << 16));
  __mmask16 too_large = 0;
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 lanes = tail_mask(count - i);
    const __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, x + i));
    const Reduced16 r = reduce16(u, table.mantissa_bits, table.rounding);
    too_large |= _mm512_mask_cmpge_epu32_mask(lanes, _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), large);
    const __mmask16 ordinary = __mmask16(lanes & ~_mm512_cmpeq_epi32_mask(r.raw_exponent, zero));
    exponents.add(ordinary, r.exponent);
    // As RightEncoder::encode for these values: scale sign | e << 23 (+-0 for zeros).
    const __m512i sc = _mm512_mask_mov_epi32(r.sign, ordinary, _mm512_or_si512(r.sign, _mm512_slli_epi32(r.exponent, 23)));
    const __m512i f = r.fraction;
    __m512i idx = f;
    if (layout == RightLayout::kLutBytes)
      idx = _mm512_or_si512(narrow_high, _mm512_or_si512(_mm512_slli_epi32(f, 16), _mm512_slli_epi32(f, 8)));
    else if (layout == RightLayout::kLutHighBytes)
      idx = _mm512_slli_epi32(f, 16);
    _mm512_mask_storeu_epi32(index + i, lanes, _mm512_maskz_mov_epi32(ordinary, idx));
    _mm512_mask_storeu_epi32(scale + i, lanes, sc);
  }
  return too_large == 0;
}

void split_rows_avx512(RightLayout layout, const Table& table, uint8_t* out) {
  const int64_t side = int64_t{1} << table.mantissa_bits, row_bytes = lut_row_bytes(layout, table.mantissa_bits);
  const bool high_only = layout == RightLayout::kLutHighBytes;
  const int64_t high = high_only ? 0 : side > 64 ? side : 64;
  for (int64_t ia = 0; ia <= side; ++ia) {  // row `side`: the zero row
    uint8_t* row = out + ia * row_bytes;
    for (int64_t at = 0; at < row_bytes; at += 64) _mm512_storeu_si512(row + at, _mm512_setzero_si512());
    if (ia == side) break;
    const uint16_t* entries = table.entries + ia * side;
    for (int64_t ib = 0; ib < side; ib += 32) {
      const __mmask32 lanes = side - ib >= 32 ? __mmask32(0xffffffffu) : __mmask32((1u << (side - ib)) - 1u);
      const __m512i e = _mm512_maskz_loadu_epi16(lanes, entries + ib);
      if (!high_only) _mm512_mask_storeu_epi8(row + ib, lanes, _mm512_castsi256_si512(_mm512_cvtepi16_epi8(e)));
      _mm512_mask_storeu_epi8(row + high + ib, lanes,
                              _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(e, 8))));
    }
  }
}

void pack_a_avx512(RightLayout layout, const Table& table, const MatrixView& a, int64_t k, int64_t i0, int64_t i1,
                   int64_t k0, int64_t k1, const uint8_t* b_rounds_to_inf, LeftRef* out, uint8_t* row_has_special,
                   ExponentRange* range) {
  ExponentTracker exponents(range);
  const __m512i zero = _mm512_setzero_si512(), exp_limit = _mm512_set1_epi32(254);
  // Interleave (row, scale) pairs into LeftRef order.
  const __m512i low_pairs = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i high_pairs = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const bool planes = layout != RightLayout::kGatherPairs;  // both table-in-register layouts
  const __m512i zero_row = _mm512_set1_epi32(planes ? 1 << table.mantissa_bits : 0);
  const __m512i exponent_bias = _mm512_set1_epi32(planes ? 0 : 1);
  // A[i, kk .. kk + 15] (bits u, +0 past k1) -> packed; returns the special lanes.
  auto encode = [&](int64_t i, int64_t kk, __m512i u) -> __mmask16 {
    const __mmask16 lanes = tail_mask(k1 - kk);
    const Reduced16 r = reduce16(u, table.mantissa_bits, table.rounding);
    const __mmask16 is_zero = _mm512_cmpeq_epi32_mask(r.raw_exponent, zero);
    const __m512i flags =
        _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(__mmask64(lanes), b_rounds_to_inf + kk)));
    const __mmask16 zero_vs_inf = _mm512_mask_test_epi32_mask(is_zero, flags, flags);
    const __mmask16 special =
        __mmask16(lanes & (_mm512_cmpge_epu32_mask(r.raw_exponent, exp_limit) |
                           _mm512_mask_cmpge_epu32_mask(__mmask16(~is_zero), r.exponent, exp_limit) | zero_vs_inf));
    exponents.add(__mmask16(lanes & ~is_zero & ~special), r.exponent);
    // row: the fraction (0 for zeros), kSpecialRow for specials; scale:
    // sign * 2^(e - 126) (biased exponent e + 1), +-0 for zeros, 0 for specials.
    // kLut*: scale = sign | e << 23 (an integer added to entry << 8), zeros
    // take the all-zero table row 2^M.
    __m512i row = _mm512_mask_mov_epi32(r.fraction, is_zero, zero_row);
    row = _mm512_mask_mov_epi32(row, special, _mm512_set1_epi32(int(kSpecialRow)));
    __m512i scale = _mm512_or_si512(r.sign, _mm512_slli_epi32(_mm512_add_epi32(r.exponent, exponent_bias), 23));
    scale = _mm512_mask_mov_epi32(scale, is_zero, r.sign);
    scale = _mm512_mask_mov_epi32(scale, special, zero);
    int32_t* dst = reinterpret_cast<int32_t*>(out + (i - i0) * k + kk);
    const int64_t left = k1 - kk;
    _mm512_mask_storeu_epi32(dst, tail_mask(2 * left), _mm512_permutex2var_epi32(row, low_pairs, scale));
    if (left > 8)
      _mm512_mask_storeu_epi32(dst + 16, tail_mask(2 * left - 16), _mm512_permutex2var_epi32(row, high_pairs, scale));
    return special;
  };
  if (a.col_stride != 1 && a.row_stride == 1) {
    // A stored transposed (A[i, k] at i + k * ld: transpose_a, conv filter
    // gradients): blocks of 16 k x 16 i, one load per k and a transpose.
    for (int64_t ib = i0; ib < i1; ib += 16) {
      const int64_t in = i1 - ib < 16 ? i1 - ib : 16;
      const __mmask16 i_lanes = tail_mask(in);
      __mmask16 any_special[16] = {};
      for (int64_t kk = k0; kk < k1; kk += 16) {
        __m512i block[16];
        load_transposed(a.data + ib + kk * a.col_stride, a.col_stride, k1 - kk, i_lanes, block);
        for (int q = 0; q < in; ++q) any_special[q] |= encode(ib + q, kk, block[q]);
      }
      for (int q = 0; q < in; ++q) row_has_special[ib + q - i0] = any_special[q] != 0;
    }
    return;
  }
  alignas(64) float values[16];
  for (int64_t i = i0; i < i1; ++i) {
    __mmask16 any_special = 0;
    for (int64_t kk = k0; kk < k1; kk += 16) {
      const float* src = a.data + i * a.row_stride + kk * a.col_stride;
      if (a.col_stride != 1) {
        for (int64_t j = 0; j < k1 - kk && j < 16; ++j) values[j] = src[j * a.col_stride];
        src = values;
      }
      any_special |= encode(i, kk, _mm512_castps_si512(_mm512_maskz_loadu_ps(tail_mask(k1 - kk), src)));
    }
    row_has_special[i - i0] = any_special != 0;
  }
}

}  // namespace cpu
}  // namespace amsim
#else  // built without AVX-512 flags: never selected (cpu_features.h), kept for the linker
#include "amsim/cpu/gemm_blocked.h"

namespace amsim {
namespace cpu {
void pack_b_avx512(RightLayout, const Table&, const MatrixView&, int64_t, int64_t, int64_t, int64_t, int64_t, uint32_t*,
                   int64_t, int64_t, uint8_t*, ExponentRange*) {}
void pack_a_avx512(RightLayout, const Table&, const MatrixView&, int64_t, int64_t, int64_t, int64_t, int64_t,
                   const uint8_t*, LeftRef*, uint8_t*, ExponentRange*) {}
void split_rows_avx512(RightLayout, const Table&, uint8_t*) {}
bool encode_right_values_avx512(RightLayout, const Table&, const float*, int64_t, uint32_t*, float*, ExponentRange*) {
  return false;
}
}  // namespace cpu
}  // namespace amsim
#endif
