// A fixed pool of worker threads for data-parallel loops on the CPU backend.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace hs {

class ThreadPool {
 public:
  // n_threads <= 0 means one per hardware thread.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over [0, n) split into chunks of `grain` items (the last may be
  // shorter); the calling thread works too, with as many workers as there are chunks besides
  // one. With no such worker, fn(0, n) runs on the calling thread. Returns when every chunk is
  // done. Calls from several threads take turns; fn must not call parallel_for itself.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // The process-wide pool (sized by HEADSHARD_THREADS or the hardware).
  static ThreadPool& global();

 private:
  // A worker sleeps on its own condition variable, so that a call wakes only the workers it
  // wants (one waiter per variable: no wake-up can go to a thread that was not meant).
  struct Worker {
    std::thread thread;
    std::condition_variable wake;
    bool go = false;  // under mu_
  };
  void worker_loop(Worker& w);
  void run_chunks();

  std::vector<std::unique_ptr<Worker>> workers_;
  std::mutex caller_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable done_;
  int active_ = 0;  // workers of this call that have not finished
  bool stop_ = false;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  std::atomic<int64_t> next_{0};
};

}  // namespace hs
