// Decode attention through the per-head sharded page lists: one query token per chunk.
//
// One thread block per work item: (chunk, KV head, a run of list entries). All `group` query
// heads of the KV head sit in the rows of one 16-row mma tile, so each page is read once per KV
// head. The entries are streamed in tiles of 64 tokens (K and V) through a cp.async pipeline of
// 2..4 stages; each of the 4 warps takes 16 tokens of a tile (S = Q K^T, online softmax, O += P V
// with mma.sync m16n8k16, bf16 in, fp32 accumulate) and the warps merge at the end. Slots the
// query may not see (causality in its own block, the model window, a block the rule no longer
// attends) are never read: cp.async zero-fills them and their scores are -inf.
//
// A list cut into several items (split-K / flash-decoding) writes normalized partial outputs and
// their log-sum-exp to the workspace; the last item of the group to finish (an atomic counter)
// merges them and resets the counter, so one launch does the whole layer.
#include <algorithm>
#include <cmath>
#include <mutex>

#include "attention_common.cuh"
#include "pdl.cuh"

namespace hs::kernels {
namespace detail {

constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = 4;
constexpr int kDecodeTile = 64;  // tokens per stage; 16 per warp

// Variant 0: 2..4 stages (two blocks per SM at D = 128); variant 1 (D = 128): 6 stages, one block
// per SM, more bytes in flight per block. set_kernel_variant() picks.
template <int D, int V>
struct DecodeCfg {
  static constexpr int kStages = D == 256 ? 2 : (D == 128 ? (V == 1 ? 6 : 3) : 4);
  static constexpr int kTileElems = kDecodeTile * D;
  static constexpr size_t kStageBytes = size_t(kStages) * 2 * kTileElems * sizeof(__nv_bfloat16);
  static constexpr size_t kSmem = kStageBytes + 16 * D * sizeof(__nv_bfloat16) + kStages * kDecodeTile;
  static_assert(kStageBytes >= size_t(kDecodeWarps) * 16 * D * sizeof(float), "merge scratch must fit");
  static_assert(kStageBytes >= 256 * 16 * sizeof(float), "split weights must fit");
};

template <int D, int V>
__global__ void __launch_bounds__(kDecodeThreads) decode_kernel(const DecodeParams p) {
  using Cfg = DecodeCfg<D, V>;
  constexpr int S = Cfg::kStages;
  constexpr int TILE = kDecodeTile;
  constexpr int CPR = D / 8;                          // 16-byte chunks per row
  constexpr int ROWS_PER_PASS = kDecodeThreads / CPR; // rows one pass of the block fills
  constexpr int PASSES = TILE / ROWS_PER_PASS;
  static_assert(kDecodeThreads % CPR == 0 && TILE % ROWS_PER_PASS == 0, "tile shape");

  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Vs = Ks + S * Cfg::kTileElems;
  __nv_bfloat16* Qs = Vs + S * Cfg::kTileElems;
  uint8_t* valid = reinterpret_cast<uint8_t*>(Qs + 16 * D);
  __shared__ float red_m[kDecodeWarps][16], red_l[kDecodeWarps][16], tot_m[16], tot_l[16];
  __shared__ int is_last;

  pdl_begin();
  const PagedAttentionArgs& a = p.a;
  int item = blockIdx.x;
  if (p.item_range) {
    item += p.item_range[0];
    if (item >= p.item_range[1]) return;
  }
  const DecodeWorkItem it = p.items[item];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int G = a.group;
  const int B = a.block_size;
  const int logB = __ffs(B) - 1;
  const ShardParams sh = a.shards[it.kv_head];
  const int t = a.chunk_pos0[it.chunk];
  const int tok = a.chunk_tok0[it.chunk];
  const int qblock = t >> logB;
  const int first_key = a.window > 0 ? max(t - a.window + 1, 0) : 0;
  const __nv_bfloat16* pool = static_cast<const __nv_bfloat16*>(a.kv_pool);
  const int64_t page_elems = 2LL * B * D;
  const int e0 = it.e_begin, e1 = it.e_end;
  const int n_tiles = (((e1 - e0) << logB) + TILE - 1) / TILE;
  const int n_q_heads = a.n_kv_heads * G;
  const int64_t q_stride = a.q_row_stride ? a.q_row_stride : int64_t(n_q_heads) * D;
  const int64_t o_stride = a.out_row_stride ? a.out_row_stride : int64_t(n_q_heads) * D;
  const int head0 = it.kv_head * G;

  // Q rows of the group (rows >= G are zero).
  {
    const __nv_bfloat16* qrow = static_cast<const __nv_bfloat16*>(a.q) + int64_t(tok) * q_stride + int64_t(head0) * D;
    for (int c = tid; c < 16 * CPR; c += kDecodeThreads) {
      const int r = c / CPR, ch = c % CPR;
      const bool ok = r < G;
      cp_async16(Qs + swz<D>(r, ch), ok ? qrow + r * D + ch * 8 : qrow, ok);
    }
  }

  // Page metadata of this thread's rows of the next tile to issue, loaded one tile ahead so that
  // the block -> page lookups never stall the copies.
  const int col = tid % CPR;
  const int r0 = tid / CPR;
  int mblk[PASSES], mpg[PASSES];
  auto fetch_meta = [&](int k) {
#pragma unroll
    for (int ps = 0; ps < PASSES; ++ps) {
      const int e = e0 + ((k * TILE + r0 + ps * ROWS_PER_PASS) >> logB);
      mblk[ps] = -1;
      mpg[ps] = 0;
      if (k < n_tiles && e < e1) {
        mblk[ps] = __ldg(a.blocks + e);
        mpg[ps] = __ldg(a.pages + e);
      }
    }
  };
  auto load_tile = [&](int k, int st) {  // uses the metadata fetched for tile k
    __nv_bfloat16* kd = Ks + st * Cfg::kTileElems;
    __nv_bfloat16* vd = Vs + st * Cfg::kTileElems;
#pragma unroll
    for (int ps = 0; ps < PASSES; ++ps) {
      const int r = r0 + ps * ROWS_PER_PASS;
      const int slot = (k * TILE + r) & (B - 1);
      const int j = mblk[ps];
      const int s = (j << logB) + slot;
      const bool ok = j >= 0 && s <= t && s >= first_key && attends_block(sh, qblock, j);
      const __nv_bfloat16* src = ok ? pool + int64_t(mpg[ps]) * page_elems + int64_t(slot) * D + col * 8 : pool;
      cp_async16(kd + swz<D>(r, col), src, ok);
      cp_async16(vd + swz<D>(r, col), ok ? src + B * D : src, ok);
      if (col == 0) valid[st * TILE + r] = ok;
    }
  };

#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    fetch_meta(s);
    if (s < n_tiles) load_tile(s, s);
    cp_async_commit();
  }
  fetch_meta(S - 1);

