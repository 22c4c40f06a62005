#include "cpu_reference.h"

#include "backend/cpu/paged_attention.h"

namespace hs::test {

void cpu_paged_attention(const float* q, int32_t n_tok, int32_t pos0, int32_t group, int32_t head_dim,
                         const RefShard& s, int32_t block_size, int32_t window, const int32_t* blocks,
                         const int32_t* pages, int32_t n_entries, const float* page_data, float scale, float* out,
                         int64_t q_row_stride, int64_t out_row_stride) {
  HeadShard h;
  h.sink = s.sink;
  h.local = s.local;
  h.stride = s.stride;
  h.offset = s.offset;
  cpu::paged_attention(q, n_tok, pos0, group, head_dim, h, block_size, window, blocks, pages, n_entries, page_data,
                       scale, out, q_row_stride, out_row_stride);
}

}  // namespace hs::test
