// Depthwise convolution (is_depthwise() of conv.h: groups == C > 1) on the
// CPU, without im2col: per-group GEMMs of one column would be mostly
// overhead.  Same canonical orders and bits as conv.h documents.
#pragma once

#include "amsim/conv.h"

namespace amsim {
namespace cpu {

// The elementwise product kernel the depthwise convs use on this CPU, under
// APPROXTRAIN_CPU_PATH (cpu_features.h): read at each call.
enum class DepthwiseKernel { kScalar, kAvx2, kAvx512 };
DepthwiseKernel depthwise_kernel();
// Its name: "avx512", "avx2" or "scalar" (_core.depthwise_cpu_path()).
const char* depthwise_cpu_path();
// The same for one table: the float path's name ("float-avx2", ...) where the
// table is separable (separable_table.h) and the CPU path runs floats.
const char* depthwise_cpu_path(const Table& table);

void depthwise_forward(const Table& table, const Conv2DShape& s, const float* x, const float* w, float* y,
                       const ParallelFor& parallel);
void depthwise_input_grad(const Table& table, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                          const ParallelFor& parallel);
void depthwise_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                           const ParallelFor& parallel);

}  // namespace cpu
}  // namespace amsim