  const float sl = a.scale * kLog2e;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;

  // Tile k+S-1 is issued before waiting for tile k, so S-1..S tiles stay in flight.
  for (int k = 0; k < n_tiles; ++k) {
    __syncthreads();  // every warp is done with tile k-1: its stage takes tile k+S-1
    {
      const int kn = k + S - 1;
      if (kn < n_tiles) {
        load_tile(kn, kn % S);
        fetch_meta(kn + 1);
      }
      cp_async_commit();
    }
    cp_async_wait<S - 1>();  // this thread's copies of tile k have landed
    __syncthreads();         // and everyone's
    const int st = k % S;
    const uint8_t* vt = valid + st * TILE + warp * 16;
    if (!__any_sync(0xffffffffu, vt[lane & 15] != 0)) continue;  // none of this warp's tokens

    const __nv_bfloat16* Kt = Ks + st * Cfg::kTileElems;
    const __nv_bfloat16* Vt = Vs + st * Cfg::kTileElems;
    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4], kb[4];
      ldmatrix_x4(qa, Qs + swz<D>(((lane >> 3) & 1) * 8 + (lane & 7), kk * 2 + (lane >> 4)));
      ldmatrix_x4(kb, Kt + swz<D>(warp * 16 + (lane >> 4) * 8 + (lane & 7), kk * 2 + ((lane >> 3) & 1)));
      mma_bf16(s[0], qa, kb[0], kb[1]);
      mma_bf16(s[1], qa, kb[2], kb[3]);
    }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = nt * 8 + (lane & 3) * 2 + (i & 1);
        const float v = vt[col] ? s[nt][i] * sl : -INFINITY;
        s[nt][i] = v;
        mx[i >> 1] = fmaxf(mx[i >> 1], v);
      }
    float base[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float mn = fmaxf(m[r], mx[r]);
      base[r] = mn == -INFINITY ? 0.f : mn;
      alpha[r] = exp2f(m[r] - base[r]);
      m[r] = mn;
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float pv = exp2f(s[nt][i] - base[i >> 1]);
        s[nt][i] = pv;
        rs[i >> 1] += pv;
      }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      o[dn][0] *= alpha[0];
      o[dn][1] *= alpha[0];
      o[dn][2] *= alpha[1];
      o[dn][3] *= alpha[1];
    }
    const uint32_t pa[4] = {pack_bf16(s[0][0], s[0][1]), pack_bf16(s[0][2], s[0][3]), pack_bf16(s[1][0], s[1][1]),
                            pack_bf16(s[1][2], s[1][3])};
