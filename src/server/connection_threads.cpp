#include "server/connection_threads.h"

#include <algorithm>
#include <stdexcept>
#include <system_error>

#include <spdlog/spdlog.h>

namespace hs::server {

ConnectionThreads::ConnectionThreads(int base, int max, std::chrono::milliseconds linger)
    : base_(std::max(1, base)), max_(std::max(base_, max)), linger_(linger) {
  std::lock_guard lock(mutex_);
  for (int i = 0; i < base_; ++i)
    if (!start_thread()) break;
  if (threads_.empty()) throw std::runtime_error("cannot start the HTTP server's threads");
}

ConnectionThreads::~ConnectionThreads() { shutdown(); }

bool ConnectionThreads::start_thread() {
  const auto self = threads_.emplace(threads_.end());
  try {
    // The thread waits for mutex_, which the caller holds, before it reads *self.
    *self = std::thread([this, self] { work(self); });
    ++idle_;  // from now on: enqueue counts on it even before it waits
    return true;
  } catch (const std::system_error& e) {
    threads_.erase(self);
    if (!refused_logged_) {
      spdlog::warn("cannot start another HTTP thread ({} running): {}; connections wait for a free one",
                   threads_.size(), e.what());
      refused_logged_ = true;
    }
    return false;
  }
}

void ConnectionThreads::work(Threads::iterator self) {
  std::unique_lock lock(mutex_);
  for (;;) {
    const bool woken = wake_.wait_for(lock, linger_, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) {
      if (stopping_ || (!woken && static_cast<int>(threads_.size()) > base_)) break;
      continue;
    }
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    --idle_;
    lock.unlock();
    job();
    job = nullptr;  // the connection's state goes before the lock is taken again
    lock.lock();
    ++idle_;
  }
  --idle_;
  // shutdown() joins the threads it found; one that ends on its own is joined by the next enqueue.
  if (!stopping_) ended_.splice(ended_.end(), threads_, self);
}

void ConnectionThreads::join_ended() {
  Threads ended;
  {
    std::lock_guard lock(mutex_);
    ended.splice(ended.end(), ended_);
  }
  for (std::thread& t : ended) t.join();
}

void ConnectionThreads::enqueue(std::function<void()> fn) {
  join_ended();
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(fn));
    if (!stopping_ && jobs_.size() > static_cast<size_t>(idle_) && static_cast<int>(threads_.size()) < max_)
      start_thread();
  }
  wake_.notify_one();
}

void ConnectionThreads::shutdown() {
  Threads all;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    all.splice(all.end(), threads_);
    all.splice(all.end(), ended_);
  }
  wake_.notify_all();
  for (std::thread& t : all) t.join();
}

ConnectionThreads::Counts ConnectionThreads::counts() const {
  std::lock_guard lock(mutex_);
  Counts c;
  c.threads = static_cast<int>(threads_.size());
  c.busy = c.threads - idle_;
  c.queued = static_cast<int>(jobs_.size());
  return c;
}

}  // namespace hs::server
