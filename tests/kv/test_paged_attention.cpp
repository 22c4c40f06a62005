// Exactness of attention through the per-head sharded, paged KV cache: sequences run step by step
// through PagedKvCache (reserve, write K/V at the write slots, paged_attention per (layer, KV
// head), commit), and every query's output is compared with a dense attention over all keys 0..t
// with the rule's mask applied token by token, computed here in double.
//
// The page store starts as NaN and every page the cache frees is refilled with NaN, so reading a
// slot that was never written, a future slot, or a freed page shows up as a NaN output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/cpu/paged_attention.h"
#include "kv/kv_test_util.h"
#include "kv/paged_kv_cache.h"

namespace hs {
namespace {

using test::PlanKind;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Runs sequences through the cache and checks every query against the dense masked reference.
class Harness {
 public:
  Harness(ModelConfig config, ShardPlan plan, int32_t n_pages, uint64_t seed, float q_scale = 1.5f)
      : c_(std::move(config)),
        plan_(plan),
        cache_(c_, std::move(plan), n_pages),
        B_(plan_.block_size()),
        D_(c_.head_dim),
        group_(c_.n_heads / c_.n_kv_heads),
        store_(static_cast<size_t>(n_pages) * cpu::page_floats(B_, D_), kNaN),
        rng_(seed),
        q_scale_(q_scale) {}

  PagedKvCache& cache() { return cache_; }
  double max_err() const { return max_err_; }
  int64_t n_queries() const { return n_queries_; }

  // One step: the chunks (seq, n_new) in batch order, each sequence at most once.
  void step(const std::vector<std::pair<int64_t, int32_t>>& chunks) {
    for (const auto& [seq, n] : chunks) ASSERT_TRUE(cache_.reserve(seq, n)) << "pool too small for the test";
    KvStepMeta meta;
    cache_.build_step(chunks, meta);
    ASSERT_EQ(meta.n_chunks, static_cast<int32_t>(chunks.size()));
    ASSERT_EQ(meta.indptr.size(), static_cast<size_t>(meta.n_chunks) * c_.n_layers * c_.n_kv_heads + 1);
    // Every chunk's K/V first (as a forward pass writes a layer's rows before attending), so a
    // write landing in another sequence's page would corrupt its outputs.
    for (int32_t ci = 0; ci < meta.n_chunks; ++ci) {
      ASSERT_EQ(meta.chunk_pos0[ci], cache_.length(chunks[ci].first));
      write_chunk(meta, ci, chunks[ci].first, chunks[ci].second);
    }
    for (int32_t ci = 0; ci < meta.n_chunks; ++ci)
      for (int32_t l = 0; l < c_.n_layers; ++l)
        for (int32_t h = 0; h < c_.n_kv_heads; ++h) check_chunk(meta, ci, chunks[ci].first, chunks[ci].second, l, h);
    for (const auto& [seq, n] : chunks) {
      const std::set<int32_t> before = pages_of(seq);
      cache_.commit(seq, n);
      poison_freed(before, pages_of(seq));
    }
  }

  void release(int64_t seq) {
    const std::set<int32_t> before = pages_of(seq);
    cache_.release(seq);
    poison_freed(before, {});
    hist_.erase(seq);
  }

 private:
  // Full K/V history of one sequence per (layer, head): rows [pos][D], for the reference.
  struct History {
    std::vector<std::vector<float>> k, v;
  };

  std::vector<float> normal_rows(int64_t n, float sd) {
    std::normal_distribution<float> dist(0.0f, sd);
    std::vector<float> x(n);
    for (float& e : x) e = dist(rng_);
    return x;
  }

  std::set<int32_t> pages_of(int64_t seq) const {
    std::set<int32_t> s;
    for (int32_t l = 0; l < c_.n_layers; ++l)
      for (int32_t h = 0; h < c_.n_kv_heads; ++h)
        for (const BlockPage& e : cache_.pages(seq, l, h)) s.insert(e.page);
    return s;
  }

  void poison_freed(const std::set<int32_t>& before, const std::set<int32_t>& after) {
    for (int32_t p : before)
      if (!after.count(p)) {
        EXPECT_FALSE(cache_.pool().in_use(p)) << "page " << p << " left the lists but not the pool";
        std::fill_n(store_.begin() + p * cpu::page_floats(B_, D_), cpu::page_floats(B_, D_), kNaN);
      }
  }

