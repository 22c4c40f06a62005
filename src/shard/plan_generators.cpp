// Plan generators: all dense, S2-style strided, streaming, and DuoAttention-style mixed. Each
// names its plan with the spec that rebuilds it, so a plan file says where it came from.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "shard/shard_plan.h"

namespace hs {

namespace {

[[noreturn]] void fail(const char* who, const std::string& what) {
  throw std::invalid_argument(std::string(who) + " plan: " + what);
}

void need(bool ok, const char* who, const char* field, int64_t value, const char* rule) {
  if (!ok) fail(who, std::string(field) + " " + std::to_string(value) + " " + rule);
}

void check_shape(const char* who, int32_t n_layers, int32_t n_kv_heads, int32_t block_size) {
  need(n_layers >= 1, who, "n_layers", n_layers, "must be >= 1");
  need(n_kv_heads >= 1, who, "n_kv_heads", n_kv_heads, "must be >= 1");
  need(int64_t{n_layers} * n_kv_heads <= (int64_t{1} << 20), who, "n_layers x n_kv_heads",
       int64_t{n_layers} * n_kv_heads, "is more than 2^20 heads");
  // The same rule as ShardPlan::validate(), checked first so the message names the generator.
  need(block_size >= 16 && block_size <= 128 && (block_size & (block_size - 1)) == 0, who, "block", block_size,
       "must be a power of two in [16, 128]");
}

void check_window(const char* who, int32_t sink, int32_t local) {
  need(sink >= 0, who, "sink", sink, "must be >= 0");
  need(local >= 1, who, "local", local, "must be >= 1 (the query's own block)");
}

// The options were checked up front, so this only guards the generators themselves.
ShardPlan finish(ShardPlan plan) {
  plan.validate();
  return plan;
}

std::string shortest(double x) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

// Appends `x` to a `sep`-separated list.
void append(std::string& list, const char* sep, const std::string& x) {
  if (!list.empty()) list += sep;
  list += x;
}

// "key=value" items joined into "<generator>:a=1,b=2".
std::string spec_name(const std::string& generator, const std::vector<std::string>& items) {
  std::string list;
  for (const auto& i : items) append(list, ",", i);
  return generator + ":" + list;
}

std::string item(const char* key, int64_t value) { return std::string(key) + "=" + std::to_string(value); }

// splitmix64: tiny and fully specified, so that a seed picks the same heads everywhere
// (std::shuffle's use of its engine is left to the standard library).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), by rejection so that no value is favoured.
  uint64_t below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      const uint64_t r = next();
      if (r >= threshold) return r % n;
    }
  }
};

std::vector<int32_t> seeded_permutation(int32_t n, uint64_t seed) {
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  SplitMix64 rng{seed};
  for (int32_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.below(static_cast<uint64_t>(i) + 1)]);
  return order;
}

// Which layers s2_plan strides.
std::vector<bool> s2_strided_layers(int32_t n_layers, const S2Options& o) {
  std::vector<bool> strided(n_layers, true);
  if (!o.strided_layers.empty()) {
    if (o.dense_every != 0 || o.dense_first != 0)
      fail("s2", "strided_layers cannot be combined with dense_every or dense_first");
    std::fill(strided.begin(), strided.end(), false);
    for (int32_t l : o.strided_layers) {
      need(l >= 0 && l < n_layers, "s2", "strided layer", l,
           ("is out of range [0, " + std::to_string(n_layers) + ")").c_str());
      need(!strided[l], "s2", "strided layer", l, "is listed twice");
      strided[l] = true;
    }
    return strided;
  }
  need(o.dense_every >= 0, "s2", "dense_every", o.dense_every, "must be >= 0");
  need(o.dense_first >= 0 && o.dense_first <= n_layers, "s2", "dense_first", o.dense_first,
       ("must be in [0, n_layers = " + std::to_string(n_layers) + "]").c_str());
  for (int32_t l = 0; l < n_layers; ++l)
    if (l < o.dense_first || (o.dense_every > 0 && l % o.dense_every == 0)) strided[l] = false;
  return strided;
}

std::string s2_name(const S2Options& o) {
  std::vector<std::string> items = {item("stride", o.stride), item("local", o.local)};
  if (o.sink) items.push_back(item("sink", o.sink));
  if (o.dense_every) items.push_back(item("dense-every", o.dense_every));
  if (o.dense_first) items.push_back(item("dense-first", o.dense_first));
  if (!o.strided_layers.empty()) {
    std::vector<int32_t> sorted = o.strided_layers;
    std::sort(sorted.begin(), sorted.end());
    std::string list;
    for (int32_t l : sorted) append(list, ";", std::to_string(l));
    items.push_back("strided-layers=" + list);
  }
  items.push_back(item("block", o.block_size));
  return spec_name("s2", items);
}

