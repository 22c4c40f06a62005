// ConnectionThreads (the HTTP server's task queue): connections past the waiting threads get
// threads of their own up to the most allowed, the rest wait for a free one, threads past the
// base end when idle, and shutdown runs what is queued.
#include "server/connection_threads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace hs::server {
namespace {

using namespace std::chrono_literals;

// Jobs that hold their thread until release(); counts how many are running and have ended.
class Gate {
 public:
  std::function<void()> job() {
    return [this] {
      std::unique_lock lock(mutex_);
      ++running_;
      changed_.notify_all();
      changed_.wait(lock, [this] { return open_; });
      --running_;
      ++ended_;
      changed_.notify_all();
    };
  }
  void release() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  // Waits (up to 10 s) until `pred` holds of (running, ended); returns whether it did.
  bool wait_for(const std::function<bool(int, int)>& pred) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] { return pred(running_, ended_); });
  }
  int running() {
    std::lock_guard lock(mutex_);
    return running_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  int running_ = 0, ended_ = 0;
};

// Polls counts() until `pred` holds (up to 10 s).
bool eventually(const ConnectionThreads& q, const std::function<bool(const ConnectionThreads::Counts&)>& pred) {
  for (auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(5ms))
    if (pred(q.counts())) return true;
  return pred(q.counts());
}

TEST(ConnectionThreads, StartsThreadsPastTheBaseForBusyConnections) {
  ConnectionThreads q(2, 16, 10s);
  EXPECT_EQ(q.counts().threads, 2);
  Gate gate;
  for (int i = 0; i < 10; ++i) q.enqueue(gate.job());
  // A fixed pool of two would run two and queue eight.
  EXPECT_TRUE(gate.wait_for([](int running, int) { return running == 10; })) << gate.running();
  const ConnectionThreads::Counts c = q.counts();
  EXPECT_EQ(c.threads, 10);
  EXPECT_EQ(c.busy, 10);
  EXPECT_EQ(c.queued, 0);
  gate.release();
  EXPECT_TRUE(gate.wait_for([](int, int ended) { return ended == 10; }));
}

TEST(ConnectionThreads, QueuesPastTheMostAndRunsThemWhenThreadsFree) {
  ConnectionThreads q(1, 3, 10s);
  Gate gate;
  for (int i = 0; i < 5; ++i) q.enqueue(gate.job());
  EXPECT_TRUE(gate.wait_for([](int running, int) { return running == 3; }));
  EXPECT_TRUE(eventually(q, [](const auto& c) { return c.queued == 2; }));
  std::this_thread::sleep_for(50ms);  // none of the queued two starts while the three hold
  EXPECT_EQ(gate.running(), 3);
  EXPECT_EQ(q.counts().threads, 3);
  gate.release();
  EXPECT_TRUE(gate.wait_for([](int, int ended) { return ended == 5; }));
  EXPECT_EQ(q.counts().queued, 0);
}

TEST(ConnectionThreads, ThreadsPastTheBaseEndWhenIdle) {
  ConnectionThreads q(2, 8, 50ms);
  Gate gate;
  for (int i = 0; i < 6; ++i) q.enqueue(gate.job());
  EXPECT_TRUE(gate.wait_for([](int running, int) { return running == 6; }));
  gate.release();
  EXPECT_TRUE(gate.wait_for([](int, int ended) { return ended == 6; }));
  EXPECT_TRUE(eventually(q, [](const auto& c) { return c.threads == 2 && c.busy == 0; })) << q.counts().threads;
  // And it grows again.
  Gate again;
  for (int i = 0; i < 5; ++i) q.enqueue(again.job());
  EXPECT_TRUE(again.wait_for([](int running, int) { return running == 5; }));
  again.release();
  EXPECT_TRUE(again.wait_for([](int, int ended) { return ended == 5; }));
}

TEST(ConnectionThreads, ShutdownRunsWhatIsQueued) {
  std::atomic<int> ran{0};
  Gate gate;
  ConnectionThreads q(1, 1, 10s);
  q.enqueue(gate.job());
  EXPECT_TRUE(gate.wait_for([](int running, int) { return running == 1; }));
  for (int i = 0; i < 4; ++i) q.enqueue([&ran] { ++ran; });
  EXPECT_EQ(q.counts().queued, 4);
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);
    gate.release();
  });
  q.shutdown();  // returns once the held job and the four queued ones have run
  releaser.join();
  EXPECT_EQ(ran.load(), 4);
  EXPECT_EQ(q.counts().threads, 0);
}

}  // namespace
}  // namespace hs::server
