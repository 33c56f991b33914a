// The bucket GEMM's kernels in plain C++ (gemm_bucket.h), for any target:
// fixed-length inner loops over contiguous floats that the compiler
// vectorizes (SSE2 on baseline x86-64, NEON on AArch64).  Multiply and add
// stay separate (-ffp-contract=off), which is exact for every operand.
#include <algorithm>

#include "amsim/cpu/gemm_bucket.h"
#include "amsim/cpu/gemm_bucket_pack.h"

namespace amsim {
namespace cpu {

namespace {

void pack_left_portable(const BucketLeftBlock& b, int mantissa_bits, int ignored_bits, Rounding rounding,
                        uint8_t* special, uint32_t* lo, uint32_t* hi) {
  BucketLeftPacker packer(mantissa_bits, ignored_bits, rounding);
  pack_left_rows(b, packer, special, [](const float*, BucketLeft*, int64_t, bool*) { return int64_t{0}; });
  *lo = std::min(*lo, packer.lo);
  *hi = std::max(*hi, packer.hi);
}

void expand_portable(const BucketExpansion& e) {
  const int64_t side = int64_t{1} << e.selecting_bits;
  for (int64_t kk = 0; kk < e.kc; ++kk) {
    const uint16_t* index = e.index + kk * e.ld_in;
    const float* scale = e.scale + kk * e.ld_in;
    float* out = e.out + kk * side * e.ldt;
    for (int64_t s = 0; s < side; ++s) {
      float* row = out + s * e.ldt;
      for (int64_t j = 0; j < e.ncols; ++j) row[j] = scale[j] * e.table_t[index[j] * side + s];
      std::fill(row + e.ncols, row + e.ldt, 0.0f);
    }
  }
}

// Each row of C accumulates in a local line over the K block, then goes back.
void panel_portable(const BucketPanel& p) {
  constexpr int64_t kLine = 64;
  float acc[kLine];
  for (int64_t c0 = 0; c0 < p.ncols; c0 += kLine) {
    const int64_t width = std::min(kLine, p.ncols - c0);
    for (int64_t r = 0; r < p.rows; ++r) {
      float* c = p.c_rows[r] + c0;
      std::copy(c, c + width, acc);
      std::fill(acc + width, acc + kLine, 0.0f);
      const BucketLeft* left = p.a_rows[r];
      for (int64_t kk = 0; kk < p.kc; ++kk) {
        const float* t = p.t + kk * p.t_k_stride + (left[kk] & 0xffffu) * p.ldt + c0;
        const float sa = bits_float(left[kk] & kBucketScaleMask);
        if (width == kLine) {
          for (int64_t j = 0; j < kLine; ++j) acc[j] += sa * t[j];
        } else {
          for (int64_t j = 0; j < width; ++j) acc[j] += sa * t[j];
        }
      }
      std::copy(acc, acc + width, c);
    }
  }
}

// Costed like the AVX2 kernels (what it runs on is the compiler's choice).
constexpr BucketKernels kPortable{
    pack_left_portable, expand_portable, panel_portable, "bucket-portable", 8, 32, 0.95, 0.48};

}  // namespace

const BucketKernels* bucket_kernels_portable() { return &kPortable; }

}  // namespace cpu
}  // namespace amsim
