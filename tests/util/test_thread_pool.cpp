// ThreadPool::parallel_for: every index once, chunks no longer than the grain, and no lost
// wake-ups when a call wants fewer workers than the pool has.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>
#include <vector>

#include "util/thread_pool.h"

namespace hs {
namespace {

// Runs fn on another thread and aborts the test program if it has not returned within the
// limit: a lost wake-up would otherwise hang the test until CTest's timeout.
template <typename F>
void within_seconds(int limit, F fn) {
  auto done = std::async(std::launch::async, fn);
  if (done.wait_for(std::chrono::seconds(limit)) != std::future_status::ready) {
    std::fprintf(stderr, "parallel_for did not return within %d s (a lost wake-up)\n", limit);
    std::abort();
  }
  done.get();
}

TEST(ThreadPool, CoversEveryIndexOnceInChunksOfAtMostTheGrain) {
  for (int threads : {1, 2, 5, 16}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 7, 100, 1000}) {
      for (int64_t grain : {1, 3, 8, 2000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<bool> too_long{false};
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          // One call for the whole range when no worker helps; otherwise chunks of the grain.
          if (b >= e || (e - b > grain && !(b == 0 && e == n))) too_long = true;
          for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
        });
        EXPECT_FALSE(too_long) << threads << " threads, n " << n << ", grain " << grain;
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << threads << " threads, n " << n << ", grain " << grain
                                                          << ", index " << i;
      }
    }
  }
}

TEST(ThreadPool, ManySmallCallsInARowAllReturn) {
  // Calls that want 1 to 7 of 7 workers, back to back, so that workers are still on their way
  // back to sleep when the next call wakes some of them.
  ThreadPool pool(8);
  within_seconds(120, [&] {
    int64_t sum = 0;
    for (int call = 0; call < 20000; ++call) {
      const int64_t n = 1 + call % 8;
      std::atomic<int64_t> s{0};
      pool.parallel_for(n, 1, [&](int64_t b, int64_t e) { s += e - b; });
      ASSERT_EQ(s.load(), n);
      sum += s.load();
    }
    EXPECT_EQ(sum, 2500 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8));
  });
}

TEST(ThreadPool, CallersOnSeveralThreadsTakeTurns) {
  ThreadPool pool(4);
  within_seconds(120, [&] {
    std::vector<std::thread> callers;
    std::atomic<int64_t> total{0};
    for (int c = 0; c < 3; ++c)
      callers.emplace_back([&, c] {
        for (int call = 0; call < 2000; ++call)
          pool.parallel_for(1 + (call + c) % 6, 1, [&](int64_t b, int64_t e) { total += e - b; });
      });
    for (auto& t : callers) t.join();
    int64_t expect = 0;
    for (int c = 0; c < 3; ++c)
      for (int call = 0; call < 2000; ++call) expect += 1 + (call + c) % 6;
    EXPECT_EQ(total.load(), expect);
  });
}

}  // namespace
}  // namespace hs