  void write_chunk(const KvStepMeta& meta, int32_t ci, int64_t seq, int32_t n) {
    History& hist = hist_[seq];
    const size_t lists = static_cast<size_t>(c_.n_layers) * c_.n_kv_heads;
    if (hist.k.empty()) {
      hist.k.resize(lists);
      hist.v.resize(lists);
    }
    for (size_t i = 0; i < lists; ++i) {
      const std::vector<float> k = normal_rows(static_cast<int64_t>(n) * D_, 1.0f);
      const std::vector<float> v = normal_rows(static_cast<int64_t>(n) * D_, 1.0f);
      hist.k[i].insert(hist.k[i].end(), k.begin(), k.end());
      hist.v[i].insert(hist.v[i].end(), v.begin(), v.end());
      const int32_t* slots = &meta.write_slots[i * meta.n_tokens + meta.chunk_tok0[ci]];
      cpu::write_kv_pages(k.data(), v.data(), n, 0, slots, D_, B_, store_.data());
    }
  }

  // Queries of one chunk for one (layer, head): the kernel on random tiles of the chunk (as the
  // backend splits work), then every output against the reference.
  void check_chunk(const KvStepMeta& meta, int32_t ci, int64_t seq, int32_t n, int32_t l, int32_t h) {
    const int32_t list = meta.list(ci, l, h);
    const int32_t e0 = meta.indptr[list], e1 = meta.indptr[list + 1];
    ASSERT_TRUE(std::is_sorted(meta.blocks.begin() + e0, meta.blocks.begin() + e1));
    const HeadShard& shard = plan_.at(l, h);
    const int32_t window = test::window_of(c_, l);
    const float scale = 1.0f / std::sqrt(static_cast<float>(D_));
    const int64_t row = static_cast<int64_t>(group_) * D_;
    const std::vector<float> q = normal_rows(n * row, q_scale_);
    std::vector<float> out(n * row, kNaN);
    const int32_t pos0 = meta.chunk_pos0[ci];
    for (int32_t i0 = 0; i0 < n;) {
      const int32_t len = std::min(n - i0, test::uniform(rng_, 1, 2 * B_));
      cpu::paged_attention(&q[i0 * row], len, pos0 + i0, group_, D_, shard, B_, window, &meta.blocks[e0],
                           &meta.pages[e0], e1 - e0, store_.data(), scale, &out[i0 * row]);
      i0 += len;
    }
    const History& hist = hist_.at(seq);
    const size_t hi = static_cast<size_t>(l) * c_.n_kv_heads + h;
    std::vector<double> ref(D_);
    for (int32_t i = 0; i < n; ++i)
      for (int32_t g = 0; g < group_; ++g) {
        reference(&q[i * row + g * D_], pos0 + i, shard, window, scale, hist.k[hi], hist.v[hi], ref);
        double err = 0, mag = 1.0;
        for (int32_t d = 0; d < D_; ++d) {
          const float o = out[i * row + g * D_ + d];
          err = std::isnan(o) ? std::numeric_limits<double>::infinity() : std::max(err, std::abs(o - ref[d]));
          mag = std::max(mag, std::abs(ref[d]));
          if (std::isinf(err)) break;
        }
        max_err_ = std::max(max_err_, err / mag);
        ++n_queries_;
        ASSERT_LE(err, 1e-5 * mag) << "seq " << seq << " layer " << l << " head " << h << " query head " << g
                                   << " t=" << pos0 + i << " shard {sink " << shard.sink << ", local " << shard.local
                                   << ", stride " << shard.stride << ", offset " << shard.offset << "} window "
                                   << window;
      }
  }

  // Dense attention over keys 0..t with the mask, in double.
  void reference(const float* q, int64_t t, const HeadShard& shard, int32_t window, float scale,
                 const std::vector<float>& K, const std::vector<float>& V, std::vector<double>& out) const {
    std::vector<double> w(t + 1, 0.0);
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t s = 0; s <= t; ++s) {
      if (!test::sees(shard, B_, window, t, s)) continue;
      double dot = 0;
      for (int32_t d = 0; d < D_; ++d) dot += static_cast<double>(q[d]) * K[s * D_ + d];
      w[s] = dot * scale;
      m = std::max(m, w[s]);
    }
    double sum = 0;
    std::fill(out.begin(), out.end(), 0.0);
    for (int64_t s = 0; s <= t; ++s) {
      if (!test::sees(shard, B_, window, t, s)) continue;
      const double p = std::exp(w[s] - m);
      sum += p;
      for (int32_t d = 0; d < D_; ++d) out[d] += p * V[s * D_ + d];
    }
    for (double& o : out) o /= sum;
  }

