// The scheduling policy on hand-made situations: budget, order, and who is preempted.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "kv/paged_kv_cache.h"
#include "model/config.h"
#include "sched/scheduler.h"

namespace hs {
namespace {

// One layer, one KV head, blocks of 16: a page per 16 tokens.
ModelConfig one_head() {
  return config_from_preset({{"arch", "llama"}, {"n_layers", 1}, {"d_model", 16}, {"n_heads", 1}, {"n_kv_heads", 1},
                             {"head_dim", 16}, {"d_ff", 16}, {"vocab_size", 16}, {"context_length", 1024}});
}

TEST(Scheduler, DecodesFirstThenPrefillInArrivalOrderWithinTheBudget) {
  PagedKvCache kv(one_head(), dense_plan(1, 1, 16), 100);
  Scheduler s({40, 8});
  // 0: prefill of 30; 1: decoding; 2: prefill of 30; 3: decoding.
  std::vector<SchedEntry> e = {{10, 30, false, false}, {11, 1, true, false}, {12, 30, false, false}, {13, 1, true, false}};
  const SchedDecision d = s.schedule(e, kv);
  ASSERT_EQ(d.chunks.size(), 4u);
  EXPECT_EQ(d.chunks[0].entry, 1u);  // decodes first
  EXPECT_EQ(d.chunks[1].entry, 3u);
  EXPECT_EQ(d.chunks[2].entry, 0u);  // then prefills in arrival order: all 30 of the oldest
  EXPECT_EQ(d.chunks[2].n, 30);
  EXPECT_EQ(d.chunks[3].entry, 2u);  // and the 8 tokens left of the budget for the next
  EXPECT_EQ(d.chunks[3].n, 8);
  EXPECT_TRUE(d.preempted.empty());
  EXPECT_EQ(kv.reserved(10), 30);
  EXPECT_EQ(kv.reserved(12), 8);
}

TEST(Scheduler, ChunksAreCutToTheBudget) {
  PagedKvCache kv(one_head(), dense_plan(1, 1, 16), 100);
  Scheduler s({20, 8});
  const SchedDecision d = s.schedule({{1, 50, false, false}, {2, 50, false, false}}, kv);
  ASSERT_EQ(d.chunks.size(), 1u);
  EXPECT_EQ(d.chunks[0].n, 20);
  EXPECT_EQ(kv.reserved(1), 20);
}

TEST(Scheduler, ThePoolRunningShortPreemptsTheNewestHolder) {
  // 4 pages: sequences 1 and 2 hold two each; 1 needs a third page for its next token.
  PagedKvCache kv(one_head(), dense_plan(1, 1, 16), 4);
  for (int64_t id : {1, 2}) {
    ASSERT_TRUE(kv.reserve(id, 32));
    kv.commit(id, 32);
  }
  Scheduler s({64, 8});
  const SchedDecision d = s.schedule({{1, 1, true, true}, {2, 1, true, true}}, kv);
  ASSERT_EQ(d.preempted.size(), 1u);
  EXPECT_EQ(d.preempted[0], 1u);  // entry 1 = sequence 2, the newest
  ASSERT_EQ(d.chunks.size(), 1u);
  EXPECT_EQ(d.chunks[0].entry, 0u);
  EXPECT_FALSE(kv.contains(2));  // released, and not restarted in the same step
  EXPECT_EQ(kv.pool().used_pages(), 3);
}

TEST(Scheduler, TheNewestWaitsRatherThanPreemptingOlderOnes) {
  PagedKvCache kv(one_head(), dense_plan(1, 1, 16), 2);
  ASSERT_TRUE(kv.reserve(1, 32));
  kv.commit(1, 32);
  Scheduler s({64, 8});
  const SchedDecision d = s.schedule({{1, 1, true, true}, {2, 10, false, false}}, kv);
  // Sequence 1 needs a page and preempts nobody older; 2 is newest and must wait.
  EXPECT_TRUE(d.preempted.empty());
  EXPECT_TRUE(d.chunks.empty());
  EXPECT_EQ(kv.length(1), 32);
}

}  // namespace
}  // namespace hs
