// Memory of the per-head sharded, paged KV cache: the pool holds exactly the pages the HCS rule
// keeps after every commit (against pages_for_length, itself checked against a brute-force count
// from HeadShard::attends), per head kind too; reserve is all or nothing; a strided plan grows at
// 1/stride of dense's rate and a streaming plan stays flat.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "kv/kv_test_util.h"
#include "kv/paged_kv_cache.h"

namespace hs {
namespace {

using test::PlanKind;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The lists of one sequence are exactly the blocks the rule keeps (brute force from attends)
// plus every block reserved beyond the newest token, ascending, on distinct pages in use.
void expect_lists_follow_rule(const PagedKvCache& cache, const ModelConfig& c, int64_t seq) {
  const ShardPlan& plan = cache.plan();
  const int32_t B = plan.block_size();
  const int64_t n = cache.length(seq), r = cache.reserved(seq);
  std::set<int32_t> pages;
  for (int32_t l = 0; l < plan.n_layers(); ++l)
    for (int32_t h = 0; h < plan.n_kv_heads(); ++h) {
      std::set<int32_t> want = n > 0 ? test::brute_kept_blocks(plan.at(l, h), B, test::window_of(c, l), n)
                                     : std::set<int32_t>{};
      for (int64_t j = n > 0 ? (n - 1) / B + 1 : 0; j < ceil_div(r, B); ++j) want.insert(static_cast<int32_t>(j));
      std::vector<int32_t> got;
      for (const BlockPage& e : cache.pages(seq, l, h)) {
        got.push_back(e.block);
        EXPECT_TRUE(pages.insert(e.page).second) << "page " << e.page << " in two lists";
        EXPECT_TRUE(cache.pool().in_use(e.page));
      }
      ASSERT_EQ(got, std::vector<int32_t>(want.begin(), want.end()))
          << "seq " << seq << " layer " << l << " head " << h << " after " << n << " tokens (" << r << " reserved)";
    }
}

// pages_in_use(kind) equals the list sizes of the heads of that kind, and the kinds add up.
void expect_kind_accounting(const PagedKvCache& cache, const std::vector<int64_t>& seqs) {
  std::map<HeadKind, int64_t> by_kind;
  for (int64_t seq : seqs)
    for (int32_t l = 0; l < cache.plan().n_layers(); ++l)
      for (int32_t h = 0; h < cache.plan().n_kv_heads(); ++h)
        by_kind[cache.plan().at(l, h).kind()] += static_cast<int64_t>(cache.pages(seq, l, h).size());
  int64_t total = 0;
  for (HeadKind k : {HeadKind::Dense, HeadKind::Strided, HeadKind::Streaming}) {
    EXPECT_EQ(cache.pages_in_use(k), by_kind[k]) << head_kind_name(k);
    total += cache.pages_in_use(k);
  }
  EXPECT_EQ(total, cache.pool().used_pages());
}

// ---- PagePool ----

TEST(PagePool, AllocatesEveryPageOnceThenAnswersMinusOne) {
  PagePool pool(5);
  std::set<int32_t> got;
  for (int i = 0; i < 5; ++i) got.insert(pool.allocate());
  EXPECT_EQ(got, (std::set<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.used_pages(), 5);
  EXPECT_EQ(pool.free_pages(), 0);
  pool.release(3);
  EXPECT_FALSE(pool.in_use(3));
  EXPECT_EQ(pool.allocate(), 3);
  EXPECT_TRUE(pool.in_use(3));
  EXPECT_EQ(PagePool(0).allocate(), -1);
}

TEST(PagePool, DoubleFreeAndBadIdsThrowLogicError) {
  PagePool pool(4);
  const int32_t p = pool.allocate();
  pool.release(p);
  EXPECT_THROW(pool.release(p), std::logic_error);
  EXPECT_THROW(pool.release(2), std::logic_error);  // never allocated
  EXPECT_THROW(pool.release(-1), std::logic_error);
  EXPECT_THROW(pool.release(4), std::logic_error);
  EXPECT_EQ(pool.free_pages(), 4);  // the failed releases changed nothing
}

// ---- the oracle ----

TEST(PagesForLength, EqualsABruteForceCountOverTokenPairs) {
  std::mt19937_64 rng(11);
  int checked = 0;
  for (int32_t B : {1, 3, 4, 16})
    for (PlanKind kind : {PlanKind::Dense, PlanKind::Streaming, PlanKind::Strided, PlanKind::Mixed})
      for (bool sinks : {false, true})
        for (int32_t window : {0, 1, 7, 33}) {
          const ModelConfig c = test::kv_config(3, 3, 1, 8, window, window ? std::vector<bool>{true, false, true}
                                                                            : std::vector<bool>{});
          const ShardPlan plan = test::random_plan(kind, 3, 3, B, sinks, rng);
          for (int64_t n = 0; n <= 40 * B && n <= 300; ++n) {
            ASSERT_EQ(PagedKvCache::pages_for_length(c, plan, n), test::brute_pages_for_length(c, plan, n))
                << test::plan_kind_name(kind) << " B=" << B << " window=" << window << " n=" << n;
            ++checked;
          }
        }
  EXPECT_GT(checked, 10000);
}

TEST(PagesForLength, EqualsABlockCountForLongSequences) {
  // Far beyond the brute-force range: count blocks 0..c one by one from attends_block and the
  // window's first block.
  std::mt19937_64 rng(12);
  for (int trial = 0; trial < 20; ++trial) {
    const int32_t B = test::uniform(rng, 1, 128), W = test::uniform(rng, 0, 3) ? 0 : test::uniform(rng, 1, 5000);
    const ModelConfig c = test::kv_config(2, 2, 1, 8, W, W ? std::vector<bool>{true, false} : std::vector<bool>{});
    ShardPlan plan = test::random_plan(PlanKind::Mixed, 2, 2, B, trial % 2, rng);
    for (int64_t n : {int64_t{1}, int64_t{4097}, int64_t{100003}, int64_t{1} << 22}) {
      const int64_t t = n - 1, cb = t / B;
      int64_t want = 0;
      for (int32_t l = 0; l < 2; ++l)
        for (int32_t h = 0; h < 2; ++h)
          for (int64_t j = 0; j <= cb; ++j) {
            const int32_t w = test::window_of(c, l);
            const bool in_window = w == 0 || (j + 1) * B - 1 >= t - w + 1;
            want += in_window && plan.at(l, h).attends_block(cb, j);
          }
      ASSERT_EQ(PagedKvCache::pages_for_length(c, plan, n), want) << "B=" << B << " W=" << W << " n=" << n;
    }
  }
}

TEST(PagesForLength, FreeingIsSafeBecauseTheRuleIsMonotone) {
  // The premise of freeing: a block none of whose keys the query at t sees is seen by no later
  // query either -- checked over all token pairs for random heads and windows.
  std::mt19937_64 rng(13);
  for (int trial = 0; trial < 60; ++trial) {
    const HeadShard h = test::random_head(static_cast<HeadKind>(trial % 3), trial % 2, rng);
    const int32_t B = test::uniform(rng, 1, 6), W = trial % 4 ? 0 : test::uniform(rng, 1, 20);
    const int64_t N = 60;
    for (int64_t t = 0; t < N; ++t) {
      const std::set<int32_t> kept = test::brute_kept_blocks(h, B, W, t + 1);
      for (int64_t t2 = t + 1; t2 < N; ++t2)
        for (int64_t s = 0; s <= t; ++s)
          if (test::sees(h, B, W, t2, s)) ASSERT_TRUE(kept.count(static_cast<int32_t>(s / B))) << "t=" << t << " t2=" << t2;
    }
  }
}

// ---- the cache against the rule ----

TEST(PagedKvCache, UsedPagesEqualTheRuleAfterEveryCommit) {
  for (PlanKind kind : {PlanKind::Dense, PlanKind::Streaming, PlanKind::Strided, PlanKind::Mixed})
    for (int32_t window : {0, 45}) {
      SCOPED_TRACE(std::string(test::plan_kind_name(kind)) + " window=" + std::to_string(window));
      std::mt19937_64 rng(21 + static_cast<int>(kind) * 3 + window);
      const int32_t B = 16;
      const ModelConfig c = test::kv_config(3, 3, 2, 8, window, window ? std::vector<bool>{false, true, true}
                                                                        : std::vector<bool>{});
      const ShardPlan plan = test::random_plan(kind, 3, 3, B, kind != PlanKind::Strided, rng);
      PagedKvCache cache(c, plan, 4000);
      std::vector<int64_t> seqs = {1, 2, 3};
      std::map<int64_t, int32_t> target = {{1, 600}, {2, 333}, {3, 97}};
      for (int step = 0; step < 400; ++step) {
        std::vector<std::pair<int64_t, int32_t>> chunks;
        for (int64_t s : seqs) {
          const int32_t left = target[s] - cache.length(s);
          if (left > 0) chunks.push_back({s, std::min(left, test::uniform(rng, 0, 2) ? 1 : test::uniform(rng, 1, 3 * B))});
        }
        if (chunks.empty()) break;
        for (auto [s, n] : chunks) {
          const int64_t before = cache.pool().used_pages();
          const int64_t need = cache.pages_needed(s, n);
          ASSERT_TRUE(cache.reserve(s, n));
          ASSERT_EQ(cache.pool().used_pages(), before + need);
        }
        KvStepMeta meta;
        cache.build_step(chunks, meta);
        for (auto [s, n] : chunks) {
          cache.commit(s, n);
          expect_lists_follow_rule(cache, c, s);
          if (HasFatalFailure()) return;
        }
        int64_t want = 0;
        for (int64_t s : seqs) want += PagedKvCache::pages_for_length(c, plan, cache.length(s));
        ASSERT_EQ(cache.pool().used_pages(), want) << "step " << step;
        expect_kind_accounting(cache, seqs);
      }
      EXPECT_EQ(cache.length(1), 600);
      for (int64_t s : seqs) cache.release(s);
      EXPECT_EQ(cache.pool().used_pages(), 0);
      for (HeadKind k : {HeadKind::Dense, HeadKind::Strided, HeadKind::Streaming}) EXPECT_EQ(cache.pages_in_use(k), 0);
      EXPECT_EQ(cache.n_sequences(), 0u);
    }
}

TEST(PagedKvCache, ReservingAheadAndCommittingInPartsFollowsTheRule) {
  // Pages reserved beyond the newest token are kept until committed past; commits of any size
  // (including 0) free exactly what died, however far the newest token jumped.
  std::mt19937_64 rng(31);
  const int32_t B = 8;
  const ModelConfig c = test::kv_config(2, 4, 1, 8, 21, {true, false});
  for (int trial = 0; trial < 12; ++trial) {
    const ShardPlan plan = test::random_plan(static_cast<PlanKind>(trial % 4), 2, 4, B, trial % 3 == 0, rng);
    PagedKvCache cache(c, plan, 2000);
    while (cache.length(7) < 300) {
      const int32_t ahead = test::uniform(rng, 0, 3 * B);
      ASSERT_TRUE(cache.reserve(7, ahead));
      expect_lists_follow_rule(cache, c, 7);
      while (cache.length(7) < cache.reserved(7)) {
        const int32_t n = std::min(cache.reserved(7) - cache.length(7), test::uniform(rng, 0, B + 3));
        cache.commit(7, n);
        expect_lists_follow_rule(cache, c, 7);
        if (HasFatalFailure()) return;
      }
    }
    EXPECT_EQ(cache.pool().used_pages(), PagedKvCache::pages_for_length(c, plan, cache.length(7)));
  }
}

TEST(PagedKvCache, ABlockWrittenInAStepCanBeFreedAtItsCommit) {
  // Streaming heads keeping one block: a 3-block prefill chunk needs 3 pages per head while it is
  // written and attended, and only the newest block survives the commit.
  const ModelConfig c = test::kv_config(2, 2, 1, 8);
  const ShardPlan plan(2, 2, 16, HeadShard{0, 1, 0, 0});
  PagedKvCache cache(c, plan, 100);
  EXPECT_EQ(cache.pages_needed(1, 48), 3 * 4);
  ASSERT_TRUE(cache.reserve(1, 48));
  EXPECT_EQ(cache.pool().used_pages(), 12);
  EXPECT_EQ(cache.pages_in_use(HeadKind::Streaming), 12);
  cache.commit(1, 48);
  EXPECT_EQ(cache.pool().used_pages(), 4);
  EXPECT_EQ(cache.pages(1, 1, 1), (std::vector<BlockPage>{{2, cache.pages(1, 1, 1)[0].page}}));
  // The next token opens block 3; committing it frees block 2.
  EXPECT_EQ(cache.pages_needed(1, 1), 4);
  ASSERT_TRUE(cache.reserve(1, 1));
  cache.commit(1, 1);
  EXPECT_EQ(cache.pool().used_pages(), 4);
  EXPECT_EQ(cache.pages(1, 0, 0).front().block, 3);
}

TEST(PagedKvCache, PagesNeededCountsOnlyNewBlocks) {
  const ModelConfig c = test::kv_config(3, 2, 1, 8);
  PagedKvCache cache(c, dense_plan(3, 2, 16), 1000);
  EXPECT_EQ(cache.pages_needed(1, 0), 0);
  EXPECT_EQ(cache.pages_needed(1, 1), 6);
  EXPECT_EQ(cache.pages_needed(1, 16), 6);
  EXPECT_EQ(cache.pages_needed(1, 17), 12);
  ASSERT_TRUE(cache.reserve(1, 10));
  EXPECT_EQ(cache.pages_needed(1, 6), 0);   // fills block 0
  EXPECT_EQ(cache.pages_needed(1, 7), 6);   // spills into block 1
  cache.commit(1, 10);
  EXPECT_EQ(cache.pages_needed(1, 6), 0);
  EXPECT_EQ(cache.pages_needed(1, 39), 18);  // positions 10..48: blocks 1, 2, 3
}

TEST(PagedKvCache, ReserveIsAllOrNothingWhenThePoolIsShort) {
  const ModelConfig c = test::kv_config(2, 3, 1, 8);
  const ShardPlan plan(2, 3, 16, HeadShard{1, 2, 3, 0});
  PagedKvCache cache(c, plan, 40);  // 6 lists: 6 pages per block of tokens
  ASSERT_TRUE(cache.reserve(1, 80));  // 5 blocks: 30 pages
  cache.commit(1, 80);
  const int64_t used = cache.pool().used_pages();
  EXPECT_EQ(used, 18);  // blocks 0 (sink, on the stride), 3 (on the stride) and 4 (recent) per head
  ASSERT_LT(cache.pool().free_pages(), cache.pages_needed(2, 60));  // 22 free, 4 blocks x 6 needed

  // A new sequence that does not fit: false, no exception, nothing created or allocated.
  bool ok = true;
  EXPECT_NO_THROW(ok = cache.reserve(2, 60));
  EXPECT_FALSE(ok);
  EXPECT_EQ(cache.pool().used_pages(), used);
  EXPECT_FALSE(cache.contains(2));
  EXPECT_EQ(cache.length(2), 0);
  EXPECT_EQ(cache.reserved(2), 0);
  EXPECT_TRUE(cache.pages(2, 0, 0).empty());
  EXPECT_EQ(cache.pages_in_use(HeadKind::Strided), used);

  // An existing sequence that does not fit: its lists and counters stay as they were.
  const std::vector<BlockPage> lists_before = cache.pages(1, 1, 2);
  EXPECT_FALSE(cache.reserve(1, 200));
  EXPECT_EQ(cache.reserved(1), 80);
  EXPECT_EQ(cache.length(1), 80);
  EXPECT_EQ(cache.pages(1, 1, 2), lists_before);
  EXPECT_EQ(cache.pool().used_pages(), used);

  // Room appears once the first sequence is released.
  cache.release(1);
  EXPECT_EQ(cache.pool().used_pages(), 0);
  ASSERT_TRUE(cache.reserve(2, 60));
  cache.commit(2, 60);
  EXPECT_EQ(cache.pool().used_pages(), PagedKvCache::pages_for_length(c, plan, 60));
}

TEST(PagedKvCache, MisuseThrowsAndUnknownSequencesAreHarmless) {
  const ModelConfig c = test::kv_config(1, 2, 1, 8);
  PagedKvCache cache(c, dense_plan(1, 2, 16), 10);
  EXPECT_EQ(cache.length(42), 0);
  EXPECT_NO_THROW(cache.release(42));
  EXPECT_THROW(cache.commit(42, 1), std::logic_error);
  ASSERT_TRUE(cache.reserve(1, 5));
  EXPECT_THROW(cache.commit(1, 6), std::logic_error);
  EXPECT_EQ(cache.length(1), 0);
  EXPECT_THROW(cache.reserve(1, -1), std::invalid_argument);
  KvStepMeta meta;
  EXPECT_THROW(cache.build_step({{1, 6}}, meta), std::logic_error);
  EXPECT_THROW(cache.build_step({{42, 1}}, meta), std::logic_error);
  EXPECT_THROW(PagedKvCache(c, dense_plan(2, 2, 16), 10), std::invalid_argument);  // layer count
  EXPECT_THROW(PagedKvCache(c, ShardPlan(1, 2, 16, HeadShard{0, 0, 1, 0}), 10), std::invalid_argument);  // local 0
}

TEST(PagedKvCache, BuildStepDescribesListsAndWriteSlots) {
  std::mt19937_64 rng(41);
  const int32_t B = 16;
  const ModelConfig c = test::kv_config(2, 3, 2, 8, 30, {false, true});
  const ShardPlan plan = test::random_plan(PlanKind::Mixed, 2, 3, B, true, rng);
  PagedKvCache cache(c, plan, 1000);
  ASSERT_TRUE(cache.reserve(1, 70));
  cache.commit(1, 70);
  ASSERT_TRUE(cache.reserve(2, 5));
  cache.commit(2, 5);
  const std::vector<std::pair<int64_t, int32_t>> chunks = {{2, 40}, {3, 17}, {1, 1}};
  for (auto [s, n] : chunks) ASSERT_TRUE(cache.reserve(s, n));
  KvStepMeta meta;
  cache.build_step(chunks, meta);
  EXPECT_EQ(meta.n_chunks, 3);
  EXPECT_EQ(meta.block_size, B);
  EXPECT_EQ(meta.n_tokens, 58);
  EXPECT_EQ(meta.chunk_pos0, (std::vector<int32_t>{5, 0, 70}));
  EXPECT_EQ(meta.chunk_tok0, (std::vector<int32_t>{0, 40, 57, 58}));
  ASSERT_EQ(meta.indptr.size(), 3u * 2 * 3 + 1);
  ASSERT_EQ(meta.write_slots.size(), 2u * 3 * 58);
  std::set<int32_t> written;
  for (int32_t ci = 0; ci < 3; ++ci)
    for (int32_t l = 0; l < 2; ++l)
      for (int32_t h = 0; h < 3; ++h) {
        const auto& list = cache.pages(chunks[ci].first, l, h);
        const int32_t li = meta.list(ci, l, h);
        ASSERT_EQ(meta.indptr[li + 1] - meta.indptr[li], static_cast<int32_t>(list.size()));
        for (size_t e = 0; e < list.size(); ++e) {
          EXPECT_EQ(meta.blocks[meta.indptr[li] + e], list[e].block);
          EXPECT_EQ(meta.pages[meta.indptr[li] + e], list[e].page);
        }
        for (int32_t k = 0; k < chunks[ci].second; ++k) {
          const int32_t pos = meta.chunk_pos0[ci] + k;
          const int32_t slot = meta.write_slots[(l * 3 + h) * meta.n_tokens + meta.chunk_tok0[ci] + k];
          EXPECT_EQ(slot % B, pos % B);
          const auto it = std::find_if(list.begin(), list.end(), [&](const BlockPage& e) { return e.block == pos / B; });
          ASSERT_NE(it, list.end());
          EXPECT_EQ(slot / B, it->page);
          EXPECT_TRUE(written.insert(slot).second) << "two tokens share a slot";
        }
      }
}

TEST(PagedKvCache, PageBytesAreKAndVOfOneBlockOfOneHead) {
  const ModelConfig c = test::kv_config(1, 1, 1, 128);
  PagedKvCache cache(c, dense_plan(1, 1, 64), 1);
  EXPECT_EQ(cache.page_bytes(2), 2 * 64 * 128 * 2);
  EXPECT_EQ(cache.page_bytes(4), 2 * 64 * 128 * 4);
}

// ---- growth over a long decode ----

struct Growth {
  int64_t at_half, at_end;
  double slope() const;  // pages per token over the second half
};

// Decodes n tokens one at a time (after a one-token prompt) and samples the pool at n/2 and n,
// checking the pool against the rule after every commit.
Growth decode_growth(const ModelConfig& c, const ShardPlan& plan, int32_t n) {
  PagedKvCache cache(c, plan, 1 << 16);
  Growth g{0, 0};
  for (int32_t i = 0; i < n; ++i) {
    EXPECT_TRUE(cache.reserve(0, 1));
    cache.commit(0, 1);
    EXPECT_EQ(cache.pool().used_pages(), PagedKvCache::pages_for_length(c, plan, i + 1));
    if (i + 1 == n / 2) g.at_half = cache.pool().used_pages();
  }
  g.at_end = cache.pool().used_pages();
  return g;
}
double Growth::slope() const { return static_cast<double>(at_end - at_half) / 2048.0; }

TEST(PagedKvCache, LongDecodeGrowsAtOneOverStrideOfDenseAndFlatWhenStreaming) {
  const int32_t B = 16, L = 2, H = 4, N = 4096;
  const ModelConfig c = test::kv_config(L, H, 2, 64);
  const Growth dense = decode_growth(c, dense_plan(L, H, B), N);
  std::cout << "dense: " << dense.at_half << " -> " << dense.at_end << " pages, slope " << dense.slope()
            << " pages/token\n";
  EXPECT_NEAR(dense.slope(), static_cast<double>(L * H) / B, 1e-9);
  for (int32_t stride : {2, 4, 8}) {
    ShardPlan plan(L, H, B);
    for (int32_t l = 0; l < L; ++l)
      for (int32_t h = 0; h < H; ++h) plan.at(l, h) = HeadShard{1, 4, stride, (h + l * H) % stride};
    const Growth g = decode_growth(c, plan, N);
    const double ratio = g.slope() / dense.slope();
    std::cout << "stride " << stride << ": " << g.at_half << " -> " << g.at_end << " pages, slope " << g.slope()
              << " pages/token, " << ratio << " of dense (1/stride = " << 1.0 / stride << ")\n";
    EXPECT_NEAR(ratio, 1.0 / stride, 0.1 / stride);
  }
  ShardPlan streaming(L, H, B, HeadShard{1, 4, 0, 0});
  const Growth s = decode_growth(c, streaming, N);
  std::cout << "streaming: " << s.at_half << " -> " << s.at_end << " pages, slope " << s.slope() << "\n";
  EXPECT_EQ(s.at_end, s.at_half);
  EXPECT_EQ(s.at_end, L * H * (1 + 4));
  // A model window caps even dense heads: 100 tokens span at most ceil(99/16) + 1 = 8 blocks.
  const ModelConfig windowed = test::kv_config(L, H, 2, 64, 100, std::vector<bool>(L, true));
  const Growth w = decode_growth(windowed, dense_plan(L, H, B), N);
  EXPECT_EQ(w.at_end, w.at_half);
  EXPECT_LE(w.at_end, L * H * 8);
}

}  // namespace
}  // namespace hs
