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
constexpr int64_t kIntTileCols = 32;
constexpr int64_t kIntSide = 256;

// T for kc consecutive k of one column block:
// out[kk][s][j] = table_t[right[kk * ld_right + j]][s] for j < ncols, 0 beyond.
struct IntExpansion {
  const int32_t* table_t = nullptr;  // [256][256]: table_t[r][s] = product of left pattern s, right pattern r
  const uint8_t* right = nullptr;
  int64_t ld_right = 0;
  int64_t kc = 0, ncols = 0;
  int32_t* out = nullptr;  // [kc][256][kIntTileCols], 64-byte aligned
};

// c[r][:] += sum over kk < kc of t[kk][left[r * ld_left + kk]][:], r < rows.
struct IntPanel {
  const int32_t* t = nullptr;  // [kc][256][kIntTileCols], 64-byte aligned
  int64_t kc = 0;
  const uint8_t* left = nullptr;
  int64_t ld_left = 0;
  int32_t* c = nullptr;  // [rows][kIntTileCols], 64-byte aligned
  int64_t rows = 0;
};

struct IntBucketKernels {
  const char* name;  // "bucket-portable", "bucket-avx2", "bucket-avx512"
  void (*expand)(const IntExpansion& e);
  void (*panel)(const IntPanel& p);
};

// nullptr where the build has no such kernels (non-x86 targets).
const IntBucketKernels* int_bucket_kernels_portable();
const IntBucketKernels* int_bucket_kernels_avx2();
const IntBucketKernels* int_bucket_kernels_avx512();

}  // namespace cpu
}  // namespace amsim
