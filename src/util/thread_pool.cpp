#include "util/thread_pool.h"

#include <algorithm>
#include <cstdlib>
#include <string>

namespace hs {

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < n_threads; ++i) workers_.push_back(std::make_unique<Worker>());
  for (auto& w : workers_) w->thread = std::thread([this, &w = *w] { worker_loop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  for (auto& w : workers_) w->wake.notify_one();
  for (auto& w : workers_) w->thread.join();
}

void ThreadPool::run_chunks() {
  for (;;) {
    int64_t begin = next_.fetch_add(grain_);
    if (begin >= n_) return;
    (*fn_)(begin, std::min(n_, begin + grain_));
  }
}

void ThreadPool::worker_loop(Worker& w) {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      w.wake.wait(lock, [&] { return stop_ || w.go; });
      if (stop_) return;
      w.go = false;
    }
    run_chunks();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  // Waking and waiting for the whole pool costs more than a few chunks: a call takes one worker
  // per chunk past the first. Every worker is idle here (the last call waited for its own).
  const int helpers = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(workers_.size()), (n - 1) / grain));
  if (helpers == 0) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> turn(caller_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    grain_ = grain;
    next_.store(0);
    active_ = helpers;
    for (int i = 0; i < helpers; ++i) workers_[i]->go = true;
  }
  for (int i = 0; i < helpers; ++i) workers_[i]->wake.notify_one();
  run_chunks();
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [&] { return active_ == 0; });
  fn_ = nullptr;
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool([] {
    const char* env = std::getenv("HEADSHARD_THREADS");
    return env ? std::atoi(env) : 0;
  }());
  return pool;
}

}  // namespace hs