#pragma unroll
    for (int n2 = 0; n2 < D / 16; ++n2) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, Vt + swz<D>(warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), n2 * 2 + (lane >> 4)));
      mma_bf16(o[2 * n2], pa, vb[0], vb[1]);
      mma_bf16(o[2 * n2 + 1], pa, vb[2], vb[3]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the stage buffers become merge scratch

  // Merge the four warps: row r of the tile is query head head0 + r.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  if ((lane & 3) == 0) {
    red_m[warp][lane >> 2] = m[0];
    red_m[warp][(lane >> 2) + 8] = m[1];
    red_l[warp][lane >> 2] = l[0];
    red_l[warp][(lane >> 2) + 8] = l[1];
  }
  __syncthreads();
  if (tid < 16) {
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) M = fmaxf(M, red_m[w][tid]);
    float L = 0.f;
    if (M != -INFINITY)
#pragma unroll
      for (int w = 0; w < kDecodeWarps; ++w)
        if (red_m[w][tid] != -INFINITY) L += red_l[w][tid] * exp2f(red_m[w][tid] - M);
    tot_m[tid] = M;
    tot_l[tid] = L;
  }
  __syncthreads();
  float* Os = reinterpret_cast<float*>(smem);  // [warp][16][D]
  {
    const int r0 = lane >> 2;
    const float f0 = m[0] == -INFINITY ? 0.f : exp2f(m[0] - tot_m[r0]);
    const float f1 = m[1] == -INFINITY ? 0.f : exp2f(m[1] - tot_m[r0 + 8]);
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      const int c = dn * 8 + (lane & 3) * 2;
      *reinterpret_cast<float2*>(Os + (warp * 16 + r0) * D + c) = make_float2(o[dn][0] * f0, o[dn][1] * f0);
      *reinterpret_cast<float2*>(Os + (warp * 16 + r0 + 8) * D + c) = make_float2(o[dn][2] * f1, o[dn][3] * f1);
    }
  }
  __syncthreads();

  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out) + int64_t(tok) * o_stride + int64_t(head0) * D;
  // Four consecutive outputs per thread (G * D is a multiple of 4).
  auto warp_sum4 = [&](int idx) {
    const int g = idx / D, d = idx % D;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float4 x = *reinterpret_cast<const float4*>(Os + (w * 16 + g) * D + d);
      acc.x += x.x, acc.y += x.y, acc.z += x.z, acc.w += x.w;
    }
    const float L = tot_l[g], inv = L > 0.f ? 1.f / L : 0.f;
    return make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
  };
  auto store4 = [&](int idx, float4 v) {
    const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
    uint2 u;
    u.x = *reinterpret_cast<const uint32_t*>(&lo);
    u.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(out + idx) = u;
  };
  if (it.n_splits == 1) {
    for (int idx = tid * 4; idx < G * D; idx += kDecodeThreads * 4) store4(idx, warp_sum4(idx));
    return;
  }

  // Split: write this part, then the last part of the group to finish merges them all.
  float* part_o = static_cast<float*>(p.workspace);
  float* part_lse = part_o + int64_t(p.max_partials) * G * D;
  int* counters = reinterpret_cast<int*>(part_lse + int64_t(p.max_partials) * G);
  const int slot = it.partial0 + it.split;
  for (int idx = tid * 4; idx < G * D; idx += kDecodeThreads * 4)
    __stcg(reinterpret_cast<float4*>(part_o + int64_t(slot) * G * D + idx), warp_sum4(idx));
  if (tid < G) {
    const float L = tot_l[tid];
    part_lse[int64_t(slot) * G + tid] = L > 0.f ? tot_m[tid] + log2f(L) : -INFINITY;
  }
  __threadfence();
  __syncthreads();
  if (tid == 0) is_last = atomicAdd(counters + it.group_id, 1) == it.n_splits - 1;
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  const int ns = it.n_splits;
  float* wts = reinterpret_cast<float*>(smem);  // [ns][G]; Os is no longer needed
  for (int x = tid; x < ns * G; x += kDecodeThreads) wts[x] = __ldcg(part_lse + int64_t(it.partial0) * G + x);
  __syncthreads();
  // Each warp turns the log-sum-exps of its heads g (g % 4 == warp) into weights, lanes across
  // the splits.
  for (int g = warp; g < G; g += kDecodeWarps) {
    float M = -INFINITY;
    for (int sp = lane; sp < ns; sp += 32) M = fmaxf(M, wts[sp * G + g]);
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float W = 0.f;
    for (int sp = lane; sp < ns; sp += 32) {
      const float w = M == -INFINITY ? 0.f : exp2f(wts[sp * G + g] - M);
      wts[sp * G + g] = w;
      W += w;
    }
    for (int o = 16; o > 0; o >>= 1) W += __shfl_xor_sync(0xffffffffu, W, o);
    if (lane == 0) tot_l[g] = W;
  }
  __syncthreads();
  const float* pbase = part_o + int64_t(it.partial0) * G * D;
  for (int idx = tid * 4; idx < G * D; idx += kDecodeThreads * 4) {
    const int g = idx / D;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    int sp = 0;
    for (; sp + 8 <= ns; sp += 8) {  // eight loads in flight
      float4 x[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) x[u] = __ldcg(reinterpret_cast<const float4*>(pbase + int64_t(sp + u) * G * D + idx));
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const float w = wts[(sp + u) * G + g];
        acc.x += w * x[u].x, acc.y += w * x[u].y, acc.z += w * x[u].z, acc.w += w * x[u].w;
      }
    }
    for (; sp < ns; ++sp) {
      const float4 x = __ldcg(reinterpret_cast<const float4*>(pbase + int64_t(sp) * G * D + idx));
      const float w = wts[sp * G + g];
      acc.x += w * x.x, acc.y += w * x.y, acc.z += w * x.z, acc.w += w * x.w;
    }
    const float W = tot_l[g], inv = W > 0.f ? 1.f / W : 0.f;
    store4(idx, make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv));
  }
  if (tid == 0) counters[it.group_id] = 0;  // ready for the next launch
}

