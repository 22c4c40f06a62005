// Shard plans: for every (layer, KV head), which blocks of the context that head attends and
// keeps. The exact rule (HCS): with blocks of B tokens, block(p) = p / B, a query at position t
// (block i) attends a key at position s (block j) iff
//     s <= t  and  ( j < sink  or  i - j < local  or  (stride > 0 and (j + offset) % stride == 0) )
// stride 1 is a dense head; stride 0 a streaming head (sinks + recent window). The rule is
// monotone in i, so a block that a head stops attending is never needed again: its page is freed.
// A model's own sliding window (Gemma 3's local layers) applies on top: t - s < window as well.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace hs {

struct ModelConfig;

enum class HeadKind { Dense, Strided, Streaming };
const char* head_kind_name(HeadKind k);

struct HeadShard {
  int32_t sink = 0;    // blocks at the start always kept
  int32_t local = 1;   // most recent blocks kept (>= 1: the query's own block)
  int32_t stride = 1;  // 1: every block (dense); 0: none (streaming); n: every n-th block
  int32_t offset = 0;  // in [0, stride) when stride > 1, else 0: block j is on the stride when (j + offset) % stride == 0

  HeadKind kind() const { return stride == 1 ? HeadKind::Dense : stride == 0 ? HeadKind::Streaming : HeadKind::Strided; }
  bool on_stride(int64_t j) const { return stride == 1 || (stride > 1 && (j + offset) % stride == 0); }
  // Block-level rule for query block i and key block j <= i.
  bool attends_block(int64_t i, int64_t j) const { return j < sink || i - j < local || on_stride(j); }
  // Token-level rule (causality included).
  bool attends(int64_t t, int64_t s, int32_t block_size) const {
    return s <= t && attends_block(t / block_size, s / block_size);
  }
  // Blocks kept once the newest token is in block c (blocks 0..c): the rule's count, in closed
  // form (O(1)); 0 when c < 0. The model's own sliding window is not applied here.
  int64_t kept_blocks(int64_t c) const;
  bool operator==(const HeadShard&) const = default;
};

class ShardPlan {
 public:
  ShardPlan() = default;
  ShardPlan(int32_t n_layers, int32_t n_kv_heads, int32_t block_size, HeadShard fill = {});

  int32_t n_layers() const { return n_layers_; }
  int32_t n_kv_heads() const { return n_kv_heads_; }
  int32_t block_size() const { return block_size_; }
  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }

  const HeadShard& at(int32_t layer, int32_t kv_head) const { return heads_[layer * n_kv_heads_ + kv_head]; }
  HeadShard& at(int32_t layer, int32_t kv_head) { return heads_[layer * n_kv_heads_ + kv_head]; }
  const std::vector<HeadShard>& heads() const { return heads_; }  // layer-major
  bool all_dense() const;

  // Throws std::invalid_argument naming the layer, head and field that is out of range, or the
  // count that does not match the model.
  void validate() const;
  void validate_for(const ModelConfig& config) const;

  // JSON form: a default head plus the layers that differ from it, e.g.
  //   {"name": "s2:...", "block_size": 64, "n_layers": 30, "n_kv_heads": 3,
  //    "default": {"sink": 0, "local": 1, "stride": 1, "offset": 0},
  //    "layers": [{"layer": 1, "heads": [{"sink": 1, "local": 4, "stride": 4}, ...]}, ...]}
  // A listed layer gives all n_kv_heads heads; a head's missing fields take the default's, and
  // the default's missing fields take HeadShard{}'s. "name" (default: "custom", or the file's
  // stem for load()), "default" and "layers" are optional.
  // from_json(to_json()) is exact. from_json rejects unknown keys, wrong types and duplicate
  // layers, naming the JSON path ("layers[3].heads[1].stride: expected an integer"), then runs
  // validate().
  nlohmann::json to_json() const;
  static ShardPlan from_json(const nlohmann::json& j);  // throws std::invalid_argument
  // One line per listed layer, so the file stays short and editable. Throws std::runtime_error
  // when the file cannot be written.
  void save(const std::string& path) const;
  // Also rejects duplicate keys in an object; // comments are allowed.
  static ShardPlan load(const std::string& path);       // throws std::invalid_argument naming the file

  bool operator==(const ShardPlan&) const = default;

 private:
  int32_t n_layers_ = 0, n_kv_heads_ = 0, block_size_ = 64;
  std::string name_ = "dense";
  std::vector<HeadShard> heads_;
};

