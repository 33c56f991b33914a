// The integer bucket kernels for any target (int_gemm_kernels.inc): 16-byte
// vectors the compiler maps to SSE2, NEON or scalar code.
#define INT_GEMM_VEC_BYTES 16
#define INT_GEMM_ROWS 1
#define INT_GEMM_NAME "bucket-portable"
#define INT_GEMM_GETTER int_bucket_kernels_portable
#include "amsim/cpu/int_gemm_kernels.inc"
