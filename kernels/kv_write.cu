// K/V write: the new tokens' (already rotated) K and V rows into their page slots.
#include <cuda_bf16.h>

#include "sharded_attention.h"

namespace hs::kernels {
namespace {

// One thread per 16-byte chunk of a (token, KV head) row; K and V together.
__global__ void write_kv_kernel(const KvWriteParams p) {
  const int cpr = p.head_dim / 8;
  const int64_t total = int64_t(p.n_tokens) * p.n_kv_heads * cpr;
  const int64_t ks = p.k_row_stride ? p.k_row_stride : int64_t(p.n_kv_heads) * p.head_dim;
  const int64_t vs = p.v_row_stride ? p.v_row_stride : int64_t(p.n_kv_heads) * p.head_dim;
  const __nv_bfloat16* k = static_cast<const __nv_bfloat16*>(p.k);
  const __nv_bfloat16* v = static_cast<const __nv_bfloat16*>(p.v);
  __nv_bfloat16* pool = static_cast<__nv_bfloat16*>(p.kv_pool);
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(idx % cpr);
    const int64_t rest = idx / cpr;
    const int h = int(rest % p.n_kv_heads);
    const int i = int(rest / p.n_kv_heads);
    const int slot = p.write_slots[int64_t(h) * p.n_tokens + i];
    if (slot < 0) continue;
    const int page = slot / p.block_size, s = slot % p.block_size;
    __nv_bfloat16* dst = pool + int64_t(page) * 2 * p.block_size * p.head_dim + int64_t(s) * p.head_dim + c * 8;
    const uint4 kk = *reinterpret_cast<const uint4*>(k + i * ks + h * p.head_dim + c * 8);
    const uint4 vv = *reinterpret_cast<const uint4*>(v + i * vs + h * p.head_dim + c * 8);
    *reinterpret_cast<uint4*>(dst) = kk;
    *reinterpret_cast<uint4*>(dst + int64_t(p.block_size) * p.head_dim) = vv;
  }
}

}  // namespace

cudaError_t write_kv(const KvWriteParams& p, cudaStream_t stream) {
  if (p.head_dim % 8 != 0 || p.block_size <= 0 || p.n_kv_heads <= 0) return cudaErrorInvalidValue;
  if (p.n_tokens == 0) return cudaSuccess;
  const int64_t total = int64_t(p.n_tokens) * p.n_kv_heads * (p.head_dim / 8);
  const int threads = 256;
  const int blocks = int(std::min<int64_t>((total + threads - 1) / threads, 65535));
  write_kv_kernel<<<blocks, threads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace hs::kernels
