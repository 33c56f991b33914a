// The integer bucket kernels with AVX2 (int_gemm_kernels.inc): this file
// alone is compiled with -mavx2 and runs only after has_avx2_fma().
#include "amsim/cpu/int_gemm_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__)
#define INT_GEMM_VEC_BYTES 32
#define INT_GEMM_ROWS 3
#define INT_GEMM_NAME "bucket-avx2"
#define INT_GEMM_GETTER int_bucket_kernels_avx2
#include "amsim/cpu/int_gemm_kernels.inc"
#else
namespace amsim {
namespace cpu {
const IntBucketKernels* int_bucket_kernels_avx2() { return nullptr; }
}  // namespace cpu
}  // namespace amsim
#endif
