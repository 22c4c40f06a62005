// C ABI over the attention kernels for scripts (ctypes): libheadshard_kernels.so. A plan handle
// owns its device work items and workspace; runs take device pointers and a CUDA stream.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "sharded_attention.h"

// Outside any anonymous namespace: the extern "C" functions take it, and must stay exported.
// Flat mirror of PagedAttentionArgs: 8-byte fields first, then 4-byte ones (easy to mirror in
// ctypes).
struct HsAttnArgs {
  const void* q;
  void* out;
  const void* kv_pool;
  const int32_t* indptr;
  const int32_t* blocks;
  const int32_t* pages;
  const int32_t* chunk_pos0;
  const int32_t* chunk_tok0;
  const void* shards;  // ShardParams[n_kv_heads] (4 x int32 each), device
  int64_t q_row_stride, out_row_stride, kv_pool_pages;
  int32_t n_layers, layer, n_kv_heads, group, head_dim, block_size, window;
  float scale;
};

namespace {

using namespace hs::kernels;

PagedAttentionArgs to_args(const HsAttnArgs& x) {
  PagedAttentionArgs a;
  a.q = x.q;
  a.out = x.out;
  a.kv_pool = x.kv_pool;
  a.kv_pool_pages = x.kv_pool_pages;
  a.indptr = x.indptr;
  a.blocks = x.blocks;
  a.pages = x.pages;
  a.chunk_pos0 = x.chunk_pos0;
  a.chunk_tok0 = x.chunk_tok0;
  a.shards = static_cast<const ShardParams*>(x.shards);
  a.q_row_stride = x.q_row_stride;
  a.out_row_stride = x.out_row_stride;
  a.n_layers = x.n_layers;
  a.layer = x.layer;
  a.n_kv_heads = x.n_kv_heads;
  a.group = x.group;
  a.head_dim = x.head_dim;
  a.block_size = x.block_size;
  a.window = x.window;
  a.scale = x.scale;
  return a;
}

struct DecodeHandle {
  DecodePlan plan;
  DecodeWorkItem* items = nullptr;
  void* workspace = nullptr;
};

struct PrefillHandle {
  std::vector<PrefillWorkItem> host;
  PrefillWorkItem* items = nullptr;
  int kv_heads_together = 1;  // PrefillParams::kv_heads_together
};

}  // namespace

