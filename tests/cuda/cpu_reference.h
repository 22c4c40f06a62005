// The CPU reference (hs::cpu::paged_attention) behind plain types, so that CUDA tests compiled by
// nvcc as C++17 need no engine headers (those are C++20).
#pragma once
#include <cstdint>

namespace hs::test {

struct RefShard {
  int32_t sink = 0, local = 1, stride = 1, offset = 0;
};

// hs::cpu::paged_attention with HeadShard{sink, local, stride, offset}; see its header.
void cpu_paged_attention(const float* q, int32_t n_tok, int32_t pos0, int32_t group, int32_t head_dim,
                         const RefShard& shard, int32_t block_size, int32_t window, const int32_t* blocks,
                         const int32_t* pages, int32_t n_entries, const float* page_data, float scale, float* out,
                         int64_t q_row_stride, int64_t out_row_stride);

}  // namespace hs::test