// Generators. All take the model's layer and KV-head counts, name the plan with the spec that
// rebuilds it (plan_from_spec(plan.name(), config) == plan) and throw std::invalid_argument for
// bad options.
ShardPlan dense_plan(int32_t n_layers, int32_t n_kv_heads, int32_t block_size = 64);
// S2-Attention style: strided layers with offsets spread over the KV heads (rotating across
// layers when there are fewer KV heads than the stride, so every block is covered); dense layers
// every `dense_every`-th layer (l % dense_every == 0, so layer 0 is dense; 0: none) and the first
// `dense_first` layers. Head h of the k-th strided layer (k counts strided layers only) gets
// offset (h + k * n_kv_heads) % stride when n_kv_heads < stride, else h % stride: any
// ceil(stride / n_kv_heads) consecutive strided layers together cover every block.
struct S2Options {
  int32_t stride = 8, local = 16, sink = 0, dense_every = 0, dense_first = 0, block_size = 64;
  // When non-empty: exactly these layers are strided and the rest dense (dense_every and
  // dense_first must then be 0). Lets a plan shard only a model's global layers: its
  // sliding-window layers keep a bounded number of blocks anyway.
  std::vector<int32_t> strided_layers;
};
ShardPlan s2_plan(int32_t n_layers, int32_t n_kv_heads, const S2Options& o);
// Streaming everywhere: sinks + recent window.
ShardPlan streaming_plan(int32_t n_layers, int32_t n_kv_heads, int32_t sink, int32_t local, int32_t block_size = 64);
// DuoAttention style: a fraction (or an explicit list "layer:head") of heads dense, the rest
// streaming (or strided when stride > 1: the n-th non-dense head, layer-major, gets offset
// n % stride). By fraction, round(fraction * heads) heads are dense, chosen by a shuffle seeded
// with `seed` that gives the same plan on every platform.
struct MixedOptions {
  double dense_fraction = 0.25;
  std::vector<std::pair<int32_t, int32_t>> dense_heads;  // when non-empty, overrides the fraction
  int32_t sink = 1, local = 16, stride = 0, block_size = 64;
  uint64_t seed = 0;  // which heads are dense when chosen by fraction
};
ShardPlan mixed_plan(int32_t n_layers, int32_t n_kv_heads, const MixedOptions& o);

// A plan from a file path (*.json) or a generator spec:
//   "dense[:block=64]", "s2:stride=8,local=16,sink=0,dense-every=2,dense-first=0,block=64",
//   "s2:...,strided-layers=5;11;17" (or "strided-layers=global": the model's layers without a
//   sliding window), "streaming:sink=1,local=16,block=64",
//   "mixed:dense-frac=0.25,sink=1,local=16,stride=0,seed=0,block=64" (or "mixed:dense=0:1;3:0,...";
//   dense-frac also takes "p/q").
// Omitted keys take the option structs' defaults (streaming and mixed: sink 1, local 16). A
// *.json path that does not exist as given, or a bare name that is no generator, is looked up in
// the plans folder ($HEADSHARD_CONFIGS_DIR/plans, then the source tree's configs/plans).
// Throws std::invalid_argument naming the spec key that is wrong; validates against the model.
ShardPlan plan_from_spec(const std::string& spec, const ModelConfig& config);

}  // namespace hs
