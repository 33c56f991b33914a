// SIMD forms of multiply_cpu's elementwise loop (gemm.cpp picks one at run time).
#pragma once

#include <cstdint>

#include "amsim/amsim.h"

namespace amsim {
namespace cpu {

// c[i] = am_multiply(a[i], b[i]) for i < n; needs AVX-512 F and BW.
void multiply_avx512(const Table& table, const float* a, const float* b, float* c, int64_t n);

}  // namespace cpu
}  // namespace amsim
