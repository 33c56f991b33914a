// The blocked CPU GEMM shared by the SIMD paths: B packed into strips of 64
// columns (once per GEMM, or per task and K block when A is short), A packed
// one row block at a time, C cut into tasks (row blocks x groups of strips)
// for the ParallelFor, and a per-ISA block kernel that does the arithmetic.
//
// The driver (gemm_blocked.cpp) is baseline x86-64 code; the block kernels
// live in translation units compiled for newer ISAs.  Those units exchange
// only plain structs and raw pointers with the driver, so no inline function
// or template compiled with wider instructions can leak into baseline code
// through the linker's choice among identical inline definitions (the few
// helpers defined here are `static`).
#pragma once

#include <cstdint>
#include <functional>

#include "amsim/gemm.h"

namespace amsim {
namespace cpu {

// Columns of C one kernel tile covers: 4 zmm registers of 16 floats.
constexpr int64_t kStripCols = 64;
// A packed left operand whose products must come from am_multiply(): a
// special one (packed_operands.h), or a zero against a row of B with a value
// that rounds to infinity.
constexpr uint32_t kSpecialRow = 0xffffffffu;

// Left operand A[i, k] as the kernels use it: its table row (the reduced
// fraction ia) and its scale.  Gather layout: the float bits of
// sign(a) * 2^(ea - 126) (see packed_operands.h).  Table-in-register layouts
// (kLut*): sign(a) | ea << 23, added as an integer to the entry bits
// (entry << 8); a zero a has the all-zero table row 2^M and scale sign(a).
struct LeftRef {
  uint32_t row;
  uint32_t scale;
};

// The reduced exponents of a packed operand's ordinary values (finite,
// nonzero, neither special nor rounded to infinity): [min, max], empty while
// min > max.
struct ExponentRange {
  uint32_t min = 255, max = 0;
  void merge(const ExponentRange& other) {
    if (other.min < min) min = other.min;
    if (other.max > max) max = other.max;
  }
};

// True when every product of ordinary values from these ranges is a normal
// float (biased exponent ea + eb - 127 + carry within [1, 254]): then the
// product is exact, and fma(x, scale_b, acc) == acc + x * scale_b bit for
// bit, so the kernels may fuse the multiply and the add.  `static`: see the
// top of this file.
static inline bool products_stay_normal(const ExponentRange& a, const ExponentRange& b) {
  if (a.min > a.max || b.min > b.max) return true;
  return a.min + b.min >= 128 && a.max + b.max <= 380;
}

// How a path lays out the right operand of one (strip, k), each ending with
// the kStripCols scale floats of packed_operands.h:
//   kLutBytes (M <= 6):    kStripCols index dwords [0, ib, ib + 64, 0] (bytes
//                          low to high), then the scales;
//   kLutHighBytes (M = 7, EntryBytes::kHighOnly): kStripCols index dwords
//                          [0, 0, ib, 0], then the scales (the row's 2^7 high
//                          bytes fill two registers: one permute per 16);
//   kLutPlanes (M = 7):    kStripCols index bytes ib, then the scales;
//   kLutChunks (M = 8..11): kStripCols bytes ib & 0xff, kStripCols bytes
//                          ib >> 7 (the row's 128-entry chunk), the scales;
//   kGatherPairs (any M):  kStripCols dwords ib & ~1, the scales, kStripCols
//                          byte-shuffle controls.
enum class RightLayout { kLutBytes, kLutHighBytes, kLutPlanes, kLutChunks, kGatherPairs };
constexpr int64_t kLutWordsPerK = 2 * kStripCols;
constexpr int64_t kLutPlanesWordsPerK = kStripCols / 4 + kStripCols;
constexpr int64_t kLutChunksWordsPerK = kStripCols / 2 + kStripCols;
// kLutBytes for M <= 6: the high-byte index is ib + 64, so one permute over
// the row's two 64-byte registers [low bytes | high bytes] fetches both bytes.
constexpr uint32_t kLutNarrowHighIndex = 64;
constexpr int64_t kGatherWordsPerK = 3 * kStripCols;
int64_t words_per_k(RightLayout layout);  // dwords per (strip, k)
int64_t scales_offset(RightLayout layout);  // where the scales start in them

struct ShiftedRight;  // below

// Everything a block kernel reads; built by the driver, read-only while the
// kernels run (except c).
struct GemmPlan {
  const Table* table = nullptr;
  const MatrixView* a = nullptr;
  const MatrixView* b = nullptr;
  int64_t m = 0, n = 0, k = 0;
  const LeftRef* packed_a = nullptr;  // [rows][k], row 0 = row a_row0 of A
  const uint8_t* row_has_special = nullptr;  // [rows]: any A[i, k] special
  int64_t a_row0 = 0;  // A is packed one row block at a time
  const uint32_t* packed_b = nullptr;  // [strip - b_strip0][kk - b_k0][words_per_k]
  int64_t b_strip0 = 0, b_k0 = 0;  // the part of B packed (all of it, or one
  int64_t b_k_count = 0;  //   task's strips of one K block)
  int64_t words_per_k = 0;
  int64_t scales_offset = 0;  // of the scale floats within a (strip, k)
  const uint8_t* lut_rows = nullptr;  // kLut*: [2^M + 1][lut_row_bytes] (split_rows_avx512)
  int64_t lut_row_bytes = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  bool fused_multiply_add = false;  // products_stay_normal() for this task's operands
  const ShiftedRight* shifted = nullptr;  // B read in place instead of packed_b
};

// The packed right operand of (strip, kk).  `static`: each ISA's translation
// unit keeps its own copy (see the top of this file).
static inline const uint32_t* packed_b_at(const GemmPlan& p, int64_t strip, int64_t kk) {
  return p.packed_b + ((strip - p.b_strip0) * p.b_k_count + (kk - p.b_k0)) * p.words_per_k;
}

// Adds to C rows [i0, i1) x strips [s0, s1) the products of k in [k0, k1),
// k ascending per element.  Runs with flush-to-zero on.
using BlockKernel = void (*)(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                             int64_t k1);

struct BlockedPath {
  BlockKernel kernel;
  RightLayout layout;
  int64_t block_rows;  // rows per task, a multiple of the kernel's register tile
  int64_t block_k;  // K per packed B panel (sized for L2)
};

// A left operand that arrives packed: pack fills out[(i - i0) * k + kk] for
// rows [i0, i1) with LeftRefs of `layout`, none of them special (a conv
// copies them from its input, packed once per pixel instead of once per
// patch); range covers all of them.
struct LeftRowPacker {
  std::function<void(int64_t i0, int64_t i1, LeftRef* out)> pack;
  ExponentRange range;
};

// A right operand read in place (a stride-1 conv's patch matrix, gemm_shifted.h):
// B[kk, j] is the encoded value at element k_offsets[kk] + j of an index
// plane (index_bytes per element: the layout's index dword, or its index
// byte for kLutPlanes) and of a scale plane (encode_right_values_avx512),
// valid for every j < round_up(n, kStripCols); none is inf, NaN or
// rounds to infinity, and range covers them all.
// With vector_offsets, each 16-column vector v of strip s lies elsewhere:
// B[kk, j] at k_offsets[kk] + vector_offsets[s * (kStripCols / 16) + v] +
// j % 16 (a filter gradient's patch columns: one tap's 16 channels per
// vector); every such vector must be readable, past n too.
struct ShiftedRight {
  const uint8_t* index = nullptr;
  int64_t index_bytes = 4;
  const float* scales = nullptr;
  const int64_t* k_offsets = nullptr;  // [k]
  const int64_t* vector_offsets = nullptr;  // [strips * kStripCols / 16], or none
  ExponentRange range;
};

// The driver: packs, schedules and runs `path` (same contract as gemm_cpu).
// With left_rows, A's rows come from it (a is not read) and no row of B may
// round to infinity (a zero left operand would be special against it).
// With shifted, B is read in place from it (b is not read) and no value of
// A may be special (its products would need b).
void gemm_blocked(const BlockedPath& path, const Table& table, const GemmShape& shape, const MatrixView& a,
                  const MatrixView& b, float* c, int64_t ldc, const ParallelFor& parallel, bool accumulate,
                  const LeftRowPacker* left_rows = nullptr, const ShiftedRight* shifted = nullptr);

// Right operands encoded one value at a time for a ShiftedRight (the rules
// of pack_b_avx512, for kLutBytes, kLutHighBytes and kLutPlanes): index[i]
// the value's index dword of the layout (kLutPlanes: its fraction, the
// index byte), scale[i] its scale.  A zero gets index 0 (any index
// gives a zero's product: its scale is +-0).  Returns false, leaving the
// outputs undefined, when a value is inf, NaN or at least 2^126 in
// magnitude (it could round to infinity); widens *range otherwise.
bool encode_right_values_avx512(RightLayout layout, const Table& table, const float* x, int64_t count,
                                uint32_t* index, float* scale, ExponentRange* range);

// out[j] = am_multiply(A[i, k], B[k, j0 + j]) for j < ncols (baseline code,
// called by the kernels for special left operands).
void special_products(const GemmPlan& plan, int64_t i, int64_t k, int64_t j0, int64_t ncols, float* out);

// AVX-512 packing (pack_avx512.cpp), the rules of packed_operands.h 16 at a
// time.  B rows [k0, k1) of strips [s0, s1) into the layout of `layout` at
// out[((s - s0) * out_k_count + kk - out_k0) * words], setting
// rounds_to_inf[kk] when those columns of row kk hold a finite value that
// rounds to infinity.  A rows [i0, i1), columns [k0, k1) into LeftRefs
// (out[(i - i0) * k + kk]), where a zero against such a row of B is special
// too; row_has_special[i - i0] tells whether any of those is.
// Both widen *range by the exponents of the ordinary values they pack.
void pack_b_avx512(RightLayout layout, const Table& table, const MatrixView& b, int64_t n, int64_t k0, int64_t k1,
                   int64_t s0, int64_t s1, uint32_t* out, int64_t out_k0, int64_t out_k_count, uint8_t* rounds_to_inf,
                   ExponentRange* range);
void pack_a_avx512(RightLayout layout, const Table& table, const MatrixView& a, int64_t k, int64_t i0, int64_t i1,
                   int64_t k0, int64_t k1, const uint8_t* b_rounds_to_inf, LeftRef* out, uint8_t* row_has_special,
                   ExponentRange* range);

// The table rows as the byte-permute kernels load them: row ia (and an
// all-zero row 2^M, for zero left operands) holds the low bytes of its
// entries at [0, 2^M) and the high bytes at [high, high + 2^M), where
// high = max(64, 2^M) (kLutBytes: one permute over [low | high] for M <= 6);
// rows are max(128, 2^(M+1)) bytes apart (no gaps: the rows a kernel
// touches share L1).  kLutHighBytes: only the high bytes, rows 2^M apart.
int64_t lut_row_bytes(RightLayout layout, int mantissa_bits);
void split_rows_avx512(RightLayout layout, const Table& table, uint8_t* out);

// The SIMD block kernels (defined in ISA-specific translation units).
void lut_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0, int64_t k1);
void lut_high_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                               int64_t k1);
void lut_planes_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                                 int64_t k1);
void lut_chunks_block_avx512vbmi(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0,
                                 int64_t k1);
void gather_block_avx512(const GemmPlan& plan, int64_t i0, int64_t i1, int64_t s0, int64_t s1, int64_t k0, int64_t k1);

}  // namespace cpu
}  // namespace amsim
