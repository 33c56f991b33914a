// The float GEMM's kernels in plain C++ (gemm_float.h), for any target:
// fixed-size loops the compiler vectorizes (SSE2 on baseline x86-64, NEON on
// AArch64).  -ffp-contract=off keeps the multiply and the add separate.
#include "amsim/cpu/gemm_float.h"
#include "amsim/cpu/gemm_float_transform.h"

namespace amsim {
namespace cpu {

namespace {

constexpr int kRows = 4;
constexpr int kCols = 8;

bool transform_portable(float* x, int64_t n, const OperandTransform& t) { return transform_scalar(x, n, t); }

void tile_portable(const float* a, const float* b, int64_t kc, float* c, int64_t ldc, bool load_c) {
  float acc[kRows][kCols];
  for (int r = 0; r < kRows; ++r)
    for (int j = 0; j < kCols; ++j) acc[r][j] = load_c ? c[r * ldc + j] : 0.0f;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const float* bk = b + kk * kCols;
    const float* ak = a + kk * kRows;
    for (int r = 0; r < kRows; ++r)
      for (int j = 0; j < kCols; ++j) acc[r][j] += ak[r] * bk[j];
  }
  for (int r = 0; r < kRows; ++r)
    for (int j = 0; j < kCols; ++j) c[r * ldc + j] = acc[r][j];
}

constexpr FloatGemmKernels kPortable{"float-portable", kRows, kCols, transform_portable, tile_portable};

}  // namespace

const FloatGemmKernels* float_kernels_portable() { return &kPortable; }

}  // namespace cpu
}  // namespace amsim
