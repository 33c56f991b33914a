// Conv2D filter gradient as an implicit GEMM (groups as the batch):
//   A[i, r] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, g*Cg + c]   (0 where padded)
//   B[r, j] = dy[n, oh, ow, g*Og + j],   C[i, j] = dw[kh, kw, c, g*Og + j]
// with i = (kh, kw, c) and r = (n, oh, ow): K runs over the canonical
// (n, oh, ow) ascending of conv.h.  K is long and the output small, and the
// order forbids splitting K, so small outputs get small tiles (gemm_launch.cuh).
// Depthwise shapes go to depthwise_filter_grad.
#include "amsim/conv.h"
#include "cuda/conv_dims.cuh"
#include "cuda/conv_problems.cuh"
#include "cuda/depthwise.cuh"
#include "cuda/gemm_launch.cuh"
#include "cuda/launchers.h"

namespace amsim {
namespace cuda {

cudaError_t conv2d_filter_grad(const Table& table, const Conv2DShape& s, const float* x, const float* dy, float* dw,
                               cudaStream_t stream) {
  ConvDims d;
  if (!conv_dims(s, &d)) return cudaErrorInvalidValue;
  if (is_depthwise(s)) {
    const cudaError_t err = depthwise_filter_grad(table, d, x, dy, dw, stream);
    if (err != cudaErrorNotSupported) return err;
  }
  const ConvFilterGradProblem p{int64_t{d.kh} * d.kw * d.cg,
                                d.og,
                                d.out_positions(),
                                d.groups,
                                d,
                                x,
                                dy,
                                dw,
                                d.o % 4 == 0 && d.og % 4 == 0 && aligned16(dw)};
  return launch_gemm(p, table, stream);
}

}  // namespace cuda
}  // namespace amsim
