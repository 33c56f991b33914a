// AMIntMatMul on the GPU: amsim::cuda::batched_int_gemm on TF's stream.  The
// products input lives in host memory (the overflow bound reads it); its
// device copy (narrowed to 16 bits where it fits) is made once per table and
// device, on the kernel's stream, and kept in amsim/int_table_cache.h's cache
// as a tensor of the device's allocator.
#include <algorithm>

#include "amsim/int_table.h"
#include "amsim/int_table_cache.h"
#include "cuda/int_launchers.h"
#include "kernels/am_int_matmul_op.h"
#include "kernels/gpu_kernel_util.h"

namespace approxtrain {
namespace tf {
namespace {

// Never destroyed: TF's allocators may be gone when static objects die.
amsim::IntTableCache<tensorflow::Tensor>& DeviceTables() {
  static auto* tables = new amsim::IntTableCache<tensorflow::Tensor>(amsim::kCachedIntTables);
  return *tables;
}

// A device tensor holding the upload's entries, copied on `stream` (from
// pageable memory: cudaMemcpyAsync returns once the bytes are staged, so the
// host entries may go when it returns; later kernels on the stream see them).
absl::Status Upload(tensorflow::OpKernelContext* ctx, cudaStream_t stream, const amsim::IntTableUpload& what,
                    tensorflow::Tensor* device_table) {
  const bool narrow = what.width != amsim::IntTableWidth::kInt32;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(narrow ? tensorflow::DT_UINT16 : tensorflow::DT_INT32,
                                        tensorflow::TensorShape({amsim::kIntTableEntries}), device_table));
  void* dst = narrow ? static_cast<void*>(device_table->flat<uint16_t>().data())
                     : static_cast<void*>(device_table->flat<int32_t>().data());
  return CudaStatus(cudaMemcpyAsync(dst, what.entries, what.bytes, cudaMemcpyHostToDevice, stream),
                    "AMIntMatMul (table copy)");
}

const void* Entries(const amsim::CachedIntTable<tensorflow::Tensor>& table) {
  return table.width == amsim::IntTableWidth::kInt32 ? static_cast<const void*>(table.buffer.flat<int32_t>().data())
                                                     : static_cast<const void*>(table.buffer.flat<uint16_t>().data());
}

}  // namespace

template <>
void AMIntMatMulFunctor<GPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const int32_t* products,
                                               int64_t max_abs, const amsim::BatchPlan& plan, const uint8_t* a,
                                               const uint8_t* b, int32_t* c) {
  const amsim::GemmShape& s = plan.shape;
  cudaStream_t stream = nullptr;
  OP_REQUIRES_OK(ctx, KernelStream(ctx, &stream));
  int device = 0;
  OP_REQUIRES_OK(ctx, CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  absl::Status uploaded;
  amsim::CachedIntTable<tensorflow::Tensor> table;
  const bool found = DeviceTables().get(
      device, products,
      [&](const amsim::IntTableUpload& what, tensorflow::Tensor* device_table) {
        uploaded = Upload(ctx, stream, what, device_table);
        return uploaded.ok();
      },
      &table);
  OP_REQUIRES(ctx, found, uploaded);
  const int64_t chunk_k = std::max<int64_t>(1, std::min(s.k, amsim::int_safe_block_k(max_abs)));
  OP_REQUIRES_OK(ctx, CudaStatus(amsim::cuda::batched_int_gemm(amsim::cuda::IntTable{Entries(table), table.width}, plan,
                                                               a, b, c, chunk_k, stream),
                                 "AMIntMatMul"));
}

// products in host memory: the op reads it on the host (overflow bound,
// 16-bit narrowing) and keeps its own device copy of each table.
REGISTER_KERNEL_BUILDER(Name("AMIntMatMul").Device(tensorflow::DEVICE_GPU).HostMemory("products"),
                        AMIntMatMulOp<GPUDevice>);

}  // namespace tf
}  // namespace approxtrain
