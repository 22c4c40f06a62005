// Helpers shared by the paged KV cache tests: small model configs, random shard plans of each
// kind, and brute-force oracles written from the token-level rule alone (HeadShard::attends and
// the model window), independent of the cache's own bookkeeping and formulas.
#pragma once
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "model/config.h"
#include "shard/shard_plan.h"

namespace hs::test {

inline ModelConfig kv_config(int n_layers, int n_kv_heads, int group, int head_dim, int window = 0,
                             std::vector<bool> local_layers = {}) {
  ModelConfig c;
  c.name = "kv-test";
  c.n_layers = n_layers;
  c.n_kv_heads = n_kv_heads;
  c.n_heads = n_kv_heads * group;
  c.head_dim = head_dim;
  c.d_model = c.n_heads * head_dim;
  c.d_ff = 4;
  c.vocab_size = 4;
  c.context_length = 1 << 20;
  c.sliding_window = window;
  c.layer_is_local = std::move(local_layers);
  return c;
}

inline int32_t window_of(const ModelConfig& c, int32_t layer) { return c.is_local(layer) ? c.sliding_window : 0; }

enum class PlanKind { Dense, Streaming, Strided, Mixed };
inline const char* plan_kind_name(PlanKind k) {
  switch (k) {
    case PlanKind::Dense: return "dense";
    case PlanKind::Streaming: return "streaming";
    case PlanKind::Strided: return "strided";
    default: return "mixed";
  }
}

inline int32_t uniform(std::mt19937_64& rng, int32_t lo, int32_t hi) {  // [lo, hi]
  return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
}

// One random head of a kind; with_sinks false forces sink = 0.
inline HeadShard random_head(HeadKind kind, bool with_sinks, std::mt19937_64& rng) {
  HeadShard h;
  h.sink = with_sinks ? uniform(rng, 1, 2) : 0;
  h.local = uniform(rng, 1, 4);
  switch (kind) {
    case HeadKind::Dense: h.stride = 1; h.offset = 0; break;
    case HeadKind::Streaming: h.stride = 0; h.offset = 0; break;
    case HeadKind::Strided:
      h.stride = uniform(rng, 2, 5);
      h.offset = uniform(rng, 0, h.stride - 1);
      break;
  }
  return h;
}

inline ShardPlan random_plan(PlanKind kind, int32_t n_layers, int32_t n_kv_heads, int32_t block_size, bool with_sinks,
                             std::mt19937_64& rng) {
  ShardPlan p(n_layers, n_kv_heads, block_size);
  p.set_name(plan_kind_name(kind));
  for (int32_t l = 0; l < n_layers; ++l)
    for (int32_t h = 0; h < n_kv_heads; ++h) {
      HeadKind k = HeadKind::Dense;
      if (kind == PlanKind::Streaming) k = HeadKind::Streaming;
      if (kind == PlanKind::Strided) k = HeadKind::Strided;
      if (kind == PlanKind::Mixed) k = static_cast<HeadKind>(uniform(rng, 0, 2));
      p.at(l, h) = random_head(k, with_sinks, rng);
    }
  return p;
}

// Token-level mask of the query at t for the key at s: the HCS rule and the model's window.
inline bool sees(const HeadShard& h, int32_t B, int32_t window, int64_t t, int64_t s) {
  return h.attends(t, s, B) && (window == 0 || t - s < window);
}

// Blocks one head must keep once n_tokens are committed: those holding a key the newest query
// (t = n_tokens - 1) sees, found by checking every key s <= t.
inline std::set<int32_t> brute_kept_blocks(const HeadShard& h, int32_t B, int32_t window, int64_t n_tokens) {
  std::set<int32_t> kept;
  const int64_t t = n_tokens - 1;
  for (int64_t s = 0; s <= t; ++s)
    if (sees(h, B, window, t, s)) kept.insert(static_cast<int32_t>(s / B));
  return kept;
}

inline int64_t brute_pages_for_length(const ModelConfig& c, const ShardPlan& p, int64_t n_tokens) {
  int64_t n = 0;
  for (int32_t l = 0; l < p.n_layers(); ++l)
    for (int32_t h = 0; h < p.n_kv_heads(); ++h)
      n += static_cast<int64_t>(brute_kept_blocks(p.at(l, h), p.block_size(), window_of(c, l), n_tokens).size());
  return n;
}

}  // namespace hs::test
