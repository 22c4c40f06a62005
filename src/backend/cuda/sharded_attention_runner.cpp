#include "backend/cuda/sharded_attention_runner.h"

#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/model_kernels.h"
#include "util/thread_pool.h"

namespace hs::cuda {

namespace {

int32_t next_pow2(int32_t n) {
  int32_t p = 1;
  while (p < n) p *= 2;
  return p;
}

}  // namespace

std::string ShardedAttentionRunner::unsupported(const ModelConfig& c, int32_t block_size) {
  if (c.head_dim != 64 && c.head_dim != 128 && c.head_dim != 256)
    return "head_dim " + std::to_string(c.head_dim) + " (the kernels take 64, 128 or 256)";
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || c.n_heads / c.n_kv_heads > 16)
    return "a GQA group above 16 query heads";
  if (block_size < 16 || block_size > 128 || (block_size & (block_size - 1)) != 0)
    return "block size " + std::to_string(block_size) + " (the kernels take a power of two in [16, 128])";
  return {};
}

void ShardedAttentionRunner::configure(const ModelConfig& c, int32_t block_size) {
  c_ = c;
  block_size_ = block_size;
  options_ = {};
  options_.slots = std::max(1, kernels::decode_slots(c.head_dim));
  options_.lone_slots = kernels::decode_lone_slots(c.head_dim);
  uploaded_items_ = 0;
  zeroed_ = {};
  options_.parallel_for = [](int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    ThreadPool::global().parallel_for(n, grain, fn);
  };
  HS_CUDA_CHECK(cudaGetLastError());
}

bool ShardedAttentionRunner::plan(const StepShape& shape, const StepInputs& in, HostCopies& copies) {
  const int32_t* tok0 = in.host_chunk_tok0();
  decode_chunks_.clear();
  prefill_chunks_.clear();
  for (int32_t ch = 0; ch < shape.n_chunks; ++ch)
    (tok0[ch + 1] - tok0[ch] == 1 ? decode_chunks_ : prefill_chunks_).push_back(ch);

  kernels::plan_decode(in.host_list_begin(), in.host_list_end(), decode_chunks_.data(),
                       static_cast<int32_t>(decode_chunks_.size()), c_.n_layers, c_.n_kv_heads, block_size_, options_,
                       decode_);
  int32_t widest = 0;
  for (int l = 0; l < c_.n_layers; ++l)
    widest = std::max(widest, decode_.layer_begin[l + 1] - decode_.layer_begin[l]);
  capacity_ = widest > 0 ? next_pow2(widest) : 0;
  // A grid planned to run one block per multiprocessor must stay within that count.
  if (widest <= options_.lone_slots) capacity_ = std::min(capacity_, options_.lone_slots);
  n_groups_ = decode_.n_groups;
  kernels::plan_prefill(prefill_chunks_.data(), static_cast<int32_t>(prefill_chunks_.size()), in.host_chunk_pos0(),
                        tok0, c_.head_dim, prefill_);

  bool moved = false;
  const size_t n_items = decode_.items.size(), n_begins = decode_.layer_begin.size();
  if (n_items > 0) {
    moved |= d_items_.grow_to(n_items);
    moved |= d_layer_begin_.grow_to(n_begins);
    // Partials of up to `capacity_` items per layer (a fixed layout for a graph of this class).
    kernels::DecodePlan layout;
    layout.max_partials = capacity_;
    layout.n_groups = n_groups_;
    moved |= workspace_.grow_to(kernels::decode_workspace_bytes(layout, c_.n_heads / c_.n_kv_heads, c_.head_dim));
    if (moved) {  // the new buffers hold no plan and no zeroed counters
      uploaded_items_ = 0;
      zeroed_ = {};
    }
    // A decode step's plan changes only when a list gains a page or a sequence comes or goes: at
    // batch 1, one step in 64 (block size 64). Until then the device keeps the last one, which the
    // pinned buffers still hold (they are written only to upload a plan).
    const bool same = n_items == uploaded_items_ && n_begins == uploaded_begins_ &&
                      std::equal(decode_.layer_begin.begin(), decode_.layer_begin.end(), h_layer_begin_.get()) &&
                      std::memcmp(decode_.items.data(), h_items_.get(), n_items * sizeof(decode_.items[0])) == 0;
    if (!same) {
      h_items_.grow_to(n_items);
      h_layer_begin_.grow_to(n_begins);
      // (2 MB a step at 256 sequences of an 8B model: in pieces of 512 KB across the threads)
      ThreadPool::global().parallel_for(static_cast<int64_t>(n_items), 16384, [&](int64_t b, int64_t e) {
        std::copy(decode_.items.begin() + b, decode_.items.begin() + e, h_items_.get() + b);
      });
      std::copy(decode_.layer_begin.begin(), decode_.layer_begin.end(), h_layer_begin_.get());
      copies.add_records(h_items_.get(), d_items_.get(), n_items);
      copies.add(h_layer_begin_.get(), d_layer_begin_.get(), static_cast<int64_t>(n_begins));
      uploaded_items_ = n_items;
      uploaded_begins_ = n_begins;
    }
  }
  if (!prefill_.empty()) {
    h_prefill_.grow_to(prefill_.size());
    std::copy(prefill_.begin(), prefill_.end(), h_prefill_.get());
    moved |= d_prefill_.grow_to(prefill_.size());
    copies.add_records(h_prefill_.get(), d_prefill_.get(), prefill_.size());
  }
  return moved;
}

