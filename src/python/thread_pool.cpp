#include "thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#ifdef __linux__
#include <sched.h>
#endif

namespace approxtrain {

namespace {
thread_local bool tls_inside_pool = false;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::run_one_chunk() {
  int64_t begin, end;
  const amsim::RangeBody* body;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (body_ == nullptr || next_ >= total_) return false;
    begin = next_;
    end = std::min(total_, begin + chunk_);
    next_ = end;
    body = body_;
  }
  tls_inside_pool = true;
  (*body)(begin, end);
  tls_inside_pool = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--remaining_chunks_ == 0) work_done_.notify_all();
  }
  return true;
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stop_ || (generation_ != seen && body_ != nullptr && next_ < total_); });
      if (stop_) return;
      seen = generation_;
    }
    while (run_one_chunk()) {
    }
  }
}

void ThreadPool::parallel_for(int64_t total, int64_t cost_per_unit, const amsim::RangeBody& body) {
  if (total <= 0) return;
  if (workers_.empty() || tls_inside_pool || !amsim::worth_threads(total, cost_per_unit)) {
    body(0, total);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    total_ = total;
    chunk_ = amsim::parallel_block_size(total, size());
    next_ = 0;
    remaining_chunks_ = amsim::ceil_div(total, chunk_);
    ++generation_;
  }
  work_ready_.notify_all();
  while (run_one_chunk()) {
  }
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [&] { return remaining_chunks_ == 0; });
  body_ = nullptr;
}

namespace {
std::unique_ptr<ThreadPool>& pool_slot() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}
int positive_env(const char* name) {
  const char* env = std::getenv(name);
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : 0;
}
// The cores this process may run on (taskset, cgroup cpusets), not the machine's.
int cores_given() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}
// APPROXTRAIN_NUM_THREADS, else OMP_NUM_THREADS (what the user gave every
// threaded library), else the cores given: a pool wider than its cores
// only time-slices against itself.
int configured_threads() {
  for (const char* name : {"APPROXTRAIN_NUM_THREADS", "OMP_NUM_THREADS"})
    if (const int n = positive_env(name)) return n;
  return cores_given();
}
}  // namespace

ThreadPool& default_pool() {
  auto& slot = pool_slot();
  if (!slot) slot = std::make_unique<ThreadPool>(configured_threads());
  return *slot;
}

void set_default_pool_threads(int threads) { pool_slot() = std::make_unique<ThreadPool>(std::max(1, threads)); }

}  // namespace approxtrain
