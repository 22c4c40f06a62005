// ListArena: the changes it reports bring an independent copy of the arena (a plain array that
// only ever receives those changes) to hold every list of every step, exactly as build_step
// describes them, over random sessions of a real PagedKvCache, with and without the cache's list
// stamps; the cache changes a list's stamp exactly when it changes the list; a decode step inside
// a block changes nothing and one that opens a block appends one entry per list; abandoned places
// are reclaimed.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <stdexcept>
#include <vector>

#include "kv/kv_test_util.h"
#include "kv/list_arena.h"
#include "kv/paged_kv_cache.h"

namespace hs {
namespace {

using test::PlanKind;

// The device's copy, as a backend keeps it: grown to the arena's size, written only by changes
// (and filled with garbage when the arena starts over, so that nothing stale can pass).
struct Copy {
  std::vector<int32_t> blocks, pages;
  void apply(const ListArena& arena, const ListArena::Placement& p) {
    if (p.fresh) {
      blocks.assign(arena.size(), -7);
      pages.assign(arena.size(), -7);
    }
    blocks.resize(arena.size(), -7);
    pages.resize(arena.size(), -7);
    for (const ListArena::Entry& e : p.changes) {
      ASSERT_GE(e.index, 0);
      ASSERT_LT(e.index, arena.size());
      blocks[e.index] = e.block;
      pages[e.index] = e.page;
    }
  }
  // Every list of the step is in the copy where the placement says.
  void expect_holds(const KvStepMeta& meta, const ListArena::Placement& p) const {
    const int32_t n_lists = static_cast<int32_t>(meta.indptr.size()) - 1;
    ASSERT_EQ(static_cast<int32_t>(p.begin.size()), n_lists);
    for (int32_t l = 0; l < n_lists; ++l) {
      const int32_t e = meta.indptr[l], n = meta.indptr[l + 1] - e;
      ASSERT_EQ(p.end[l] - p.begin[l], n) << "list " << l;
      for (int32_t i = 0; i < n; ++i) {
        ASSERT_EQ(blocks[p.begin[l] + i], meta.blocks[e + i]) << "list " << l << " entry " << i;
        ASSERT_EQ(pages[p.begin[l] + i], meta.pages[e + i]) << "list " << l << " entry " << i;
      }
    }
  }
};

// Lists of different lists never share an entry of the arena.
void expect_disjoint(const ListArena::Placement& p) {
  std::vector<std::pair<int32_t, int32_t>> ranges;
  for (size_t l = 0; l < p.begin.size(); ++l)
    if (p.end[l] > p.begin[l]) ranges.push_back({p.begin[l], p.end[l]});
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) ASSERT_LE(ranges[i - 1].second, ranges[i].first);
}

TEST(ListArena, ChangesKeepACopyEqualToEveryStepsLists) {
  std::mt19937_64 rng(5);
  for (PlanKind kind : {PlanKind::Dense, PlanKind::Strided, PlanKind::Mixed, PlanKind::Streaming}) {
    SCOPED_TRACE(test::plan_kind_name(kind));
    const int32_t B = 4;
    const ModelConfig c = test::kv_config(2, 3, 1, 8, kind == PlanKind::Mixed ? 10 : 0, {false, true});
    const ShardPlan plan = test::random_plan(kind, 2, 3, B, kind != PlanKind::Streaming, rng);
    PagedKvCache cache(c, plan, 20000);
    ListArena arena;
    Copy copy;
    std::vector<int64_t> live;
    int64_t next = 1, changed = 0, entries = 0;
    for (int step = 0; step < 400; ++step) {
      // Some sequences leave, some arrive with a prompt, the rest decode or take a chunk; a few
      // sit the step out.
      if (!live.empty() && test::uniform(rng, 0, 9) == 0) {
        const size_t i = test::uniform(rng, 0, static_cast<int32_t>(live.size()) - 1);
        cache.release(live[i]);
        live.erase(live.begin() + i);
      }
      if (live.size() < 6 && test::uniform(rng, 0, 2) == 0) live.push_back(next++);
      std::vector<std::pair<int64_t, int32_t>> chunks;
      std::vector<int64_t> seqs;
      for (int64_t s : live) {
        if (cache.length(s) > 0 && test::uniform(rng, 0, 4) == 0) continue;
        const int32_t n = cache.length(s) == 0 ? test::uniform(rng, 1, 30)
                                               : (test::uniform(rng, 0, 5) == 0 ? test::uniform(rng, 2, 9) : 1);
        ASSERT_TRUE(cache.reserve(s, n));
        chunks.push_back({s, n});
        seqs.push_back(s);
      }
      if (chunks.empty()) continue;
      KvStepMeta meta;
      cache.build_step(chunks, meta);
      if (step % 3 == 0) meta.list_stamp.clear();  // every list compared
      ListArena::Placement p;
      arena.place(meta, seqs, p);
      copy.apply(arena, p);
      copy.expect_holds(meta, p);
      expect_disjoint(p);
      changed += static_cast<int64_t>(p.changes.size());
      entries += static_cast<int64_t>(meta.blocks.size());
      for (auto [s, n] : chunks) cache.commit(s, n);
    }
    // Most steps decode inside a block, and a dense or strided list changes only at its end: far
    // fewer entries change than the steps' lists hold. (A streaming list is its window alone: each
    // block it drops moves the rest.)
    if (kind == PlanKind::Dense || kind == PlanKind::Strided)
      EXPECT_LT(changed * 5, entries) << changed << " changed of " << entries;
  }
}

TEST(ListArena, TheCacheStampsAListExactlyWhenItChangesIt) {
  std::mt19937_64 rng(9);
  for (PlanKind kind : {PlanKind::Dense, PlanKind::Strided, PlanKind::Mixed, PlanKind::Streaming}) {
    SCOPED_TRACE(test::plan_kind_name(kind));
    const int32_t B = 4;
    const ModelConfig c = test::kv_config(2, 2, 1, 8, kind == PlanKind::Mixed ? 10 : 0, {true, false});
    PagedKvCache cache(c, test::random_plan(kind, 2, 2, B, kind != PlanKind::Streaming, rng), 20000);
    std::map<std::pair<int64_t, int32_t>, std::pair<std::vector<int32_t>, uint64_t>> seen;  // (seq, list)
    for (int step = 0; step < 300; ++step) {
      std::vector<std::pair<int64_t, int32_t>> chunks;
      for (int64_t s = 1; s <= 4; ++s) {
        if (test::uniform(rng, 0, 3) == 0) continue;
        const int32_t n = cache.length(s) == 0 ? test::uniform(rng, 1, 20) : test::uniform(rng, 1, 3);
        ASSERT_TRUE(cache.reserve(s, n));
        chunks.push_back({s, n});
      }
      if (chunks.empty()) continue;
      KvStepMeta meta;
      cache.build_step(chunks, meta);
      ASSERT_EQ(meta.list_stamp.size(), meta.indptr.size() - 1);
      for (size_t ci = 0; ci < chunks.size(); ++ci)
        for (int32_t i = 0; i < 4; ++i) {
          const size_t l = ci * 4 + i;
          std::vector<int32_t> content(meta.blocks.begin() + meta.indptr[l], meta.blocks.begin() + meta.indptr[l + 1]);
          content.insert(content.end(), meta.pages.begin() + meta.indptr[l], meta.pages.begin() + meta.indptr[l + 1]);
          ASSERT_NE(meta.list_stamp[l], 0u);
          auto it = seen.find({chunks[ci].first, i});
          if (it != seen.end())
            ASSERT_EQ(it->second.first == content, it->second.second == meta.list_stamp[l])
                << "step " << step << " sequence " << chunks[ci].first << " list " << i;
          seen[{chunks[ci].first, i}] = {content, meta.list_stamp[l]};
        }
      for (auto [s, n] : chunks) cache.commit(s, n);
      if (test::uniform(rng, 0, 40) == 0) {  // a sequence leaves; its id comes back as a new one
        const int64_t s = test::uniform(rng, 1, 4);
        cache.release(s);
        for (int32_t i = 0; i < 4; ++i) seen.erase({s, i});
      }
    }
  }
}

TEST(ListArena, ADecodeStepInsideABlockChangesNothingAndANewBlockAppendsOneEntryPerList) {
  const int32_t B = 16;
  const ModelConfig c = test::kv_config(2, 2, 1, 8);
  ShardPlan plan(2, 2, B);  // dense
  PagedKvCache cache(c, plan, 1000);
  ListArena arena;
  ListArena::Placement p;
  auto step = [&](int32_t n) {
    EXPECT_TRUE(cache.reserve(7, n));
    KvStepMeta meta;
    cache.build_step({{7, n}}, meta);
    arena.place(meta, {7}, p);
    cache.commit(7, n);
  };
  step(40);  // blocks 0..2
  EXPECT_TRUE(p.fresh);
  EXPECT_EQ(p.changes.size(), 4u * 3);
  for (int t = 40; t < 48; ++t) {  // block 2 has room up to position 47
    step(1);
    EXPECT_FALSE(p.fresh);
    EXPECT_TRUE(p.changes.empty()) << "position " << t;
  }
  step(1);  // position 48 opens block 3
  ASSERT_EQ(p.changes.size(), 4u);
  for (size_t l = 0; l < 4; ++l) EXPECT_EQ(p.changes[l].index, p.end[l] - 1);
  for (const ListArena::Entry& e : p.changes) EXPECT_EQ(e.block, 3);
}

TEST(ListArena, PlacesOfSequencesThatLeftAreReclaimed) {
  const ModelConfig c = test::kv_config(1, 2, 1, 8);
  ShardPlan plan(1, 2, 4);
  PagedKvCache cache(c, plan, 1000);
  ListArena arena;
  Copy copy;
  ListArena::Placement p;
  int fresh = 0;
  int32_t largest = 0;
  for (int64_t s = 1; s <= 6000; ++s) {  // one short-lived sequence a step
    ASSERT_TRUE(cache.reserve(s, 5));
    KvStepMeta meta;
    cache.build_step({{s, 5}}, meta);
    arena.place(meta, {s}, p);
    copy.apply(arena, p);
    copy.expect_holds(meta, p);
    cache.commit(s, 5);
    cache.release(s);
    fresh += p.fresh;
    largest = std::max(largest, arena.size());
  }
  EXPECT_GT(fresh, 1);  // the first step, and at least one start-over
  EXPECT_LE(largest, (int32_t{1} << 16) + 64);
}

TEST(ListArena, RejectsStepsItCannotPlace) {
  const ModelConfig c = test::kv_config(1, 1, 1, 8);
  PagedKvCache cache(c, ShardPlan(1, 1, 4), 100);
  ASSERT_TRUE(cache.reserve(1, 3));
  ASSERT_TRUE(cache.reserve(2, 3));
  KvStepMeta meta;
  cache.build_step({{1, 3}, {2, 3}}, meta);
  ListArena arena;
  ListArena::Placement p;
  EXPECT_THROW(arena.place(meta, {1}, p), std::invalid_argument);
  EXPECT_THROW(arena.place(meta, {1, 1}, p), std::invalid_argument);
  arena.place(meta, {1, 2}, p);
  EXPECT_EQ(p.changes.size(), 2u);
}

}  // namespace
}  // namespace hs
