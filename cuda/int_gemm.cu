// Integer approximate GEMM on the GPU (cuda/int_launchers.h): 8-bit operand
// patterns, a 256 x 256 table of integer products, exact integer sums.
//
// A 16-bit table (every published 8-bit circuit's: signed or unsigned
// products) fits shared memory (128 KiB) and each block copies it there once,
// then loops over output tiles (persistent grid); a wider table, or a device
// with less shared memory, is read from global memory (L1/L2-cached).  Each
// block computes 64 x 64 outputs, 4 x 4 per thread, with the operands'
// patterns staged in shared memory 32 k at a time.  Integer sums are exact
// in any order; int32 accumulators are widened every chunk_k products.
#include <type_traits>

#include "cuda/int_launchers.h"
#include "cuda/launch_util.cuh"

namespace amsim {
namespace cuda {

namespace {

constexpr int kBM = 64, kBN = 64, kBK = 32;
constexpr int kThreads = 256;  // 16 x 16, each 4 rows x 4 columns (strided by 16)
constexpr int kSide = 256;
constexpr size_t kStagingBytes = size_t{kBK} * (kBM + kBN);
constexpr size_t kTable16Bytes = size_t{kSide} * kSide * 2;

struct IntGemmProblem {
  int64_t m, n, k, batch;
  const uint8_t* a;
  int64_t a_row, a_col, a_batch;
  const uint8_t* b;
  int64_t b_row, b_col, b_batch;
  int64_t chunk_k;
};

template <IntTableWidth kWidth>
__device__ __forceinline__ int32_t entry(const void* table, uint32_t index) {
  if constexpr (kWidth == IntTableWidth::kInt16) {
    return static_cast<int16_t>(static_cast<const uint16_t*>(table)[index]);
  } else if constexpr (kWidth == IntTableWidth::kUint16) {
    return static_cast<const uint16_t*>(table)[index];
  } else {
    return static_cast<const int32_t*>(table)[index];
  }
}

template <IntTableWidth kWidth, bool kSharedTable, class Out>
__global__ void __launch_bounds__(kThreads)
    int_gemm_kernel(IntGemmProblem p, const void* __restrict__ table, Out* __restrict__ c) {
  extern __shared__ __align__(16) unsigned char smem[];
  const void* t = table;
  unsigned char* staging = smem;
  if constexpr (kSharedTable) {
    const uint4* src = static_cast<const uint4*>(table);  // cudaMalloc'd: 256-byte aligned
    uint4* dst = reinterpret_cast<uint4*>(smem);
    for (uint32_t v = threadIdx.x; v < kTable16Bytes / 16; v += kThreads) dst[v] = __ldg(src + v);
    t = smem;
    staging = smem + kTable16Bytes;
  }
  uint8_t* as = staging;  // [kBK][kBM]
  uint8_t* bs = staging + kBK * kBM;  // [kBK][kBN]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t tiles_m = (p.m + kBM - 1) / kBM, tiles_n = (p.n + kBN - 1) / kBN;
  const int64_t tiles = tiles_m * tiles_n * p.batch;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t q = tile / (tiles_m * tiles_n), rest = tile % (tiles_m * tiles_n);
    const int64_t i0 = rest / tiles_n * kBM, j0 = rest % tiles_n * kBN;
    const uint8_t* a = p.a + q * p.a_batch;
    const uint8_t* b = p.b + q * p.b_batch;
    int32_t acc[4][4] = {};
    int64_t wide[4][4] = {};
    int64_t since = 0;  // products in acc since the last widening
    for (int64_t k0 = 0; k0 < p.k; k0 += kBK) {
      const int kc = static_cast<int>(p.k - k0 < kBK ? p.k - k0 : kBK);
      __syncthreads();  // the previous staging (and the table copy) is done with
      for (int e = threadIdx.x; e < kBK * kBM; e += kThreads) {
        const int i = e / kBK, kk = e % kBK;
        const bool in = i0 + i < p.m && kk < kc;
        as[kk * kBM + i] = in ? a[(i0 + i) * p.a_row + (k0 + kk) * p.a_col] : 0;
      }
      for (int e = threadIdx.x; e < kBK * kBN; e += kThreads) {
        const int kk = e / kBN, j = e % kBN;
        const bool in = j0 + j < p.n && kk < kc;
        bs[kk * kBN + j] = in ? b[(k0 + kk) * p.b_row + (j0 + j) * p.b_col] : 0;
      }
      __syncthreads();
      for (int kk = 0; kk < kc; ++kk) {
        uint32_t ra[4], rb[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) ra[r] = uint32_t{as[kk * kBM + ty + 16 * r]} * kSide;
#pragma unroll
        for (int s = 0; s < 4; ++s) rb[s] = bs[kk * kBN + tx + 16 * s];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int s = 0; s < 4; ++s) acc[r][s] += entry<kWidth>(t, ra[r] + rb[s]);
        if constexpr (std::is_same_v<Out, int64_t>) {
          if (++since == p.chunk_k) {
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
              for (int s = 0; s < 4; ++s) {
                wide[r][s] += acc[r][s];
                acc[r][s] = 0;
              }
            since = 0;
          }
        }
      }
    }
    Out* cq = c + q * p.m * p.n;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t i = i0 + ty + 16 * r;
      if (i >= p.m) continue;
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        const int64_t j = j0 + tx + 16 * s;
        if (j < p.n) cq[i * p.n + j] = static_cast<Out>(wide[r][s] + acc[r][s]);
      }
    }
  }
}

