// The integer bucket kernels with AVX-512 (int_gemm_kernels.inc): this file
// alone is compiled with -mavx512f -mavx512bw and runs only after has_avx512_bw().
#include "amsim/cpu/int_gemm_kernels.h"

#if defined(__x86_64__) && defined(__AVX512F__) && !defined(AMSIM_NO_AVX512_KERNELS)
#define INT_GEMM_VEC_BYTES 64
#define INT_GEMM_ROWS 6
#define INT_GEMM_NAME "bucket-avx512"
#define INT_GEMM_GETTER int_bucket_kernels_avx512
#include "amsim/cpu/int_gemm_kernels.inc"
#else
namespace amsim {
namespace cpu {
const IntBucketKernels* int_bucket_kernels_avx512() { return nullptr; }
}  // namespace cpu
}  // namespace amsim
#endif