// Dense flags, layer-major, for mixed_plan.
std::vector<bool> mixed_dense_heads(int32_t n_layers, int32_t n_kv_heads, const MixedOptions& o) {
  const int32_t total = n_layers * n_kv_heads;
  std::vector<bool> dense(total, false);
  if (!o.dense_heads.empty()) {
    for (const auto& [l, h] : o.dense_heads) {
      const std::string head = std::to_string(l) + ":" + std::to_string(h);
      if (l < 0 || l >= n_layers || h < 0 || h >= n_kv_heads)
        fail("mixed", "dense head " + head + " is out of range (" + std::to_string(n_layers) + " layers, " +
                          std::to_string(n_kv_heads) + " kv heads)");
      if (dense[l * n_kv_heads + h]) fail("mixed", "dense head " + head + " is listed twice");
      dense[l * n_kv_heads + h] = true;
    }
    return dense;
  }
  if (!(o.dense_fraction >= 0.0 && o.dense_fraction <= 1.0))  // also rejects NaN
    fail("mixed", "dense_fraction " + shortest(o.dense_fraction) + " must be in [0, 1]");
  const auto n_dense = static_cast<int32_t>(std::llround(o.dense_fraction * total));
  const std::vector<int32_t> order = seeded_permutation(total, o.seed);
  for (int32_t k = 0; k < n_dense; ++k) dense[order[k]] = true;
  return dense;
}

std::string mixed_name(int32_t n_kv_heads, const std::vector<bool>& dense, const MixedOptions& o) {
  std::vector<std::string> items;
  if (!o.dense_heads.empty()) {
    std::string list;
    for (size_t i = 0; i < dense.size(); ++i)
      if (dense[i]) append(list, ";", std::to_string(i / n_kv_heads) + ":" + std::to_string(i % n_kv_heads));
    items.push_back("dense=" + list);
  } else {
    items.push_back("dense-frac=" + shortest(o.dense_fraction));
  }
  items.push_back(item("sink", o.sink));
  items.push_back(item("local", o.local));
  if (o.stride) items.push_back(item("stride", o.stride));
  if (o.dense_heads.empty()) items.push_back("seed=" + std::to_string(o.seed));
  items.push_back(item("block", o.block_size));
  return spec_name("mixed", items);
}

}  // namespace

ShardPlan dense_plan(int32_t n_layers, int32_t n_kv_heads, int32_t block_size) {
  check_shape("dense", n_layers, n_kv_heads, block_size);
  ShardPlan plan(n_layers, n_kv_heads, block_size, HeadShard{0, 1, 1, 0});
  plan.set_name(spec_name("dense", {item("block", block_size)}));
  return finish(std::move(plan));
}

ShardPlan s2_plan(int32_t n_layers, int32_t n_kv_heads, const S2Options& o) {
  check_shape("s2", n_layers, n_kv_heads, o.block_size);
  need(o.stride >= 2, "s2", "stride", o.stride, "must be >= 2 (1 is dense, 0 streaming)");
  check_window("s2", o.sink, o.local);
  const std::vector<bool> strided = s2_strided_layers(n_layers, o);

  ShardPlan plan(n_layers, n_kv_heads, o.block_size, HeadShard{0, 1, 1, 0});
  int64_t k = 0;  // strided layers so far: rotating by it covers every residue across layers
  for (int32_t l = 0; l < n_layers; ++l) {
    if (!strided[l]) continue;
    for (int32_t h = 0; h < n_kv_heads; ++h) {
      const int64_t spread = n_kv_heads < o.stride ? h + k * n_kv_heads : h;
      plan.at(l, h) = HeadShard{o.sink, o.local, o.stride, static_cast<int32_t>(spread % o.stride)};
    }
    ++k;
  }
  plan.set_name(s2_name(o));
  return finish(std::move(plan));
}

ShardPlan streaming_plan(int32_t n_layers, int32_t n_kv_heads, int32_t sink, int32_t local, int32_t block_size) {
  check_shape("streaming", n_layers, n_kv_heads, block_size);
  check_window("streaming", sink, local);
  ShardPlan plan(n_layers, n_kv_heads, block_size, HeadShard{sink, local, 0, 0});
  plan.set_name(spec_name("streaming", {item("sink", sink), item("local", local), item("block", block_size)}));
  return finish(std::move(plan));
}

ShardPlan mixed_plan(int32_t n_layers, int32_t n_kv_heads, const MixedOptions& o) {
  check_shape("mixed", n_layers, n_kv_heads, o.block_size);
  need(o.stride == 0 || o.stride >= 2, "mixed", "stride", o.stride,
       "must be 0 (streaming) or >= 2 (strided); 1 would make every head dense");
  check_window("mixed", o.sink, o.local);
  const std::vector<bool> dense = mixed_dense_heads(n_layers, n_kv_heads, o);

  ShardPlan plan(n_layers, n_kv_heads, o.block_size, HeadShard{0, 1, 1, 0});
  int64_t n = 0;  // non-dense heads so far: any `stride` consecutive ones cover every residue
  for (int32_t i = 0; i < n_layers * n_kv_heads; ++i) {
    if (dense[i]) continue;
    const int32_t offset = o.stride > 1 ? static_cast<int32_t>(n % o.stride) : 0;
    plan.at(i / n_kv_heads, i % n_kv_heads) = HeadShard{o.sink, o.local, o.stride, offset};
    ++n;
  }
  plan.set_name(mixed_name(n_kv_heads, dense, o));
  return finish(std::move(plan));
}

}  // namespace hs
