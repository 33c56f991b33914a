// Conv2D forward as an implicit GEMM (groups as the batch):
//   A[r, k] = x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, g*Cg + c]   (0 where padded)
//   B[k, j] = w[kh, kw, c, g*Og + j],   C[r, j] = y[n, oh, ow, g*Og + j]
// with r = (n, oh, ow) and k = (kh, kw, c): the K order is the canonical
// (kh, kw, c) ascending of conv.h.  Depthwise shapes go to depthwise_forward.
#include "amsim/conv.h"
#include "cuda/conv_dims.cuh"
#include "cuda/conv_problems.cuh"
#include "cuda/depthwise.cuh"
#include "cuda/gemm_launch.cuh"
#include "cuda/launchers.h"

namespace amsim {
namespace cuda {

const char* conv2d_unsupported(const Conv2DShape& s) {
  ConvDims d;
  if (!conv_dims(s, &d)) return "a dimension, a patch-matrix size or a padded extent exceeds 2^31 - 1";
  return nullptr;
}

cudaError_t conv2d_forward(const Table& table, const Conv2DShape& s, const float* x, const float* w, float* y,
                           cudaStream_t stream) {
  ConvDims d;
  if (!conv_dims(s, &d)) return cudaErrorInvalidValue;
  if (is_depthwise(s)) {
    const cudaError_t err = depthwise_forward(table, d, x, w, y, stream);
    if (err != cudaErrorNotSupported) return err;  // else: filter too large for its shared memory
  }
  const ConvForwardProblem p{d.out_positions(),
                             d.og,
                             int64_t{d.kh} * d.kw * d.cg,
                             d.groups,
                             d,
                             x,
                             w,
                             y,
                             d.o % 4 == 0 && d.og % 4 == 0 && aligned16(y)};
  return launch_gemm(p, table, stream);
}

}  // namespace cuda
}  // namespace amsim
