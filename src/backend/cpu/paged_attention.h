// Attention through the per-head sharded, paged KV cache, on the CPU: the reference that the GPU
// kernels must reproduce, and what the CPU backend runs for every (layer, KV head) each step.
#pragma once
#include <cstdint>

#include "shard/shard_plan.h"

namespace hs::cpu {

// Page storage (the paged KV layout): one float32 array for the whole pool. Page p holds the K rows of its B slots at
// data + p * 2*B*D and the V rows right after, at data + p * 2*B*D + B*D; slot s (token position
// pos % B) is at + s*D within each. A write slot (KvStepMeta::write_slots) is page * B + slot.
inline int64_t page_floats(int32_t block_size, int32_t head_dim) { return 2LL * block_size * head_dim; }
inline const float* page_k_row(const float* data, int32_t page, int32_t slot, int32_t block_size, int32_t head_dim) {
  return data + page * page_floats(block_size, head_dim) + static_cast<int64_t>(slot) * head_dim;
}
inline const float* page_v_row(const float* data, int32_t page, int32_t slot, int32_t block_size, int32_t head_dim) {
  return page_k_row(data, page, slot, block_size, head_dim) + static_cast<int64_t>(block_size) * head_dim;
}

// Stores one token's K and V rows (D floats each) at a write slot (page * B + pos % B).
inline void write_kv(float* page_data, int32_t block_size, int32_t head_dim, int32_t write_slot, const float* k,
                     const float* v) {
  float* kd = page_data + (write_slot / block_size) * page_floats(block_size, head_dim) +
              static_cast<int64_t>(write_slot % block_size) * head_dim;
  float* vd = kd + static_cast<int64_t>(block_size) * head_dim;
  for (int32_t d = 0; d < head_dim; ++d) {
    kd[d] = k[d];
    vd[d] = v[d];
  }
}

// Stores the K and V rows of n_tok tokens of one (layer, KV head) at their write slots: row i is
// k + i * row_stride (D floats; row_stride 0 means D), likewise v, and goes to write_slots[i].
void write_kv_pages(const float* k, const float* v, int32_t n_tok, int64_t row_stride, const int32_t* write_slots,
                    int32_t head_dim, int32_t block_size, float* page_data);

// Attention of the queries of one chunk for one (layer, KV head): all `group` query heads that
// share the KV head, reading K/V only through that head's page list.
//   q:   [n_tok][group][D], row i (token pos0 + i) at q + i * q_row_stride (0 means group*D)
//   out: the same shape, row i at out + i * out_row_stride (0 means group*D)
//   blocks, pages: the head's list (n_entries, blocks ascending), as in KvStepMeta
// For the query at position t = pos0 + i, the key at position s (block blocks[e], slot s % B of
// pages[e]) counts iff s <= t, shard.attends(t, s, B), and (window == 0 or t - s < window).
// Out = softmax(scale * q.k) over those keys (float, max-subtracted) times their V. Blocks wholly
// in the future, outside the window, or not attended by the query's block are skipped without
// reading them, and so are masked slots: their storage may hold anything, even NaN. Every query
// must see at least its own key (always true for a valid shard and list); else its output is 0.
// Thread-safe (scratch is per thread); no allocation once the scratch has grown.
void paged_attention(const float* q, int32_t n_tok, int32_t pos0, int32_t group, int32_t head_dim,
                     const HeadShard& shard, int32_t block_size, int32_t window, const int32_t* blocks,
                     const int32_t* pages, int32_t n_entries, const float* page_data, float scale, float* out,
                     int64_t q_row_stride = 0, int64_t out_row_stride = 0);

}  // namespace hs::cpu