template <IntTableWidth kWidth, bool kSharedTable, class Out>
cudaError_t launch(const IntGemmProblem& p, const void* table, Out* c, const DeviceLimits& limits,
                   cudaStream_t stream) {
  const size_t shared = kStagingBytes + (kSharedTable ? kTable16Bytes : 0);
  auto kernel = int_gemm_kernel<kWidth, kSharedTable, Out>;
  const int64_t tiles = (p.m + kBM - 1) / kBM * ((p.n + kBN - 1) / kBN) * p.batch;
  int64_t blocks = 0;
  cudaError_t err = persistent_blocks(kernel, kThreads, shared, tiles, limits, &blocks);
  if (err != cudaSuccess) return err;
  kernel<<<static_cast<unsigned>(blocks), kThreads, shared, stream>>>(p, table, c);
  return cudaGetLastError();
}

template <class Out>
cudaError_t launch_problem(const IntTable& table, const IntGemmProblem& p, Out* c, cudaStream_t stream) {
  DeviceLimits limits;
  cudaError_t err = current_device_limits(&limits);
  if (err != cudaSuccess) return err;
  const bool shared = kTable16Bytes + kStagingBytes <= limits.shared_per_block_optin;
  switch (table.width) {
    case IntTableWidth::kInt16:
      return shared ? launch<IntTableWidth::kInt16, true>(p, table.entries, c, limits, stream)
                    : launch<IntTableWidth::kInt16, false>(p, table.entries, c, limits, stream);
    case IntTableWidth::kUint16:
      return shared ? launch<IntTableWidth::kUint16, true>(p, table.entries, c, limits, stream)
                    : launch<IntTableWidth::kUint16, false>(p, table.entries, c, limits, stream);
    default:
      return launch<IntTableWidth::kInt32, false>(p, table.entries, c, limits, stream);
  }
}

template <class Out>
cudaError_t batched(const IntTable& table, const BatchPlan& plan, const uint8_t* a, const uint8_t* b, Out* c,
                    int64_t chunk_k, cudaStream_t stream) {
  const GemmShape& s = plan.shape;
  if (s.m < 0 || s.n < 0 || s.k < 0 || chunk_k < 1 || table.entries == nullptr) return cudaErrorInvalidValue;
  if (s.m == 0 || s.n == 0) return cudaSuccess;
  if (s.k == 0) {
    const size_t bytes = static_cast<size_t>(plan.batch * s.m * s.n) * sizeof(Out);
    return bytes ? cudaMemsetAsync(c, 0, bytes, stream) : cudaSuccess;
  }
  for (const BatchRun& r : plan.runs) {
    if (r.count == 0) continue;
    const IntGemmProblem p{s.m,
                           s.n,
                           s.k,
                           r.count,
                           a + r.a_offset,
                           plan.a.row_stride,
                           plan.a.col_stride,
                           r.a_stride,
                           b + r.b_offset,
                           plan.b.row_stride,
                           plan.b.col_stride,
                           r.b_stride,
                           chunk_k};
    const cudaError_t err = launch_problem(table, p, c + r.begin * s.m * s.n, stream);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t batched_int_gemm(const IntTable& table, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                             int32_t* c, int64_t chunk_k, cudaStream_t stream) {
  return batched(table, plan, a, b, c, chunk_k, stream);
}

cudaError_t batched_int_gemm(const IntTable& table, const BatchPlan& plan, const uint8_t* a, const uint8_t* b,
                             int64_t* c, int64_t chunk_k, cudaStream_t stream) {
  return batched(table, plan, a, b, c, chunk_k, stream);
}

}  // namespace cuda
}  // namespace amsim
