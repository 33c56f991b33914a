// amsim::ParallelFor on TensorFlow's intra-op thread pool, so AM kernels
// share threads with every other op of the session.
#pragma once

#include <algorithm>
#include <cstdint>

#include "amsim/parallel.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/threadpool.h"

namespace approxtrain {
namespace tf {

inline amsim::ParallelFor IntraOpParallelFor(tensorflow::OpKernelContext* ctx) {
  tensorflow::thread::ThreadPool* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](int64_t total, int64_t cost_per_unit, const amsim::RangeBody& body) {
    if (total <= 0) return;
    // Cheap ranges run inline; others in about 4 blocks per thread, as _core's
    // own pool does: contiguous blocks keep the GEMM's consecutive tasks (which
    // share a packed row block of A) on one thread.
    const int64_t threads = pool->NumThreads();
    if (threads <= 1 || total == 1 || total * std::max<int64_t>(1, cost_per_unit) < amsim::kMinParallelCost) {
      body(0, total);
      return;
    }
    const int64_t block = (total + 4 * threads - 1) / (4 * threads);
    pool->ParallelFor(total, tensorflow::thread::ThreadPool::SchedulingParams::Fixed(block),
                      [&body](int64_t begin, int64_t end) { body(begin, end); });
  };
}

// How many threads IntraOpParallelFor can use.
inline int IntraOpThreads(tensorflow::OpKernelContext* ctx) {
  return ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
}

}  // namespace tf
}  // namespace approxtrain
