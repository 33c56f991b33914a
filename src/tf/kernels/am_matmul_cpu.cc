// AMMatMul on the CPU: amsim::gemm_cpu per batch on TF's intra-op threads.
#include "kernels/am_matmul_op.h"
#include "kernels/cpu_parallel.h"

namespace approxtrain {
namespace tf {

using CPUDevice = Eigen::ThreadPoolDevice;

// Below this many products per GEMM, whole GEMMs are the unit of parallel work.
constexpr int64_t kSmallGemmProducts = int64_t{1} << 21;

template <>
void AMMatMulFunctor<CPUDevice>::operator()(tensorflow::OpKernelContext* ctx, const amsim::Table& table,
                                            const MatMulPlan& plan, const float* a, const float* b, float* c) {
  const amsim::ParallelFor parallel = IntraOpParallelFor(ctx);
  const amsim::GemmShape& s = plan.shape;
  // Each output element's sum runs k ascending whichever way work is split,
  // so both schedules give the same bits.
  auto one_gemm = [&](int64_t i, const amsim::ParallelFor& inner) {
    amsim::MatrixView va = plan.a, vb = plan.b;
    va.data = a + plan.a_offset[i];
    vb.data = b + plan.b_offset[i];
    amsim::gemm_cpu(table, s, va, vb, c + i * s.m * s.n, s.n, inner);
  };
  const int64_t products = s.m * s.n * s.k;
  if (plan.batch > 1 && (products < kSmallGemmProducts || plan.batch >= 4 * IntraOpThreads(ctx))) {
    const amsim::ParallelFor serial = amsim::serial_for;
    parallel(plan.batch, products * 4 + 100, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) one_gemm(i, serial);
    });
  } else {
    for (int64_t i = 0; i < plan.batch; ++i) one_gemm(i, parallel);
  }
}

REGISTER_KERNEL_BUILDER(Name("AMMatMul").Device(tensorflow::DEVICE_CPU), AMMatMulOp<CPUDevice>);

}  // namespace tf
}  // namespace approxtrain
