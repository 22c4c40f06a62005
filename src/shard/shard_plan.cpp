// The HCS rule's counts and a plan's validation. JSON lives in plan_json.cpp, generators in
// plan_generators.cpp, spec parsing in plan_spec.cpp.
#include "shard/shard_plan.h"

#include <algorithm>
#include <stdexcept>

#include "model/config.h"

namespace hs {

const char* head_kind_name(HeadKind k) {
  switch (k) {
    case HeadKind::Dense: return "dense";
    case HeadKind::Strided: return "strided";
    default: return "streaming";
  }
}

// Multiples of `stride` in [0, n) for n >= 0.
static int64_t multiples_below(int64_t n, int64_t stride) { return (n + stride - 1) / stride; }

// The kept blocks are the union of the sinks [0, sink), the window [c - local + 1, c] and the
// blocks on the stride. When sinks and window meet, that is every block; otherwise it is both
// plus the stride's blocks in the gap between them. A closed form because the cache asks for it
// per (layer, head) on every admission decision.
int64_t HeadShard::kept_blocks(int64_t c) const {
  if (c < 0) return 0;
  const int64_t sinks_end = std::min<int64_t>(sink, c + 1);        // sinks: [0, sinks_end)
  const int64_t window_begin = std::max<int64_t>(0, c - local + 1);  // window: [window_begin, c]
  if (window_begin <= sinks_end) return c + 1;
  int64_t in_gap = 0;  // on-stride blocks in [sinks_end, window_begin)
  if (stride == 1) {
    in_gap = window_begin - sinks_end;
  } else if (stride > 1) {
    // j is on the stride iff j + offset is a multiple of stride.
    in_gap = multiples_below(window_begin + offset, stride) - multiples_below(sinks_end + offset, stride);
  }
  return sinks_end + (c + 1 - window_begin) + in_gap;
}

ShardPlan::ShardPlan(int32_t n_layers, int32_t n_kv_heads, int32_t block_size, HeadShard fill)
    : n_layers_(n_layers), n_kv_heads_(n_kv_heads), block_size_(block_size),
      heads_(static_cast<size_t>(std::max(n_layers, 0)) * std::max(n_kv_heads, 0), fill) {}

bool ShardPlan::all_dense() const {
  return std::all_of(heads_.begin(), heads_.end(), [](const HeadShard& h) { return h.kind() == HeadKind::Dense; });
}

static void fail(const std::string& what) { throw std::invalid_argument("shard plan: " + what); }

// The first field of `h` that is out of range, as "<field> <value> must ...", or "" when none.
static std::string head_problem(const HeadShard& h) {
  const std::string off = "offset " + std::to_string(h.offset);
  if (h.sink < 0) return "sink " + std::to_string(h.sink) + " must be >= 0";
  if (h.local < 1) return "local " + std::to_string(h.local) + " must be >= 1 (the query's own block)";
  if (h.stride < 0) return "stride " + std::to_string(h.stride) + " must be >= 0";
  if (h.stride > 1 && (h.offset < 0 || h.offset >= h.stride))
    return off + " must be in [0, " + std::to_string(h.stride) + ")";
  if (h.stride <= 1 && h.offset != 0) return off + " must be 0 when stride is " + std::to_string(h.stride);
  return "";
}

void ShardPlan::validate() const {
  if (n_layers_ < 1) fail("n_layers " + std::to_string(n_layers_) + " must be >= 1");
  if (n_kv_heads_ < 1) fail("n_kv_heads " + std::to_string(n_kv_heads_) + " must be >= 1");
  // Pages are B tokens; kernels tile by powers of two, and the design fixes 16..128.
  const bool pow2 = (block_size_ & (block_size_ - 1)) == 0;
  if (block_size_ < 16 || block_size_ > 128 || !pow2)
    fail("block_size " + std::to_string(block_size_) + " must be a power of two in [16, 128]");
  const size_t expected = static_cast<size_t>(n_layers_) * n_kv_heads_;
  if (heads_.size() != expected)
    fail(std::to_string(heads_.size()) + " heads for " + std::to_string(n_layers_) + " layers x " +
         std::to_string(n_kv_heads_) + " kv heads (expected " + std::to_string(expected) + ")");
  for (int32_t l = 0; l < n_layers_; ++l) {
    for (int32_t h = 0; h < n_kv_heads_; ++h) {
      const std::string problem = head_problem(at(l, h));
      if (!problem.empty()) fail("layer " + std::to_string(l) + ", kv head " + std::to_string(h) + ": " + problem);
    }
  }
}

void ShardPlan::validate_for(const ModelConfig& config) const {
  validate();
  const std::string who = "shard plan '" + name_ + "'";
  const std::string model = config.name.empty() ? "the model" : "the model '" + config.name + "'";
  if (n_layers_ != config.n_layers)
    throw std::invalid_argument(who + " has " + std::to_string(n_layers_) + " layers but " + model + " has " +
                                std::to_string(config.n_layers));
  if (n_kv_heads_ != config.n_kv_heads)
    throw std::invalid_argument(who + " has " + std::to_string(n_kv_heads_) + " kv heads per layer but " + model +
                                " has " + std::to_string(config.n_kv_heads));
}

}  // namespace hs
