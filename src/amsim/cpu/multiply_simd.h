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
// The same from operands encoded once (encoded_operand.h): wa[i] the left
// (row) words of a[i], wb[i] the right (column) words of b[i].  a and b are
// read only for vectors holding a kEncodedSpecial word.
void multiply_add_encoded_avx512(const Table& table, const float* a, const uint32_t* wa, const float* b,
                                 const uint32_t* wb, float* sum, int64_t n);
// words[i] = encode_operand(x[i], ..., left) (encoded_operand.h) for i < n.
void encode_operands_avx512(const Table& table, const float* x, uint32_t* words, int64_t n, bool left);

// The AVX2 forms (8 lanes; multiply_avx2.cpp): same bits, need AVX2.
void multiply_add_avx2(const Table& table, const float* a, const float* b, float* sum, int64_t n);
void multiply_add_encoded_avx2(const Table& table, const float* a, const uint32_t* wa, const float* b,
                               const uint32_t* wb, float* sum, int64_t n);
void encode_operands_avx2(const Table& table, const float* x, uint32_t* words, int64_t n, bool left);

}  // namespace cpu
}  // namespace amsim
