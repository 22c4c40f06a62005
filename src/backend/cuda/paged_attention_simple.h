// A simple, exact paged attention for the CUDA backend: the device twin of
// cpu::paged_attention (src/backend/cpu/paged_attention.h), for prefill chunks and decode tokens
// alike. It favours being obviously right over being fast: the backend runs the sharded kernels
// of kernels/ instead wherever they support the shape, and this one elsewhere or when
// HEADSHARD_ATTENTION=simple.
//
// For the token t of the step (its query heads at q + t * q_stride + h * D, float32) in chunk c,
// at position p = pos[t], KV head h's list is l = (c * n_layers + layer) * n_kv_heads + h, with
// entries [list_begin[l], list_end[l]) of (blocks[e], pages[e]), blocks ascending. A key at
// position s (slot s % B of the entry's page) counts iff s <= p, the head's shard attends it
// (block j < sink, or (p / B) - j < local, or j on the stride), and, when window > 0, p - s < window.
// out[t][h * D + d] = softmax over those keys of scale * q.k, times their V (float32 online
// softmax, stored as bf16); 0 when no key counts. Masked or unwritten slots are never read.
// Each query head of a GQA group is one warp of the block for (token, KV head), so the group
// shares its K/V reads through L1. Requires head_dim <= 256 and n_heads / n_kv_heads <= 32.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hs::cuda {

struct PagedAttentionParams {
  const float* q;
  int64_t q_stride;
  __nv_bfloat16* out;
  int64_t out_stride;
  const __nv_bfloat16* pages;  // the pool: page p at pages + p * 2 * B * D
  const int32_t* pos;          // [n_tokens]
  const int32_t* chunk;        // [n_tokens]: the token's chunk
  const int32_t* list_begin;
  const int32_t* list_end;
  const int32_t* blocks;
  const int32_t* page_ids;
  const int4* shards;  // this layer's KV heads: {sink, local, stride, offset}
  int n_tokens, n_heads, n_kv_heads, head_dim, block_size, n_layers, layer, window;
  float scale;
};

void paged_attention_simple(const PagedAttentionParams& p, cudaStream_t s);

}  // namespace hs::cuda
