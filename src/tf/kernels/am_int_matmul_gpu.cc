// AMIntMatMul on the GPU: amsim::cuda::batched_int_gemm on TF's stream.  The
// products input lives in host memory (the overflow bound reads it); it is
// narrowed to 16 bits where it fits and copied to a temporary device tensor
// on the kernel's stream.
#include <algorithm>
#include <vector>

#include "amsim/int_table.h"
#include "cuda/int_launchers.h"
#include "kernels/am_int_matmul_op.h"
#include "kernels/gpu_kernel_util.h"

namespace approxtrain {
namespace tf {

template <>
void AMIntMatMulFunctor<GPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const int32_t* products,
                                               int64_t max_abs, const amsim::BatchPlan& plan, const uint8_t* a,
                                               const uint8_t* b, int32_t* c) {
  const amsim::GemmShape& s = plan.shape;
  cudaStream_t stream = nullptr;
  OP_REQUIRES_OK(ctx, KernelStream(ctx, &stream));
  constexpr int64_t kEntries = int64_t{amsim::kIntTableSide} * amsim::kIntTableSide;
  const amsim::IntTableWidth width = amsim::int_table_width(products, kEntries);
  const bool narrow = width != amsim::IntTableWidth::kInt32;
  tensorflow::Tensor device_table;
  OP_REQUIRES_OK(ctx, ctx->allocate_temp(narrow ? tensorflow::DT_UINT16 : tensorflow::DT_INT32,
                                         tensorflow::TensorShape({kEntries}), &device_table));
  void* dst = narrow ? static_cast<void*>(device_table.flat<uint16_t>().data())
                     : static_cast<void*>(device_table.flat<int32_t>().data());
  // From pageable host memory: cudaMemcpyAsync returns once the bytes are
  // staged, so the host vector may go when it returns.
  std::vector<uint16_t> narrowed;
  const void* src = products;
  size_t bytes = kEntries * sizeof(int32_t);
  if (narrow) {
    narrowed.resize(kEntries);
    for (int64_t e = 0; e < kEntries; ++e) narrowed[e] = static_cast<uint16_t>(products[e]);
    src = narrowed.data();
    bytes = kEntries * sizeof(uint16_t);
  }
  OP_REQUIRES_OK(
      ctx, CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream), "AMIntMatMul (table copy)"));
  const int64_t chunk_k = std::max<int64_t>(1, std::min(s.k, amsim::int_safe_block_k(max_abs)));
  OP_REQUIRES_OK(
      ctx, CudaStatus(amsim::cuda::batched_int_gemm(amsim::cuda::IntTable{dst, width}, plan, a, b, c, chunk_k, stream),
                      "AMIntMatMul"));
}

// products in host memory: the op reads it on the host (overflow bound,
// 16-bit narrowing) and uploads it itself.
REGISTER_KERNEL_BUILDER(Name("AMIntMatMul").Device(tensorflow::DEVICE_GPU).HostMemory("products"),
                        AMIntMatMulOp<GPUDevice>);

}  // namespace tf
}  // namespace approxtrain
