#include "backend/cuda/paged_attention_simple.h"

#include <cmath>

#include "backend/cuda/cuda_check.h"

namespace hs::cuda {

namespace {

constexpr int kPerLane = 8;  // head dims per lane: 8 * 32 = 256

__device__ bool attends_block(int4 shard, int c, int j) {
  // shard = {sink, local, stride, offset}: the HCS rule of shard_plan.h for query block c, key block j <= c.
  const int sink = shard.x, local = shard.y, stride = shard.z, offset = shard.w;
  return j < sink || c - j < local || stride == 1 || (stride > 1 && (j + offset) % stride == 0);
}

// grid (n_tokens, n_kv_heads), one warp per query head of the group.
__global__ void paged_attention_kernel(PagedAttentionParams p) {
  const int t = blockIdx.x, kv = blockIdx.y;
  const int lane = threadIdx.x % 32, g = threadIdx.x / 32;
  const int group = p.n_heads / p.n_kv_heads, head = kv * group + g;
  const int D = p.head_dim, B = p.block_size;

  const float* q = p.q + t * p.q_stride + static_cast<int64_t>(head) * D;
  float qr[kPerLane], acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qr[i] = d < D ? q[d] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  const int pos = p.pos[t], c = pos / B;
  const int first_key = p.window > 0 ? max(pos - p.window + 1, 0) : 0;
  const int list = (p.chunk[t] * p.n_layers + p.layer) * p.n_kv_heads + kv;
  const int e1 = p.list_end[list];
  const int4 shard = p.shards[kv];
  for (int e = p.list_begin[list]; e < e1; ++e) {
    const int j = p.blocks[e];
    const int block_first = j * B, block_last = block_first + B - 1;
    if (block_first > pos) break;  // ascending: the rest of the list is in the future
    if (block_last < first_key || !attends_block(shard, c, j)) continue;
    const __nv_bfloat16* page = p.pages + static_cast<int64_t>(p.page_ids[e]) * 2 * B * D;
    const int s_end = min(block_last, pos);
    for (int s = max(block_first, first_key); s <= s_end; ++s) {
      const __nv_bfloat16* k = page + static_cast<int64_t>(s - block_first) * D;
      const __nv_bfloat16* v = k + static_cast<int64_t>(B) * D;
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < D) dot += qr[i] * __bfloat162float(k[d]);
      }
      for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
      const float score = p.scale * dot;
      // Online softmax: rescale what was summed so far to the new maximum.
      const float m_new = fmaxf(m, score);
      const float correction = expf(m - m_new);  // 0 for the first key (m = -inf)
      const float w = expf(score - m_new);
      l = l * correction + w;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < D) acc[i] = acc[i] * correction + w * __bfloat162float(v[d]);
      }
      m = m_new;
    }
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  __nv_bfloat16* out = p.out + t * p.out_stride + static_cast<int64_t>(head) * D;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < D) out[d] = __float2bfloat16_rn(acc[i] * inv);
  }
}

}  // namespace

void paged_attention_simple(const PagedAttentionParams& p, cudaStream_t s) {
  if (p.n_tokens == 0) return;
  if (p.head_dim > 32 * kPerLane || p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads != 0 ||
      p.n_heads / p.n_kv_heads > 32)
    throw std::invalid_argument("paged_attention_simple: unsupported shape (head_dim <= 256, group <= 32)");
  const dim3 grid(p.n_tokens, p.n_kv_heads);
  paged_attention_kernel<<<grid, 32 * (p.n_heads / p.n_kv_heads), 0, s>>>(p);
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace hs::cuda