template <int D, int V>
const void* decode_kernel_ptr() {
  static std::once_flag once;
  std::call_once(once, [] {
    cudaFuncSetAttribute(decode_kernel<D, V>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                         int(DecodeCfg<D, V>::kSmem));
  });
  return reinterpret_cast<const void*>(decode_kernel<D, V>);
}

template <int D, int V>
cudaError_t launch_decode(const DecodeParams& p, cudaStream_t stream) {
  decode_kernel_ptr<D, V>();
  return launch(decode_kernel<D, V>, p.n_items, kDecodeThreads, DecodeCfg<D, V>::kSmem, stream, p);
}

template <int D, int V>
int32_t slots_for() {
  int dev = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, decode_kernel_ptr<D, V>(), kDecodeThreads,
                                                    DecodeCfg<D, V>::kSmem) != cudaSuccess)
    return 0;
  return sms * std::max(per_sm, 1);
}

}  // namespace detail

int32_t decode_slots(int32_t head_dim) {
  return detail::with_head_dim(head_dim, 0, int32_t{0}, [](auto D, auto V) { return detail::slots_for<D, V>(); });
}

cudaError_t decode_attention(const DecodeParams& p, cudaStream_t stream) {
  const int B = p.a.block_size;
  if (p.a.group < 1 || p.a.group > 16 || B < 16 || B > 128 || (B & (B - 1)) != 0) return cudaErrorInvalidValue;
  if (p.n_items == 0) return cudaSuccess;
  return detail::with_head_dim(p.a.head_dim, 0, cudaErrorInvalidValue,
                               [&](auto D, auto V) { return detail::launch_decode<D, V>(p, stream); });
}

}  // namespace hs::kernels
