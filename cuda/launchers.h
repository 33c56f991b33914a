// The CUDA kernels of the native core, as host functions that launch them.
//
// Conventions shared by every launcher:
// - All float and table pointers are DEVICE pointers; `table.entries` holds
//   the 2^(2M) uint16 entries in device memory.  Nothing is copied.
// - Work is enqueued on the caller's `stream`; no launcher synchronises the
//   device or the stream, allocates memory or touches the host's data.
// - Errors come back as a cudaError_t (cudaSuccess when the launch was
//   enqueued); cudaErrorInvalidValue for shapes the kernels do not take (the
//   Python bindings reject those earlier with a message).  Never exit().
// - Results are bit-identical to the CPU kernels (amsim/gemm.h, amsim/conv.h):
//   every output element sums its products in the canonical order of those
//   headers, starting from +0, one float32 add per product, flush-to-zero.
//   No kernel splits a sum across threads (no split-K).
// - Plain C++ header: includable from host code compiled by g++.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "amsim/amsim.h"
#include "amsim/batch_plan.h"
#include "amsim/shapes.h"

namespace amsim {
namespace cuda {

// Elementwise c[i] = a[i] (x) b[i], i < n.
cudaError_t multiply(const Table& table, const float* a, const float* b, float* c, int64_t n, cudaStream_t stream);

// Batched C = op(A) . op(B) with the strides of amsim::MatrixView (a transpose
// is swapped strides).  Batch b reads A at a.data + b * batch_stride_a (0
// broadcasts), likewise B, and writes C at c + b * m * n (dense, row-major).
cudaError_t batched_gemm(const Table& table, const GemmShape& shape, int64_t batch, const MatrixView& a,
                         int64_t batch_stride_a, const MatrixView& b, int64_t batch_stride_b, float* c,
                         cudaStream_t stream);
// The GEMMs of `plan` (amsim/batch_plan.h) on the whole operands a and b, C
// dense [plan.batch, m, n]: one strided launch per run of the plan.
cudaError_t batched_gemm(const Table& table, const BatchPlan& plan, const float* a, const float* b, float* c,
                         cudaStream_t stream);

// Conv2D on dense NHWC / HWIO tensors; `s` must be finalised by
// amsim::conv2d_finalize().  Depthwise shapes (amsim::is_depthwise) take
// dedicated kernels, the others an implicit GEMM.
cudaError_t conv2d_forward(const Table& table, const Conv2DShape& s, const float* x, const float* w, float* y,
                           cudaStream_t stream);
cudaError_t conv2d_input_grad(const Table& table, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                              cudaStream_t stream);
cudaError_t conv2d_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                               cudaStream_t stream);

// nullptr when the conv kernels take shape `s`, else why not (a size past
// their 32-bit indexing).
const char* conv2d_unsupported(const Conv2DShape& s);

// Which GEMM kernel variant batched_gemm() picks for this problem on the
// current device ("tile64x128/smem-table", "tile16x32/global-table", ...):
// for benchmarks and reports.
const char* gemm_variant(int mantissa_bits, const GemmShape& shape, int64_t batch);

}  // namespace cuda
}  // namespace amsim
