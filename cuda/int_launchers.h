// The integer GEMM's CUDA launcher (cuda/int_gemm.cu), same conventions as
// cuda/launchers.h: device pointers, the caller's stream, no allocation, no
// synchronisation, errors as cudaError_t.  Plain C++ header.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "amsim/batch_plan.h"
#include "amsim/int_table.h"

namespace amsim {
namespace cuda {

// The product table in device memory: 65536 entries, row = A's pattern,
// as int16 (kInt16), uint16 (kUint16) or int32 (kInt32) values.
struct IntTable {
  const void* entries = nullptr;
  IntTableWidth width = IntTableWidth::kInt32;
};

// C[b] = op(A[b]) . op(B[b]) summed exactly: int32 sums over blocks of at most
// chunk_k products (the caller's bound: chunk_k * max|entry| < 2^31),
// widened to the output type across blocks.  `plan` as in batched_gemm
// (strides in elements of the uint8 operands); C dense [plan.batch, m, n].
cudaError_t batched_int_gemm(const IntTable& table, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                             int32_t* c, int64_t chunk_k, cudaStream_t stream);
cudaError_t batched_int_gemm(const IntTable& table, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                             int64_t* c, int64_t chunk_k, cudaStream_t stream);

}  // namespace cuda
}  // namespace amsim
