// Conv2D input gradient as an implicit GEMM (groups as the batch):
//   A[r, k] = dy[n, oh, ow, g*Og + o]  when ih + pt - kh*dh = oh*sh and
//             iw + pl - kw*dw = ow*sw for in-range oh, ow; else a 0 operand
//   B[k, j] = w[kh, kw, j, g*Og + o],   C[r, j] = dx[n, ih, iw, g*Cg + j]
// with r = (n, ih, iw) and k = (kh, kw, o): the canonical (kh, kw, o) order of
// conv.h, zeros included.  Depthwise shapes go to depthwise_input_grad.
#include "amsim/conv.h"
#include "cuda/conv_dims.cuh"
#include "cuda/conv_problems.cuh"
#include "cuda/depthwise.cuh"
#include "cuda/gemm_launch.cuh"
#include "cuda/launchers.h"

namespace amsim {
namespace cuda {

cudaError_t conv2d_input_grad(const Table& table, const Conv2DShape& s, const float* dy, const float* w, float* dx,
                              cudaStream_t stream) {
  ConvDims d;
  if (!conv_dims(s, &d)) return cudaErrorInvalidValue;
  if (is_depthwise(s)) {
    const cudaError_t err = depthwise_input_grad(table, d, dy, w, dx, stream);
    if (err != cudaErrorNotSupported) return err;
  }
  const ConvInputGradProblem p{d.in_positions(),
                               d.cg,
                               int64_t{d.kh} * d.kw * d.og,
                               d.groups,
                               d,
                               dy,
                               w,
                               dx,
                               d.c % 4 == 0 && d.cg % 4 == 0 && aligned16(dx)};
  return launch_gemm(p, table, stream);
}

}  // namespace cuda
}  // namespace amsim
