#include "backend/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/ops.h"

namespace hs::cpu {

void write_kv_pages(const float* k, const float* v, int32_t n_tok, int64_t row_stride, const int32_t* write_slots,
                    int32_t head_dim, int32_t block_size, float* page_data) {
  if (row_stride == 0) row_stride = head_dim;
  for (int32_t i = 0; i < n_tok; ++i)
    write_kv(page_data, block_size, head_dim, write_slots[i], k + i * row_stride, v + i * row_stride);
}

namespace {

// Per-thread scratch, grown on demand and kept: the scores of the keys one query attends, per
// query head, and where each key's V row lives (so the second pass need not redo the rule).
struct Scratch {
  std::vector<float> scores;        // [key][group]
  std::vector<const float*> vrows;  // [key]
  std::vector<float> max, sum;      // [group]
};

Scratch& scratch(int64_t max_keys, int32_t group) {
  thread_local Scratch s;
  if (static_cast<int64_t>(s.vrows.size()) < max_keys) s.vrows.resize(max_keys);
  if (static_cast<int64_t>(s.scores.size()) < max_keys * group) s.scores.resize(max_keys * group);
  if (static_cast<int32_t>(s.max.size()) < group) {
    s.max.resize(group);
    s.sum.resize(group);
  }
  return s;
}

// Pass 1 for one query at position t: scores of every key the rule lets it see, and their running
// maximum per query head. Returns the number of keys.
int64_t score_keys(const float* q, int64_t t, int32_t group, int32_t D, const HeadShard& shard, int32_t B,
                   int32_t window, const int32_t* blocks, const int32_t* pages, int32_t n_entries,
                   const float* page_data, float scale, Scratch& sc) {
  const int64_t c = t / B;
  const int64_t first_key = window > 0 ? std::max<int64_t>(t - window + 1, 0) : 0;
  std::fill_n(sc.max.data(), group, -std::numeric_limits<float>::infinity());
  int64_t n = 0;
  for (int32_t e = 0; e < n_entries; ++e) {
    const int64_t j = blocks[e];
    const int64_t block_first = j * B, block_last = block_first + B - 1;
    if (block_first > t) break;            // ascending: the rest of the list is in the future
    if (block_last < first_key) continue;  // wholly before the model's window
    if (!shard.attends_block(c, j)) continue;
    const int64_t s_end = std::min(block_last, t);
    for (int64_t s = std::max(block_first, first_key); s <= s_end; ++s) {
      const int32_t slot = static_cast<int32_t>(s - block_first);
      const float* k = page_k_row(page_data, pages[e], slot, B, D);
      float* row = &sc.scores[n * group];
      for (int32_t g = 0; g < group; ++g) {
        row[g] = scale * dot(q + static_cast<int64_t>(g) * D, k, D);
        sc.max[g] = std::max(sc.max[g], row[g]);
      }
      sc.vrows[n++] = page_v_row(page_data, pages[e], slot, B, D);
    }
  }
  return n;
}

// Pass 2: out[g] = sum_k exp(score - max) * V_k / sum_k exp(score - max).
void weigh_values(int64_t n_keys, int32_t group, int32_t D, Scratch& sc, float* out) {
  std::fill_n(out, static_cast<int64_t>(group) * D, 0.0f);
  std::fill_n(sc.sum.data(), group, 0.0f);
  for (int64_t k = 0; k < n_keys; ++k) {
    const float* v = sc.vrows[k];
    for (int32_t g = 0; g < group; ++g) {
      const float p = std::exp(sc.scores[k * group + g] - sc.max[g]);
      sc.sum[g] += p;
      float* o = out + static_cast<int64_t>(g) * D;
      for (int32_t d = 0; d < D; ++d) o[d] += p * v[d];
    }
  }
  if (n_keys == 0) return;
  for (int32_t g = 0; g < group; ++g) {
    const float inv = 1.0f / sc.sum[g];
    float* o = out + static_cast<int64_t>(g) * D;
    for (int32_t d = 0; d < D; ++d) o[d] *= inv;
  }
}

}  // namespace

void paged_attention(const float* q, int32_t n_tok, int32_t pos0, int32_t group, int32_t head_dim,
                     const HeadShard& shard, int32_t block_size, int32_t window, const int32_t* blocks,
                     const int32_t* pages, int32_t n_entries, const float* page_data, float scale, float* out,
                     int64_t q_row_stride, int64_t out_row_stride) {
  if (q_row_stride == 0) q_row_stride = static_cast<int64_t>(group) * head_dim;
  if (out_row_stride == 0) out_row_stride = static_cast<int64_t>(group) * head_dim;
  Scratch& sc = scratch(static_cast<int64_t>(n_entries) * block_size, group);
  for (int32_t i = 0; i < n_tok; ++i) {
    const int64_t t = static_cast<int64_t>(pos0) + i;
    const int64_t n = score_keys(q + i * q_row_stride, t, group, head_dim, shard, block_size, window, blocks, pages,
                                 n_entries, page_data, scale, sc);
    weigh_values(n, group, head_dim, sc, out + i * out_row_stride);
  }
}

}  // namespace hs::cpu