void ShardedAttentionRunner::zero_counters(cudaStream_t s) {
  if (capacity_ == 0) return;
  // The workspace holds capacity_ partial outputs ([group][D] floats each), their LSEs ([group]),
  // then the merge counters, which must start at zero. The merging blocks leave them so, and only
  // the decode kernel uses the workspace: the counters need zeroing when they move (the capacity
  // class sets where they lie, and another class's partials may have been written there) or when
  // a step has more groups than were zeroed.
  if (zeroed_.capacity == capacity_ && zeroed_.groups >= n_groups_) return;
  const size_t counters_at = size_t(capacity_) * (c_.n_heads / c_.n_kv_heads) * (c_.head_dim + 1) * sizeof(float);
  HS_CUDA_CHECK(cudaMemsetAsync(workspace_.get() + counters_at, 0, size_t(n_groups_) * sizeof(int32_t), s));
  zeroed_ = {capacity_, n_groups_};
}

void ShardedAttentionRunner::run(int layer, const __nv_bfloat16* q, __nv_bfloat16* out, const __nv_bfloat16* pool,
                                 int64_t n_pages, const int4* shards, const StepInputs& in, cudaStream_t s) const {
  kernels::PagedAttentionArgs a;
  a.q = q;
  a.out = out;
  a.kv_pool = pool;
  a.kv_pool_pages = n_pages;
  a.indptr = in.list_begin();
  a.list_end = in.list_end();
  a.blocks = in.blocks();
  a.pages = in.pages();
  a.chunk_pos0 = in.chunk_pos0();
  a.chunk_tok0 = in.chunk_tok0();
  static_assert(sizeof(kernels::ShardParams) == sizeof(int4), "shards are {sink, local, stride, offset}");
  a.shards = reinterpret_cast<const kernels::ShardParams*>(shards);
  a.n_layers = c_.n_layers;
  a.layer = layer;
  a.n_kv_heads = c_.n_kv_heads;
  a.group = c_.n_heads / c_.n_kv_heads;
  a.head_dim = c_.head_dim;
  a.block_size = block_size_;
  a.window = c_.is_local(layer) ? c_.sliding_window : 0;
  a.scale = c_.softmax_scale();

  if (capacity_ > 0) {
    kernels::DecodeParams p;
    p.a = a;
    p.items = d_items_.get();
    p.item_range = d_layer_begin_.get() + layer;
    p.n_items = capacity_;
    p.workspace = workspace_.get();
    p.max_partials = capacity_;
    p.lone = decode_.lone;
    p.two_stage = decode_.two_stage;
    HS_CUDA_CHECK(kernels::decode_attention(p, s));
  }
  if (!prefill_.empty()) {
    kernels::PrefillParams p;
    p.a = a;
    p.items = d_prefill_.get();
    p.n_items = static_cast<int32_t>(prefill_.size());
    HS_CUDA_CHECK(kernels::prefill_attention(p, s));
  }
}

}  // namespace hs::cuda
