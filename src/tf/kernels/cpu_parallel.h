// amsim::ParallelFor on TensorFlow's intra-op thread pool, so AM kernels
// share threads with every other op of the session.
#pragma once

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
    const int64_t threads = pool->NumThreads();
    if (threads <= 1 || !amsim::worth_threads(total, cost_per_unit)) {
      body(0, total);
      return;
    }
    const int64_t block = amsim::parallel_block_size(total, threads);
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
