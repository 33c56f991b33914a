// SIMD forms of elementwise AMSim products (multiply_cpu, depthwise conv);
// callers pick them at run time (cpu_features.h).
#pragma once

#include <cstdint>

#include "amsim/amsim.h"

namespace amsim {
namespace cpu {

// c[i] = am_multiply(a[i], b[i]) for i < n; needs AVX-512 F and BW.
void multiply_avx512(const Table& table, const float* a, const float* b, float* c, int64_t n);
// sum[i] += am_multiply(a[i], b[i]) for i < n, one float32 add each (the
// caller has flush-to-zero on); needs AVX-512 F and BW.
void multiply_add_avx512(const Table& table, const float* a, const float* b, float* sum, int64_t n);

}  // namespace cpu
}  // namespace amsim
