#include "shard/shard_plan.h"

#include <algorithm>

namespace hs {

const char* head_kind_name(HeadKind k) {
  switch (k) {
    case HeadKind::Dense: return "dense";
    case HeadKind::Strided: return "strided";
    default: return "streaming";
  }
}

int64_t HeadShard::kept_blocks(int64_t c) const {
  int64_t n = 0;
  for (int64_t j = 0; j <= c; ++j) n += attends_block(c, j);
  return n;
}

ShardPlan::ShardPlan(int32_t n_layers, int32_t n_kv_heads, int32_t block_size, HeadShard fill)
    : n_layers_(n_layers), n_kv_heads_(n_kv_heads), block_size_(block_size),
      heads_(static_cast<size_t>(n_layers) * n_kv_heads, fill) {}

bool ShardPlan::all_dense() const {
  return std::all_of(heads_.begin(), heads_.end(), [](const HeadShard& h) { return h.kind() == HeadKind::Dense; });
}

ShardPlan dense_plan(int32_t n_layers, int32_t n_kv_heads, int32_t block_size) {
  return ShardPlan(n_layers, n_kv_heads, block_size, HeadShard{0, 1, 1, 0});
}

}  // namespace hs