  ModelConfig c_;
  ShardPlan plan_;
  PagedKvCache cache_;
  int32_t B_, D_, group_;
  std::vector<float> store_;
  std::mt19937_64 rng_;
  float q_scale_;
  std::map<int64_t, History> hist_;
  double max_err_ = 0;
  int64_t n_queries_ = 0;
};

// Prefill of `n_prefill` tokens in chunks of 1..3B, then `n_decode` single tokens.
void run_sequence(Harness& hx, int64_t seq, int32_t B, int32_t n_prefill, int32_t n_decode, std::mt19937_64& rng) {
  for (int32_t done = 0; done < n_prefill;) {
    const int32_t n = std::min(n_prefill - done, test::uniform(rng, 1, 3 * B));
    hx.step({{seq, n}});
    if (::testing::Test::HasFatalFailure()) return;
    done += n;
  }
  for (int32_t i = 0; i < n_decode; ++i) {
    hx.step({{seq, 1}});
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// ---- the page layout and the kernel's interface ----

TEST(PagedAttention, PageLayoutPutsKThenVAtEachSlot) {
  const int32_t B = 4, D = 3;
  std::vector<float> store(3 * cpu::page_floats(B, D), 0.0f);
  const float k[2][3] = {{1, 2, 3}, {4, 5, 6}}, v[2][3] = {{7, 8, 9}, {10, 11, 12}};
  const int32_t slots[2] = {2 * B + 1, 0 * B + 3};  // page 2 slot 1, page 0 slot 3
  cpu::write_kv_pages(&k[0][0], &v[0][0], 2, 0, slots, D, B, store.data());
  EXPECT_EQ(store[2 * 2 * B * D + 1 * D + 0], 1);
  EXPECT_EQ(store[2 * 2 * B * D + 1 * D + 2], 3);
  EXPECT_EQ(store[2 * 2 * B * D + B * D + 1 * D + 0], 7);
  EXPECT_EQ(store[0 * 2 * B * D + 3 * D + 1], 5);
  EXPECT_EQ(store[0 * 2 * B * D + B * D + 3 * D + 2], 12);
  EXPECT_EQ(cpu::page_k_row(store.data(), 2, 1, B, D)[1], 2);
  EXPECT_EQ(cpu::page_v_row(store.data(), 0, 3, B, D)[0], 10);
  EXPECT_EQ(std::count(store.begin(), store.end(), 0.0f), static_cast<long>(store.size()) - 12);
}

TEST(PagedAttention, RowStridesGiveTheSameOutputAsPackedRows) {
  // Queries and outputs embedded in wider rows (all query heads of a token), as the backend has them.
  const int32_t B = 8, D = 16, group = 2, n_tok = 5, n_pages = 3;
  std::mt19937_64 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> store(n_pages * cpu::page_floats(B, D));
  for (float& x : store) x = nd(rng);
  const int32_t blocks[3] = {0, 1, 2}, pages[3] = {2, 0, 1};
  const HeadShard shard{1, 1, 0, 0};
  const int64_t wide = 3 * group * D, off = group * D;  // this KV head's heads sit second in a row
  std::vector<float> q(n_tok * group * D), qw(n_tok * wide, kNaN), out(n_tok * group * D), outw(n_tok * wide, 0.0f);
  for (int32_t i = 0; i < n_tok; ++i)
    for (int32_t j = 0; j < group * D; ++j) q[i * group * D + j] = qw[i * wide + off + j] = nd(rng);
  cpu::paged_attention(q.data(), n_tok, 17, group, D, shard, B, 0, blocks, pages, 3, store.data(), 0.25f, out.data());
  cpu::paged_attention(qw.data() + off, n_tok, 17, group, D, shard, B, 0, blocks, pages, 3, store.data(), 0.25f,
                       outw.data() + off, wide, wide);
  for (int32_t i = 0; i < n_tok; ++i)
    for (int32_t j = 0; j < group * D; ++j) ASSERT_EQ(out[i * group * D + j], outw[i * wide + off + j]);
}

TEST(PagedAttention, SkipsMaskedSlotsWithoutReadingThem) {
  // Block 1 is neither a sink, recent, nor on the stride for a query in block 3: its page is NaN,
  // like the future slots of the query's own block; the output must still be finite and exact.
  const int32_t B = 4, D = 4;
  const HeadShard shard{1, 1, 2, 0};  // sink block 0, local 1, stride 2 offset 0: blocks 0, 2, 3
  std::vector<float> store(4 * cpu::page_floats(B, D), kNaN);
  std::vector<float> K(16 * D), V(16 * D);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> nd;
  const int32_t blocks[4] = {0, 1, 2, 3}, pages[4] = {3, 2, 1, 0};
  const int64_t t = 13;  // block 3, slot 1: slots 2, 3 of block 3 are the future
  for (int64_t s = 0; s <= t; ++s) {
    for (int32_t d = 0; d < D; ++d) K[s * D + d] = nd(rng), V[s * D + d] = nd(rng);
    if (s / B == 1) continue;
    const int32_t slot = pages[s / B] * B + static_cast<int32_t>(s % B);
    cpu::write_kv(store.data(), B, D, slot, &K[s * D], &V[s * D]);
  }
  float q[D] = {0.3f, -1.0f, 0.5f, 2.0f}, out[D];
  cpu::paged_attention(q, 1, static_cast<int32_t>(t), 1, D, shard, B, 0, blocks, pages, 4, store.data(), 0.5f, out);
  double w[16] = {}, sum = 0, ref[D] = {};
  for (int64_t s = 0; s <= t; ++s)
    if (shard.attends(t, s, B)) {
      double dot = 0;
      for (int32_t d = 0; d < D; ++d) dot += q[d] * K[s * D + d];
      sum += w[s] = std::exp(0.5 * dot);
    }
  for (int64_t s = 0; s <= t; ++s)
    for (int32_t d = 0; d < D; ++d) ref[d] += w[s] / sum * V[s * D + d];
  for (int32_t d = 0; d < D; ++d) EXPECT_NEAR(out[d], ref[d], 1e-5);
}

// ---- exactness over plans, block sizes, GQA groups and head dims ----

struct Case {
  PlanKind kind;
  bool sinks;
  int32_t B, group, D;
};

std::vector<Case> all_cases() {
  std::vector<Case> cs;
  for (PlanKind k : {PlanKind::Dense, PlanKind::Streaming, PlanKind::Strided, PlanKind::Mixed})
    for (bool sinks : {false, true})
      for (int32_t B : {16, 64})
        for (int32_t group : {1, 3, 4})
          for (int32_t D : {16, 64}) cs.push_back({k, sinks, B, group, D});
  return cs;
}

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  const Case& c = i.param;
  return std::string(test::plan_kind_name(c.kind)) + (c.sinks ? "_sinks" : "_nosinks") + "_B" + std::to_string(c.B) +
         "_g" + std::to_string(c.group) + "_D" + std::to_string(c.D);
}

class PagedAttentionExact : public ::testing::TestWithParam<Case> {};

TEST_P(PagedAttentionExact, ChunkedPrefillThenDecodeMatchesDenseMaskedAttention) {
  const Case& cs = GetParam();
  const uint64_t seed = 1000 + cs.B * 131 + cs.group * 17 + cs.D + static_cast<int>(cs.kind) * 7 + cs.sinks;
  std::mt19937_64 rng(seed);
  const ModelConfig c = test::kv_config(2, 2, cs.group, cs.D);
  const ShardPlan plan = test::random_plan(cs.kind, 2, 2, cs.B, cs.sinks, rng);
  Harness hx(c, plan, 64, seed);
  // 7 blocks of prefill (so strided heads drop blocks mid-sequence), then decode across blocks.
  run_sequence(hx, 1, cs.B, 7 * cs.B + test::uniform(rng, 0, cs.B - 1), cs.B + 3, rng);
  if (HasFatalFailure()) return;
  EXPECT_GT(hx.n_queries(), 0);
  RecordProperty("max_rel_err", std::to_string(hx.max_err()));
  hx.release(1);
  EXPECT_EQ(hx.cache().pool().used_pages(), 0);
}

INSTANTIATE_TEST_SUITE_P(AllPlans, PagedAttentionExact, ::testing::ValuesIn(all_cases()), case_name);

// ---- long decodes, sliding windows, interleaved sequences ----

TEST(PagedAttention, LongDecodeAcrossFortyBlocksMatchesForEveryPlanKind) {
  for (PlanKind kind : {PlanKind::Dense, PlanKind::Streaming, PlanKind::Strided, PlanKind::Mixed}) {
    SCOPED_TRACE(test::plan_kind_name(kind));
    std::mt19937_64 rng(77 + static_cast<int>(kind));
    const ModelConfig c = test::kv_config(2, 2, 4, 16);
    ShardPlan plan = test::random_plan(kind, 2, 2, 16, true, rng);
    Harness hx(c, plan, 200, 99 + static_cast<int>(kind));
    run_sequence(hx, 5, 16, 1, 40 * 16 - 1, rng);  // one token at a time from the first
    if (HasFatalFailure()) return;
    EXPECT_EQ(hx.cache().length(5), 640);
    EXPECT_EQ(hx.cache().pool().used_pages(), PagedKvCache::pages_for_length(c, plan, 640));
  }
}

TEST(PagedAttention, ModelSlidingWindowNotAMultipleOfTheBlockSize) {
  // Layers 0 and 2 are sliding-window layers; windows of 40 (B = 16) and 100 (B = 64).
  for (auto [B, W] : {std::pair{16, 40}, std::pair{64, 100}}) {
    for (PlanKind kind : {PlanKind::Dense, PlanKind::Strided, PlanKind::Mixed}) {
      SCOPED_TRACE(std::string(test::plan_kind_name(kind)) + " B=" + std::to_string(B));
      std::mt19937_64 rng(B * 10 + static_cast<int>(kind));
      const ModelConfig c = test::kv_config(3, 2, 2, 16, W, {true, false, true});
      ShardPlan plan = test::random_plan(kind, 3, 2, B, true, rng);
      Harness hx(c, plan, 200, B + static_cast<int>(kind));
      run_sequence(hx, 9, B, 5 * B + 7, 2 * B + 5, rng);
      if (HasFatalFailure()) return;
      EXPECT_EQ(hx.cache().pool().used_pages(), PagedKvCache::pages_for_length(c, plan, hx.cache().length(9)));
    }
  }
}

TEST(PagedAttention, InterleavedSequencesInOneStepMatch) {
  // Several sequences share each step: some prefill a chunk while others decode; finished ones
  // are released and new ones admitted, so freed pages are reused (and were poisoned meanwhile).
  for (int32_t B : {16, 64}) {
    SCOPED_TRACE("B=" + std::to_string(B));
    std::mt19937_64 rng(4242 + B);
    const ModelConfig c = test::kv_config(3, 2, 3, 16, B + 9, {false, true, false});
    ShardPlan plan = test::random_plan(PlanKind::Mixed, 3, 2, B, true, rng);
    Harness hx(c, plan, 600, 17 + B);
    struct Live {
      int64_t seq;
      int32_t prompt, total;
    };
    std::vector<Live> live;
    int64_t next_seq = 100;
    int64_t finished = 0;
    for (int step = 0; step < 120 && !HasFatalFailure(); ++step) {
      while (live.size() < 4) {
        const int32_t prompt = test::uniform(rng, 1, 4 * B);
        live.push_back({next_seq++, prompt, prompt + test::uniform(rng, 1, 2 * B)});
      }
      std::vector<std::pair<int64_t, int32_t>> chunks;
      for (const Live& s : live) {
        if (test::uniform(rng, 0, 4) == 0) continue;  // not scheduled this step
        const int32_t len = hx.cache().length(s.seq);
        const int32_t n = len < s.prompt ? std::min(s.prompt - len, test::uniform(rng, 1, 3 * B)) : 1;
        chunks.push_back({s.seq, n});
      }
      if (chunks.empty()) continue;
      hx.step(chunks);
      for (size_t i = 0; i < live.size();) {
        if (hx.cache().length(live[i].seq) >= live[i].total) {
          hx.release(live[i].seq);
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
          ++finished;
        } else {
          ++i;
        }
      }
    }
    EXPECT_GE(finished, 4);
    RecordProperty("max_rel_err_B" + std::to_string(B), std::to_string(hx.max_err()));
  }
}

}  // namespace
}  // namespace hs