extern "C" {

int hs_decode_slots(int head_dim) { return decode_slots(head_dim); }

// Returns nullptr on failure.
void* hs_decode_plan(const int32_t* indptr_host, const int32_t* decode_chunks, int n_decode_chunks, int n_layers,
                     int n_kv_heads, int block_size, int group, int head_dim, int slots, int min_split_tokens) {
  auto* h = new DecodeHandle;
  DecodePlanOptions o;
  o.slots = slots > 0 ? slots : decode_slots(head_dim);
  o.lone_slots = decode_lone_slots(head_dim);
  if (slots < 0) o.lone_slots = std::min(o.lone_slots, -slots);  // plan for a smaller one-block-per-SM grid
  if (min_split_tokens > 0) o.min_split_tokens = min_split_tokens;
  plan_decode(indptr_host, nullptr, decode_chunks, n_decode_chunks, n_layers, n_kv_heads, block_size, o, h->plan);
  const size_t ws = decode_workspace_bytes(h->plan, group, head_dim);
  if (cudaMalloc(&h->items, std::max<size_t>(h->plan.items.size(), 1) * sizeof(DecodeWorkItem)) != cudaSuccess ||
      cudaMemcpy(h->items, h->plan.items.data(), h->plan.items.size() * sizeof(DecodeWorkItem),
                 cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMalloc(&h->workspace, ws) != cudaSuccess || cudaMemset(h->workspace, 0, ws) != cudaSuccess) {
    if (h->items) cudaFree(h->items);
    if (h->workspace) cudaFree(h->workspace);
    delete h;
    return nullptr;
  }
  return h;
}

// info[0] items of layer 0, info[1] max partial slots, info[2] largest item (entries), info[3] splits
// of the first list, info[4] whether the plan is lone, info[5] whether it is two-stage.
void hs_decode_plan_info(void* handle, int* info) {
  auto* h = static_cast<DecodeHandle*>(handle);
  const auto& p = h->plan;
  info[0] = p.layer_begin.size() > 1 ? p.layer_begin[1] - p.layer_begin[0] : 0;
  info[1] = p.max_partials;
  info[2] = p.items.empty() ? 0 : p.items[0].e_end - p.items[0].e_begin;
  info[3] = p.items.empty() ? 0 : p.items[0].n_splits;
  info[4] = p.lone;
  info[5] = p.two_stage;
}

int hs_decode_run(void* handle, const HsAttnArgs* args, void* stream) {
  auto* h = static_cast<DecodeHandle*>(handle);
  DecodeParams p;
  p.a = to_args(*args);
  const int l = args->layer;
  p.items = h->items + h->plan.layer_begin[l];
  p.n_items = h->plan.layer_begin[l + 1] - h->plan.layer_begin[l];
  p.workspace = h->workspace;
  p.max_partials = h->plan.max_partials;
  p.lone = h->plan.lone;
  p.two_stage = h->plan.two_stage;
  return int(decode_attention(p, static_cast<cudaStream_t>(stream)));
}

void hs_decode_free(void* handle) {
  auto* h = static_cast<DecodeHandle*>(handle);
  if (!h) return;
  cudaFree(h->items);
  cudaFree(h->workspace);
  delete h;
}

void* hs_prefill_plan(const int32_t* chunk_ids, int n_ids, const int32_t* pos0_host, const int32_t* tok0_host,
                      int head_dim) {
  auto* h = new PrefillHandle;
  plan_prefill(chunk_ids, n_ids, pos0_host, tok0_host, head_dim, h->host);
  if (cudaMalloc(&h->items, std::max<size_t>(h->host.size(), 1) * sizeof(PrefillWorkItem)) != cudaSuccess ||
      cudaMemcpy(h->items, h->host.data(), h->host.size() * sizeof(PrefillWorkItem), cudaMemcpyHostToDevice) !=
          cudaSuccess) {
    if (h->items) cudaFree(h->items);
    delete h;
    return nullptr;
  }
  return h;
}

int hs_prefill_run(void* handle, const HsAttnArgs* args, void* stream) {
  auto* h = static_cast<PrefillHandle*>(handle);
  PrefillParams p;
  p.a = to_args(*args);
  p.items = h->items;
  p.n_items = int(h->host.size());
  p.kv_heads_together = h->kv_heads_together;
  return int(prefill_attention(p, static_cast<cudaStream_t>(stream)));
}

// The grid order of the handle's later runs (PrefillParams::kv_heads_together).
void hs_prefill_set_order(void* handle, int kv_heads_together) {
  static_cast<PrefillHandle*>(handle)->kv_heads_together = kv_heads_together;
}

void hs_prefill_free(void* handle) {
  auto* h = static_cast<PrefillHandle*>(handle);
  if (!h) return;
  cudaFree(h->items);
  delete h;
}

int hs_write_kv(const void* k, const void* v, int64_t k_row_stride, int64_t v_row_stride, void* kv_pool,
                const int32_t* write_slots, int n_tokens, int n_kv_heads, int head_dim, int block_size, void* stream) {
  KvWriteParams p;
  p.k = k;
  p.v = v;
  p.k_row_stride = k_row_stride;
  p.v_row_stride = v_row_stride;
  p.kv_pool = kv_pool;
  p.write_slots = write_slots;
  p.n_tokens = n_tokens;
  p.n_kv_heads = n_kv_heads;
  p.head_dim = head_dim;
  p.block_size = block_size;
  return int(write_kv(p, static_cast<cudaStream_t>(stream)));
}

void hs_set_variant(int decode, int prefill) { set_kernel_variant(decode, prefill); }

const char* hs_error_string(int code) { return cudaGetErrorString(cudaError_t(code)); }

}  // extern "C"
