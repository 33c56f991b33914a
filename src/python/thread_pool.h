// _core's own worker threads (the TF op library uses TF's pool instead).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "amsim/parallel.h"

namespace approxtrain {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }  // + the caller
  // Splits [0, total) into chunks and runs them on the workers and the caller.
  void parallel_for(int64_t total, int64_t cost_per_unit, const amsim::RangeBody& body);
  amsim::ParallelFor as_parallel_for() {
    return [this](int64_t total, int64_t cost, const amsim::RangeBody& body) { parallel_for(total, cost, body); };
  }

 private:
  void worker_loop();
  bool run_one_chunk();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::mutex call_mutex_;  // one parallel_for at a time; nested calls run serially
  std::condition_variable work_ready_, work_done_;
  const amsim::RangeBody* body_ = nullptr;
  int64_t total_ = 0, chunk_ = 1, next_ = 0, remaining_chunks_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

// The process-wide pool: APPROXTRAIN_NUM_THREADS or the number of cores.
ThreadPool& default_pool();
void set_default_pool_threads(int threads);

}  // namespace approxtrain
