// Decode attention through the per-head sharded page lists: one query token per chunk.
//
// One thread block per work item: (chunk, KV head, a run of list entries). All `group` query
// heads of the KV head sit in the rows of one 16-row mma tile, so each page is read once per KV
// head. The entries are streamed in tiles of 64 tokens (K and V); each of 4 consumer warps takes
// 16 tokens of a tile (S = Q K^T, online softmax, O += P V with mma.sync m16n8k16, bf16 in, fp32
// accumulate) and the warps merge at the end.
//
// Two kernels stream the tiles (set_kernel_variant picks; both give the same results):
//   0 (default) the copy engine: a fifth warp looks the pages up and issues one bulk tensor copy
//     (TMA, 128-byte swizzle) per 64 columns of a page's K and V rows into a ring of stages, each
//     with a "full" and an "empty" mbarrier, so the consumer warps only compute. Whole boxes are
//     copied: the producer publishes which tokens of a tile the query may see, the consumers mask
//     the others' scores to -inf and zero their V rows (a slot no query may see may hold anything,
//     NaN included). Blocks the rule no longer attends are not copied at all. A grid of at most
//     one block per multiprocessor (decode_lone_slots), or any grid of a plan of long lists
//     (DecodeParams::lone, in waves of such blocks), runs an instance that takes 192 KB of
//     shared memory (half of it stages), one block per SM, and copies long items' K and V rows
//     in address order instead (kLoneRowsMinTiles; variant 4: every item); larger grids run two
//     blocks per SM, and grids of many waves three (DecodeInstance; variant 2: always two, 3:
//     always three).
//   1 cp.async: every thread copies 16-byte pieces of the tile through a 2..4-stage pipeline and
//     zero-fills the slots the query may not see.
// At head_dim 128 and pages of 64, every grid that is not lone runs a third kernel under variant 0,
// the shape of cuDNN's: 128-token tiles by cp.async, K and V single-buffered and released apart, 32
// tokens a warp (decode_tiles128_kernel; variants 4 and 10 keep the copy engine there, variant 9
// takes lone grids too).
//
// A list cut into several items (split-K / flash-decoding) writes normalized partial outputs and
// their log-sum-exp to the workspace; the last item of the group to finish (an atomic counter)
// merges them and resets the counter, so one launch does the whole layer.
#include <cudaTypedefs.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <utility>

#include "attention_common.cuh"
#include "pdl.cuh"
#include "tma.cuh"

namespace hs::kernels {
namespace detail {

constexpr int kDecodeThreads = 128;  // the consumer warps
constexpr int kDecodeWarps = 4;
constexpr int kDecodeTile = 64;  // tokens per stage; 16 per warp
constexpr unsigned kFull = 0xffffffffu;
// Row stride (floats) of the consumer warps' partial outputs in decode_finish's scratch.
template <int D>
constexpr int kOsStride = D + 8;
// Parts whose loads the merging block keeps in flight at once.
constexpr int kMergeBatch = 16;

// ---- what both kernels end with ---------------------------------------------------------------
// Merges the consumer warps' running softmax state (m, l per row pair, o fragments), then writes
// the item's output, or its partial and, in the last split of the group to finish, the merge.
// Every thread of the block calls it (threads >= kDecodeThreads only join the barriers); scratch
// is shared memory of at least 4 * 16 * kOsStride<D> floats that nothing else uses now.
template <int D>
__device__ __forceinline__ void decode_finish(const DecodeParams& p, const DecodeWorkItem& it, float (&o)[D / 8][4],
                                              const float (&m)[2], float (&l)[2], unsigned char* scratch) {
  __shared__ float red_m[kDecodeWarps][16], red_l[kDecodeWarps][16], tot_m[16], tot_l[16];
  const PagedAttentionArgs& a = p.a;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const bool worker = tid < kDecodeThreads;
  const int G = a.group;
  const int64_t o_stride = a.out_stride();
  const int head0 = it.kv_head * G;
  const int tok = a.chunk_tok0[it.chunk];

  // Merge the four warps: row r of the tile is query head head0 + r.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(kFull, l[r], 1);
    l[r] += __shfl_xor_sync(kFull, l[r], 2);
  }
  if (worker && (lane & 3) == 0) {
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
  // [warp][16][kOsStride]: rows padded by 8 floats, so that a warp's float2 stores (rows r0 and
  // four column pairs per instruction) fall in distinct banks; unpadded they conflicted 8 ways.
  float* Os = reinterpret_cast<float*>(scratch);
  if (worker) {
    const int r0 = lane >> 2;
    const float f0 = m[0] == -INFINITY ? 0.f : exp2f(m[0] - tot_m[r0]);
    const float f1 = m[1] == -INFINITY ? 0.f : exp2f(m[1] - tot_m[r0 + 8]);
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      const int c = dn * 8 + (lane & 3) * 2;
      *reinterpret_cast<float2*>(Os + (warp * 16 + r0) * kOsStride<D> + c) = make_float2(o[dn][0] * f0, o[dn][1] * f0);
      *reinterpret_cast<float2*>(Os + (warp * 16 + r0 + 8) * kOsStride<D> + c) =
          make_float2(o[dn][2] * f1, o[dn][3] * f1);
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
      const float4 x = *reinterpret_cast<const float4*>(Os + (w * 16 + g) * kOsStride<D> + d);
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
  const int first = worker ? tid * 4 : G * D;  // threads past the consumers write nothing
  if (it.n_splits == 1) {
    for (int idx = first; idx < G * D; idx += kDecodeThreads * 4) store4(idx, warp_sum4(idx));
    return;
  }

  // Split: write this part, then the last part of the group to finish merges them all.
  float* part_o = static_cast<float*>(p.workspace);
  float* part_lse = part_o + int64_t(p.max_partials) * G * D;
  int* counters = reinterpret_cast<int*>(part_lse + int64_t(p.max_partials) * G);
  const int slot = it.partial0 + it.split;
  for (int idx = first; idx < G * D; idx += kDecodeThreads * 4)
    __stcg(reinterpret_cast<float4*>(part_o + int64_t(slot) * G * D + idx), warp_sum4(idx));
  if (tid < G) {
    const float L = tot_l[tid];
    part_lse[int64_t(slot) * G + tid] = L > 0.f ? tot_m[tid] + log2f(L) : -INFINITY;
  }
  // The block's writes, gathered by the barrier, are released by one thread's increment, which
  // in the last part also acquires the others' before the block reads them (the pattern of
  // cooperative groups' grid barrier, with an acquire-release atomic in place of its two
  // sequentially consistent fences).
  __syncthreads();
  int last = 0;
  if (tid == 0) {
    int before;
    asm volatile("atom.add.acq_rel.gpu.s32 %0, [%1], 1;\n" : "=r"(before) : "l"(counters + it.group_id) : "memory");
    last = before == it.n_splits - 1;
  }
  // The barrier itself hands thread 0's answer to the block (a shared flag written before a
  // __syncthreads() and read after it was reported by racecheck: kernels/NOTES.md, session 20).
  if (!__syncthreads_or(last)) return;
  // Each thread merges its own four outputs: it loads the log-sum-exps of its head and its
  // columns of every part together (up to kMergeBatch parts at once, so one round trip to the L2
  // for up to that many splits) and weighs them itself, online across batches.
  const int ns = it.n_splits;
  const float* pbase = part_o + int64_t(it.partial0) * G * D;
  const float* lbase = part_lse + int64_t(it.partial0) * G;
  for (int idx = first; idx < G * D; idx += kDecodeThreads * 4) {
    const int g = idx / D;
    float M = -INFINITY, W = 0.f;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int sp0 = 0; sp0 < ns; sp0 += kMergeBatch) {
      float lse[kMergeBatch];
      float4 x[kMergeBatch];
#pragma unroll
      for (int u = 0; u < kMergeBatch; ++u) {
        const bool ok = sp0 + u < ns;
        lse[u] = ok ? __ldcg(lbase + int64_t(sp0 + u) * G + g) : -INFINITY;
        x[u] = ok ? __ldcg(reinterpret_cast<const float4*>(pbase + int64_t(sp0 + u) * G * D + idx))
                  : make_float4(0.f, 0.f, 0.f, 0.f);
      }
      float Mn = M;
#pragma unroll
      for (int u = 0; u < kMergeBatch; ++u) Mn = fmaxf(Mn, lse[u]);
      if (Mn == -INFINITY) continue;  // no part so far saw a key
      const float c = exp2f(M - Mn);  // 0 while M is -inf
      W *= c;
      acc.x *= c, acc.y *= c, acc.z *= c, acc.w *= c;
#pragma unroll
      for (int u = 0; u < kMergeBatch; ++u) {
        const float w = exp2f(lse[u] - Mn);  // 0 for a part without keys
        W += w;
        acc.x += w * x[u].x, acc.y += w * x[u].y, acc.z += w * x[u].z, acc.w += w * x[u].w;
      }
      M = Mn;
    }
    const float inv = W > 0.f ? 1.f / W : 0.f;
    store4(idx, make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv));
  }
  if (tid == 0) counters[it.group_id] = 0;  // ready for the next launch
}

// One warp's scores of a tile (NT groups of 8 tokens): those of tokens the query may not see (bit
// i of `visible`: token i may be seen) set to -inf, then the online softmax step over them, O
// rescaled. Lazy (a warp-uniform `visible`): a tile the warp sees whole skips the mask, and O is
// rescaled only when some row's maximum moved in the warp (else every factor is exactly 1).
template <int D, int NT, bool Lazy = false>
__device__ __forceinline__ void mask_softmax(float (&s)[NT][4], uint32_t visible, float sl, float (&m)[2],
                                             float (&l)[2], float (&o)[D / 8][4]) {
  const int lane = threadIdx.x & 31;
  float mx[2] = {-INFINITY, -INFINITY};
  if (Lazy && visible == kFull) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) mx[i >> 1] = fmaxf(mx[i >> 1], s[nt][i]);
  } else {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int col = nt * 8 + (lane & 3) * 2 + (i & 1);
        const float v = (visible >> col) & 1u ? s[nt][i] : -INFINITY;
        s[nt][i] = v;
        mx[i >> 1] = fmaxf(mx[i >> 1], v);
      }
  }
  float alpha[2];
  softmax_step(s, mx, sl, m, l, alpha);
  if (!Lazy || __any_sync(kFull, alpha[0] != 1.f || alpha[1] != 1.f)) scale_rows(o, alpha);
}

// One 64-token tile of one consumer warp: its 16 tokens' scores against the group's query rows
// (Qs, swz<D> layout), the online softmax update, and O += P V. key_row(r, c) / val_row(r, c)
// give the shared-memory address of 16-byte chunk c of the tile's row r; bit i of `visible`
// says whether the warp's token i may be seen.
template <int D, typename KAddr, typename VAddr>
__device__ __forceinline__ void decode_tile(const __nv_bfloat16* Qs, KAddr key_row, VAddr val_row, uint32_t visible,
                                            float sl, float (&m)[2], float (&l)[2], float (&o)[D / 8][4]) {
  const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
  float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t qa[4], kb[4];
    ldmatrix_x4(qa, Qs + swz<D>(((lane >> 3) & 1) * 8 + (lane & 7), kk * 2 + (lane >> 4)));
    ldmatrix_x4(kb, key_row(warp * 16 + (lane >> 4) * 8 + (lane & 7), kk * 2 + ((lane >> 3) & 1)));
    mma_bf16(s[0], qa, kb[0], kb[1]);
    mma_bf16(s[1], qa, kb[2], kb[3]);
  }
  mask_softmax<D>(s, visible, sl, m, l, o);
  uint32_t pa[4];
  p_fragment(s, 0, pa);
#pragma unroll
  for (int n2 = 0; n2 < D / 16; ++n2) {
    uint32_t vb[4];
    ldmatrix_x4_trans(vb, val_row(warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), n2 * 2 + (lane >> 4)));
    mma_bf16(o[2 * n2], pa, vb[0], vb[1]);
    mma_bf16(o[2 * n2 + 1], pa, vb[2], vb[3]);
  }
}

// This thread block's work item; false when the block has none (past item_range's end).
__device__ __forceinline__ bool block_item(const DecodeParams& p, DecodeWorkItem& it) {
  int item = blockIdx.x;
  if (p.item_range) {
    item += p.item_range[0];
    if (item >= p.item_range[1]) return false;
  }
  it = p.items[item];
  return true;
}

// The group's query rows into Qs (swz<D> layout; rows >= G are zero) with cp.async, by `threads`
// threads; the caller commits and waits.
template <int D>
__device__ __forceinline__ void load_q(const PagedAttentionArgs& a, const DecodeWorkItem& it, __nv_bfloat16* Qs,
                                       int threads) {
  constexpr int CPR = D / 8;
  const int G = a.group;
  const int64_t q_stride = a.q_stride();
  const __nv_bfloat16* qrow = static_cast<const __nv_bfloat16*>(a.q) + int64_t(a.chunk_tok0[it.chunk]) * q_stride +
                              int64_t(it.kv_head) * G * D;
  for (int c = threadIdx.x; c < 16 * CPR; c += threads) {
    const int r = c / CPR, ch = c % CPR;
    const bool ok = r < G;
    cp_async16(Qs + swz<D>(r, ch), ok ? qrow + r * D + ch * 8 : qrow, ok);
  }
}

// ---- variant 0: bulk tensor copies ------------------------------------------------------------
struct TmaDecodeArgs {
  CUtensorMap kv;  // the pool as rows of D bf16 (2B rows a page), boxes of min(B, 64) rows x 64 columns
  // The pool as {64 columns, D / 64 parts, rows}: one box is all parts of min(B, 64) rows, a tile's
  // K (or V) in address order. Items of at least rows_min_tiles tiles (0: none) copy by it.
  CUtensorMap kv_rows;
  DecodeParams p;
  int32_t rows_min_tiles = 0;
};

// The copy-engine kernel's instances; launch_decode picks one by the grid's size.
// - kShared: two blocks per SM up to D = 128 (one at D = 256).
// - kLone: grids of at most one block per multiprocessor (lone_slots_for), and lone plans' grids
//   of any size (DecodeParams::lone). It takes 192 KB of shared memory, so that no two blocks can
//   share a multiprocessor even when launched early behind another kernel (programmatic
//   launch). Its stages fill half of that: with all of it in
//   flight, 16 sequences at 128k took 1.1% longer and at 4k strided 2.5% (kernels/NOTES.md,
//   session 16).
// - kTriple (D = 128, where it was measured): grids of more than kTripleWaves waves of kShared's
//   blocks (triple_above). Two stages, three blocks per SM, so that a block's start and finish
//   overlap two others' streaming: 256 sequences at 4k took 1.9% less time dense and 0.8%
//   strided, at 32k the same; 64 sequences (512 items, two waves) took 3.5% more (session 17).
// - kTwoStage (D = 128): plans of long items in two to five waves (DecodeParams::two_stage), in
//   grids that are not lone. The triple's two stages, two blocks per SM: a third stage's shared
//   memory goes unused, so that no third block fits. Against kShared and kTriple, 96 and 128
//   sequences at 4k took 0.5-1.2% less time dense and 80 at 4k 5.5% less (kTriple's 1280 blocks
//   make 3.2 waves), 80 x 32k strided 6.1% less; short items (strided at 4k) and grids of more
//   waves (256 x 4k) were slower (kernels/NOTES.md, sessions 40 and 41).
enum DecodeInstance : int { kShared, kLone, kTriple, kTwoStage };
constexpr int kTripleWaves = 4;
// Lone blocks copy the tiles of items of at least this many tiles (16k tokens) by rows, in address
// order (TmaDecodeArgs::kv_rows; variant 4: every item). Side by side with the 64-column boxes, 16
// sequences at 32k and 128k took 0.25-0.3% less time, in session 27 and again in 31, and at 4k
// (64 tiles) 0.3 us more: an ldmatrix over the row-ordered lines has two-way bank conflicts, which
// lengthen the last tile's work. The shared and triple instances keep the boxes: their 32k and 128k
// grids gained 0.2-1.6% by rows in session 27 and lost up to 0.3% in session 31 (kernels/NOTES.md).
constexpr int kLoneRowsMinTiles = 256;

template <int D, int Inst>
struct TmaDecodeCfg {
  static constexpr bool kIsLone = Inst == kLone;
  static constexpr int kBoxes = D / 64;                // 64-column boxes per row
  static constexpr int kBoxBytes = kDecodeTile * 128;  // 64 rows of 128 bytes
  static constexpr int kTileBytes = kBoxes * kBoxBytes;  // K (or V) of one tile
  static constexpr int kStages = kIsLone ? std::max(2, (96 << 10) / (2 * kTileBytes))
                                          : (Inst == kTriple || Inst == kTwoStage || D == 256 ? 2 : (D == 128 ? 3 : 6));
  static constexpr size_t kStageSmem = kIsLone              ? size_t(192 << 10)
                                       : Inst == kTwoStage ? TmaDecodeCfg<D, kShared>::kStageSmem
                                                           : size_t(kStages) * 2 * kTileBytes;
  static constexpr size_t kSmem = 1024 + kStageSmem + 16 * D * sizeof(__nv_bfloat16);
  // For the register budget (without it ptxas spilled the merge's loads in flight at D = 128).
  static constexpr int kBlocksPerSm = kIsLone || D == 256 ? 1 : (Inst == kTriple ? 3 : 2);
  static_assert(kStageSmem >= size_t(kDecodeWarps) * 16 * kOsStride<D> * sizeof(float), "merge scratch must fit");
  static_assert(Inst < kTriple || D == 128);
};

template <int D, int Inst>
__global__ void __launch_bounds__(kDecodeThreads + 32, TmaDecodeCfg<D, Inst>::kBlocksPerSm)
    decode_tma_kernel(const __grid_constant__ TmaDecodeArgs args) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using Cfg = TmaDecodeCfg<D, Inst>;
  constexpr int S = Cfg::kStages;
  extern __shared__ unsigned char smem_raw[];
  // The swizzle repeats every 1024 bytes: stages start on such a boundary.
  unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  unsigned char* Kbuf = smem;
  unsigned char* Vbuf = smem + S * Cfg::kTileBytes;
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smem + Cfg::kStageSmem);
  __shared__ __align__(8) uint64_t full[S], empty[S];
  __shared__ uint32_t visible[S][2];  // per stage: which of the tile's 64 tokens the query may see

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], kDecodeWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  // Launched programmatically, the kernel starts while the one before it (which writes the
  // queries and the new token's K/V) still runs: the items, lists and every other page were
  // written by earlier work, so the producer streams them at once and waits only before the
  // page of the query's own block; the consumers wait before loading the queries.
  const DecodeParams& p = args.p;
  const PagedAttentionArgs& a = p.a;
  DecodeWorkItem it;
  if (!block_item(p, it)) return;
  const int B = a.block_size;
  const int logB = __ffs(B) - 1;
  const int t = a.chunk_pos0[it.chunk];
  const int e0 = it.e_begin, e1 = it.e_end;
  const int n_tiles = (((e1 - e0) << logB) + kDecodeTile - 1) / kDecodeTile;
  // Row order (lone instance): the tile's K (and V) is one box in address order, and shared memory
  // holds [row][part][128 bytes], each line swizzled by its index in the tile.
  constexpr bool kMayRows = Cfg::kIsLone && Cfg::kBoxes > 1;
  const bool by_rows = kMayRows && args.rows_min_tiles > 0 && n_tiles >= args.rows_min_tiles;
  if (tid == kDecodeThreads) tma_prefetch_map(by_rows ? &args.kv_rows : &args.kv);  // before the first copy
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[D / 8][4] = {};
  __syncthreads();  // the barriers are initialized

  if (warp == kDecodeWarps) {
    // Producer. A tile is 64 >> log_rows entries (one box of `rows` rows each) from slot slot0.
    const ShardParams sh = a.shards[it.kv_head];
    const int qblock = t >> logB;
    const int first_key = a.window > 0 ? max(t - a.window + 1, 0) : 0;
    const int log_rows = min(logB, 6), rows = 1 << log_rows;
    const int n_sub = kDecodeTile >> log_rows;
    // Lane i holds entry wb + i of the item (cur) and wb + 32 + i (nxt); tiles never straddle.
    auto meta = [&](int off, int& blk, int& pg) {
      const int e = e0 + off + lane;
      blk = e < e1 ? __ldg(a.blocks + e) : -1;
      pg = e < e1 ? __ldg(a.pages + e) : 0;
    };
    int wb = 0, cur_blk, cur_pg, nxt_blk, nxt_pg;
    meta(0, cur_blk, cur_pg);
    meta(32, nxt_blk, nxt_pg);
    bool waited = false;
    for (int k = 0; k < n_tiles; ++k) {
      const int st = k % S;
      const int rel0 = B >= kDecodeTile ? (k * kDecodeTile) >> logB : k * n_sub;
      const int slot0 = B >= kDecodeTile ? (k * kDecodeTile) & (B - 1) : 0;
      if (rel0 >= wb + 32) {
        wb += 32;
        cur_blk = nxt_blk, cur_pg = nxt_pg;
        meta(wb + 32, nxt_blk, nxt_pg);
      }
      // Lane j < n_sub: the tile's entry j.
      const int src = rel0 - wb + min(lane, n_sub - 1);
      const int blk = __shfl_sync(kFull, cur_blk, src), pg = __shfl_sync(kFull, cur_pg, src);
      if (!waited && __any_sync(kFull, lane < n_sub && blk == qblock)) {
        pdl_wait();
        waited = true;
      }
      const int lo = blk * B + slot0;  // position of the box's first row
      const bool copy =
          lane < n_sub && blk >= 0 && lo <= t && lo + rows - 1 >= first_key && attends_block(sh, qblock, blk);
      uint32_t vis[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // token r = lane + 32 h of the tile: row r % rows of entry r / rows
        const int r = lane + 32 * h, j = r >> log_rows;
        const int cj = __shfl_sync(kFull, int(copy), j);
        const int s = __shfl_sync(kFull, lo, j) + (r & (rows - 1));
        vis[h] = __ballot_sync(kFull, cj && s <= t && s >= first_key);
      }
      const uint32_t copies = __ballot_sync(kFull, copy);
      if (k >= S) mbar_wait(&empty[st], ((k / S) - 1) & 1);
      if (lane == 0) {
        visible[st][0] = vis[0];
        visible[st][1] = vis[1];
        mbar_arrive_expect_tx(&full[st], uint32_t(__popc(copies)) * 2u * uint32_t(rows) * D * 2u);
      }
      __syncwarp();
      if (copy && by_rows) {
        const int row = pg * 2 * B + slot0;
        const int off = st * Cfg::kTileBytes + lane * rows * 128 * Cfg::kBoxes;
        tma_load_3d(Kbuf + off, &args.kv_rows, 0, 0, row, &full[st]);
        tma_load_3d(Vbuf + off, &args.kv_rows, 0, 0, row + B, &full[st]);
      } else if (copy) {
        const int row = pg * 2 * B + slot0;
        unsigned char* kd = Kbuf + st * Cfg::kTileBytes + lane * rows * 128;
        unsigned char* vd = Vbuf + st * Cfg::kTileBytes + lane * rows * 128;
        // All of K's boxes before V's: a box holds 128 of each row's bytes, so K's boxes together read
        // its rows' bytes in one run. Interleaved with V's (K 0, V 0, K 1, V 1) the dense decode took
        // 0.2-0.5% longer at batch 64 and 256 (kernels/NOTES.md, session 27).
#pragma unroll
        for (int b = 0; b < Cfg::kBoxes; ++b) tma_load_2d(kd + b * Cfg::kBoxBytes, &args.kv, b * 64, row, &full[st]);
#pragma unroll
        for (int b = 0; b < Cfg::kBoxes; ++b)
          tma_load_2d(vd + b * Cfg::kBoxBytes, &args.kv, b * 64, row + B, &full[st]);
      }
    }
  } else {
    // Consumers.
    pdl_begin();
    load_q<D>(a, it, Qs, kDecodeThreads);
    cp_async_commit();
    cp_async_wait<0>();
    asm volatile("bar.sync 1, %0;\n" ::"n"(kDecodeThreads) : "memory");  // Qs complete
    const float sl = a.scale * kLog2e;
    auto consume = [&](auto rows_tag) {
      constexpr bool kRows = decltype(rows_tag)::value;
      auto chunk = [](auto* tile, int r, int c) {
        if constexpr (kRows) return sw128_row_chunk<Cfg::kBoxes>(tile, r, c);
        else return sw128_chunk<Cfg::kBoxBytes>(tile, r, c);
      };
      for (int k = 0; k < n_tiles; ++k) {
        const int st = k % S;
        mbar_wait(&full[st], (k / S) & 1);
        // Read by the lane that will release the stage (its arrive orders its own accesses only).
        uint32_t vis = lane == 0 ? (visible[st][warp >> 1] >> ((warp & 1) * 16)) & 0xffffu : 0u;
        vis = __shfl_sync(kFull, vis, 0);
        const unsigned char* Kt = Kbuf + st * Cfg::kTileBytes;
        unsigned char* Vt = Vbuf + st * Cfg::kTileBytes;
        if (vis != 0) {
          if (vis != 0xffffu) {  // zero the V rows of the warp's hidden tokens
            for (int x = lane; x < 16 * Cfg::kBoxes * 8; x += 32) {
              const int r = x / (Cfg::kBoxes * 8), b = (x / 8) % Cfg::kBoxes, c = x % 8;
              if (!((vis >> r) & 1u)) *reinterpret_cast<uint4*>(chunk(Vt, warp * 16 + r, b * 8 + c)) = uint4{0, 0, 0, 0};
            }
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // before the copy engine refills it
            __syncwarp();
          }
          decode_tile<D>(
              Qs, [&](int r, int c) { return chunk(Kt, r, c); }, [&](int r, int c) { return chunk(Vt, r, c); }, vis,
              sl, m, l, o);
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(&empty[st]);
      }
    };
    if constexpr (kMayRows) {
      if (by_rows) consume(std::true_type{});
      else consume(std::false_type{});
    } else {
      consume(std::false_type{});
    }
  }
  __syncthreads();  // every copy has landed and been used: the stages become merge scratch
  decode_finish<D>(p, it, o, m, l, smem);
#else
  __trap();  // built for an older GPU: launch_decode picks the cp.async kernel there
#endif
}

// ---- grids that are not lone at D = 128, pages of 64: 128-token tiles by cp.async -------------
// The shape of cuDNN's decode kernel (four warps, 16 query rows x 128 keys x 128 dims a tile) over
// the pages: a tile is two pages, warp w takes its tokens 32 w .. 32 w + 31, and K and V have one
// buffer each, released apart: the next tile's K is copied once every warp has its scores, its V
// once every warp has done O += P V, so one of the two is in flight while the other is used. Every
// thread copies 16 pieces of 16 bytes of K (then of V) and waits with cp.async.wait_group and a
// block barrier; its rows are 8 u + tid / 16 (u = 0 .. 15), so one page base and a fixed stride
// give every piece's address and the swizzle is the same for all; a page the query sees whole is
// copied with constant offsets and no predicate. Each tile's list entries are loaded while the
// tile before it is worked on and tested against the rule once, at K's copy, so no copy waits for
// a lookup. The queries' fragments stay in registers, every ldmatrix is [register + constant]
// (tile_addrs), and the softmax skips the mask of a tile a warp sees whole and O's rescale when no
// row maximum moved. Session 48's version (one copy path, addresses recomputed every tile) took
// 0-0.5% less time than the two-stage copy-engine instance at 48 to 128 sequences of 4k dense and
// 0.2-1.5% strided, and came within 0.5% of cuDNN either way at 64 x 4k on six machines; this one
// executes 29.0 M warp instructions there against 50.2 M (cuDNN 38.5 M); on two machines it was
// within 0.1 us of it at 48 x 4k and 0.1-1.1 us faster at 64 to 128 x 4k (kernels/NOTES.md,
// sessions 48-50).
constexpr int kTiles128Smem = 86336;  // cuDNN's kernel's: two blocks a multiprocessor
static_assert(kTiles128Smem >= 2 * 128 * 128 * 2 + 16 * 128 * 2 &&
                  kTiles128Smem >= kDecodeWarps * 16 * kOsStride<128> * sizeof(float),
              "K, V and the queries, and the merge scratch, must fit");

// Shared-window addresses of one lane's ldmatrix rows in a tile of swz<128> rows (256 bytes each):
// every row a lane addresses has swizzle lane & 7, and chunk 2 kk + c (c = 0, 1; kk = 0..7) XOR x
// equals ((2 (kk & 3)) ^ (c ^ x)) + 8 (kk >> 2), so ad[kk & 3] + 128 (kk >> 2) (plus 4096 bytes a
// 16 rows further) addresses every fragment: each ldmatrix is [register + constant]. The empty asm
// keeps the compiler from recomputing them in the loop from the thread index (it did: about a
// third of the loop's instructions, kernels/NOTES.md session 49).
__device__ __forceinline__ void tile_addrs(uint32_t (&ad)[4], const void* tile, int row, int x) {
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(tile)) + uint32_t(row) * 256u;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    ad[j] = base + uint32_t(((2 * j) ^ x) << 4);
    asm volatile("" : "+r"(ad[j]));
  }
}

// Tile scores of one warp: its 32 tokens (K rows at kad, tile_addrs) against the 16 query rows
// (their A fragments qf, one per 16 columns).
__device__ __forceinline__ void scores32(const uint32_t (&qf)[8][4], const uint32_t (&kad)[4], float (&s)[4][4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < 8; ++kk)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      uint32_t kb[4];
      ldmatrix_x4(kb, kad[kk & 3] + h * 16 * 256 + (kk >> 2) * 128);
      mma_bf16(s[2 * h], qf[kk], kb[0], kb[1]);
      mma_bf16(s[2 * h + 1], qf[kk], kb[2], kb[3]);
    }
}

// The online softmax over the warp's 32 scores (mask_softmax, lazy) and O += P V from its 32 rows of
// V (at vad, tile_addrs).
__device__ __forceinline__ void update32(const uint32_t (&vad)[4], uint32_t visible, float (&s)[4][4], float sl,
                                         float (&m)[2], float (&l)[2], float (&o)[16][4]) {
  mask_softmax<128, 4, true>(s, visible, sl, m, l, o);
#pragma unroll
  for (int kk = 0; kk < 2; ++kk) {
    uint32_t pa[4];
    p_fragment(s, kk, pa);
#pragma unroll
    for (int n2 = 0; n2 < 8; ++n2) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, vad[n2 & 3] + kk * 16 * 256 + (n2 >> 2) * 128);
      mma_bf16(o[2 * n2], pa, vb[0], vb[1]);
      mma_bf16(o[2 * n2 + 1], pa, vb[2], vb[3]);
    }
  }
}

// The 8 rows 8 u + tr (u = 0..7) of a page the query sees whole, 2048 bytes apart in the page and in
// the buffer: constant offsets in the instruction, no predicate.
template <int U>
__device__ __forceinline__ void cp_async_page_row(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0+%2], [%1+%2], 16;\n" ::"r"(dst), "l"(src), "n"(U * 2048) : "memory");
}
template <int... U>
__device__ __forceinline__ void cp_async_page_rows(uint32_t dst, const void* src, std::integer_sequence<int, U...>) {
  (cp_async_page_row<U>(dst, src), ...);
}

__global__ void __launch_bounds__(kDecodeThreads, 2) decode_tiles128_kernel(const DecodeParams p) {
  constexpr int D = 128, B = 64, TILE = 128, CPR = D / 8;
  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Vs = Ks + TILE * D;
  __nv_bfloat16* Qs = Vs + TILE * D;
  pdl_begin();
  const PagedAttentionArgs& a = p.a;
  DecodeWorkItem it;
  if (!block_item(p, it)) return;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const ShardParams sh = a.shards[it.kv_head];
  const int t = a.chunk_pos0[it.chunk];
  const int qblock = t / B;
  const int first_key = a.window > 0 ? max(t - a.window + 1, 0) : 0;
  const __nv_bfloat16* pool = static_cast<const __nv_bfloat16*>(a.kv_pool);
  const int e0 = it.e_begin, e1 = it.e_end;
  const int n_tiles = ((e1 - e0) * B + TILE - 1) / TILE;
  // The next tile's two list entries as loaded (block -1 past the item), tested against the rule
  // only where they are used, so that nothing waits for the loads before then.
  int nb0 = -1, np0 = 0, nb1 = -1, np1 = 0;
  auto fetch = [&](int k) {
    const int e = e0 + 2 * k;
    nb0 = e < e1 ? __ldg(a.blocks + e) : -1;
    np0 = e < e1 ? __ldg(a.pages + e) : 0;
    nb1 = e + 1 < e1 ? __ldg(a.blocks + e + 1) : -1;
    np1 = e + 1 < e1 ? __ldg(a.pages + e + 1) : 0;
  };
  // The fetched entries' blocks if the rule keeps them (else -1): tested once, at K's copy, and
  // used by V's copy and the next iteration's visibility.
  int kb0 = -1, kb1 = -1;
  auto kept = [&](int blk) { return blk >= 0 && attends_block(sh, qblock, blk) ? blk : -1; };
  // K (part 0) or V (part 1) of the fetched tile into its buffer; rows no query may see (and
  // rows of blocks the rule does not keep) are zero-filled, not read.
  const int tr = tid / CPR, tc = tid % CPR;
  auto issue = [&](int part) {
    __nv_bfloat16* d = (part ? Vs : Ks) + tr * D + ((tc ^ tr) << 3);  // swz<D>(8 u + tr, tc)
    if (part == 0) kb0 = kept(nb0), kb1 = kept(nb1);
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int blk = j ? kb1 : kb0, pg = j ? np1 : np0;
      // Row 8 u + tr of the page holds position s0 + 8 u.
      const __nv_bfloat16* src = pool + (int64_t(pg) * 2 * B + part * B + tr) * D + tc * 8;
      __nv_bfloat16* dj = d + j * B * D;
      if (blk >= 0 && blk * B >= first_key && blk * B + B - 1 <= t) {  // seen whole (the same for every thread)
        cp_async_page_rows(static_cast<uint32_t>(__cvta_generic_to_shared(dj)), src,
                           std::make_integer_sequence<int, B / 8>{});
        continue;
      }
      const int s0 = blk * B + tr, lo = first_key - s0, hi = t - s0;
#pragma unroll
      for (int u = 0; u < B / 8; ++u)
        cp_async16(dj + u * 8 * D, src + u * 8 * D, blk >= 0 && 8 * u >= lo && 8 * u <= hi);
    }
    cp_async_commit();
  };
  load_q<D>(a, it, Qs, kDecodeThreads);
  cp_async_commit();
  fetch(0);
  issue(0);
  issue(1);
  // The queries' A fragments stay in registers; K's and V's fragments are read at fixed addresses.
  const int l7 = lane & 7, b3 = (lane >> 3) & 1, b4 = lane >> 4;
  uint32_t kad[4], vad[4], qf[D / 16][4];
  tile_addrs(kad, Ks, warp * 32 + b4 * 8 + l7, b3 ^ l7);
  tile_addrs(vad, Vs, warp * 32 + b3 * 8 + l7, b4 ^ l7);
  cp_async_wait<2>();  // the queries
  __syncthreads();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) ldmatrix_x4(qf[kk], Qs + swz<D>(b3 * 8 + l7, kk * 2 + b4));
  const float sl = a.scale * kLog2e;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[D / 8][4] = {};
  for (int k = 0; k < n_tiles; ++k) {
    // The warp's 32 tokens: rows 32 w .. 32 w + 31, all of the tile's page w / 2.
    const int wblk = warp >> 1 ? kb1 : kb0, s = wblk * B + (warp & 1) * 32 + lane;
    const uint32_t vis = __ballot_sync(kFull, wblk >= 0 && s <= t && s >= first_key);
    const bool more = k + 1 < n_tiles;
    if (more) fetch(k + 1);  // in flight while tile k is worked on
    cp_async_wait<1>();      // this thread's K of tile k (its V may still be in flight)
    __syncthreads();         // everyone's
    float sc[4][4];
    if (vis != 0) scores32(qf, kad, sc);
    __syncthreads();  // every warp is done with K: the next tile's comes in
    if (more) {
      issue(0);
      cp_async_wait<1>();  // V of tile k
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (vis != 0) update32(vad, vis, sc, sl, m, l, o);
    __syncthreads();  // every warp is done with V
    if (more) issue(1);
  }
  cp_async_wait<0>();
  __syncthreads();  // the buffers become merge scratch
  decode_finish<D>(p, it, o, m, l, smem);
}

// ---- variant 1: cp.async ----------------------------------------------------------------------
template <int D>
struct DecodeCfg {
  static constexpr int kStages = D == 256 ? 2 : (D == 128 ? 3 : 4);
  static constexpr int kTileElems = kDecodeTile * D;
  static constexpr size_t kStageBytes = size_t(kStages) * 2 * kTileElems * sizeof(__nv_bfloat16);
  static constexpr size_t kSmem = kStageBytes + 16 * D * sizeof(__nv_bfloat16) + kStages * kDecodeTile;
  static_assert(kStageBytes >= size_t(kDecodeWarps) * 16 * kOsStride<D> * sizeof(float), "merge scratch must fit");
};

template <int D>
__global__ void __launch_bounds__(kDecodeThreads) decode_kernel(const DecodeParams p) {
  using Cfg = DecodeCfg<D>;
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

  pdl_begin();
  const PagedAttentionArgs& a = p.a;
  DecodeWorkItem it;
  if (!block_item(p, it)) return;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int B = a.block_size;
  const int logB = __ffs(B) - 1;
  const ShardParams sh = a.shards[it.kv_head];
  const int t = a.chunk_pos0[it.chunk];
  const int qblock = t >> logB;
  const int first_key = a.window > 0 ? max(t - a.window + 1, 0) : 0;
  const __nv_bfloat16* pool = static_cast<const __nv_bfloat16*>(a.kv_pool);
  const int64_t page_elems = 2LL * B * D;
  const int e0 = it.e_begin, e1 = it.e_end;
  const int n_tiles = (((e1 - e0) << logB) + TILE - 1) / TILE;

  load_q<D>(a, it, Qs, kDecodeThreads);
  // Page metadata of this thread's rows of the next tile to issue, loaded one tile ahead so that
  // the block -> page lookups never stall the copies.
  const int col = tid % CPR;
  const int r0 = tid / CPR;
  int mblk[PASSES], mpg[PASSES];
  // Pages of at least a tile (B >= TILE): a tile is rows slot0 .. slot0 + TILE - 1 of one entry, whose
  // page and whether the rule keeps it are looked up once a tile, not once a row.
  const bool one_entry = B >= TILE;
  auto fetch_meta = [&](int k) {
    if (one_entry) {
      const int e = e0 + ((k * TILE) >> logB);
      const bool in = k < n_tiles && e < e1;
      mblk[0] = in ? __ldg(a.blocks + e) : -1;
      mpg[0] = in ? __ldg(a.pages + e) : 0;
      return;
    }
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
    if (one_entry) {
      const int j = mblk[0], slot0 = (k * TILE) & (B - 1);
      const bool keep = j >= 0 && attends_block(sh, qblock, j);
      const __nv_bfloat16* page = pool + int64_t(mpg[0]) * page_elems + int64_t(slot0) * D + col * 8;
#pragma unroll
      for (int ps = 0; ps < PASSES; ++ps) {
        const int r = r0 + ps * ROWS_PER_PASS;
        const int s = (j << logB) + slot0 + r;
        const bool ok = keep && s <= t && s >= first_key;
        const __nv_bfloat16* src = ok ? page + r * D : pool;
        cp_async16(kd + swz<D>(r, col), src, ok);
        cp_async16(vd + swz<D>(r, col), ok ? src + B * D : src, ok);
        if (col == 0) valid[st * TILE + r] = ok;
      }
      return;
    }
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
  float o[D / 8][4] = {};

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
    if (!__any_sync(kFull, vt[lane & 15] != 0)) continue;  // none of this warp's tokens

    const __nv_bfloat16* Kt = Ks + st * Cfg::kTileElems;
    const __nv_bfloat16* Vt = Vs + st * Cfg::kTileElems;
    uint32_t vis = 0;
#pragma unroll
    for (int i = 0; i < 16; ++i) vis |= uint32_t(vt[i] != 0) << i;
    decode_tile<D>(
        Qs, [&](int r, int c) { return Kt + swz<D>(r, c); }, [&](int r, int c) { return Vt + swz<D>(r, c); }, vis, sl,
        m, l, o);
  }
  cp_async_wait<0>();
  __syncthreads();  // the stage buffers become merge scratch
  decode_finish<D>(p, it, o, m, l, smem);
}

// ---- launching -------------------------------------------------------------------------------
template <typename Kernel>
const void* with_smem(Kernel kernel, size_t smem) {
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  return reinterpret_cast<const void*>(kernel);
}

template <int D, int Inst>
const void* tma_kernel_ptr() {
  static const void* k = with_smem(decode_tma_kernel<D, Inst>, TmaDecodeCfg<D, Inst>::kSmem);
  return k;
}
const void* tiles128_kernel_ptr() {
  static const void* k = with_smem(decode_tiles128_kernel, kTiles128Smem);
  return k;
}
template <int D>
const void* cp_async_kernel_ptr() {
  static const void* k = with_smem(decode_kernel<D>, DecodeCfg<D>::kSmem);
  return k;
}

// An attribute of the current device; 0 when it cannot be read.
int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, attr, dev) != cudaSuccess) return 0;
  return v;
}

int compute_capability_major() { return device_attribute(cudaDevAttrComputeCapabilityMajor); }

// cuTensorMapEncodeTiled, from the driver; null when it has none or the GPU predates the copy
// engine's tensor copies (compute capability 9).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    if (compute_capability_major() < 9) return PFN_cuTensorMapEncodeTiled_v12000{};
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// The pool as a bf16 tensor of `rank` dimensions, the innermost first and the last its rows
// (dims[rank - 1] is set here), in 128-byte swizzled boxes; false where the copy engine cannot take
// it (see pool_tensor_map).
bool encode_pool_map(const PagedAttentionArgs& a, CUtensorMap& map, cuuint32_t rank, cuuint64_t* dims,
                     const cuuint64_t* strides, const cuuint32_t* box, CUtensorMapL2promotion promotion) {
  const int64_t rows = a.kv_pool_pages * 2LL * a.block_size;
  const auto encode = tensor_map_encoder();
  if (!encode || rows <= 0 || rows >= (int64_t(1) << 31) || reinterpret_cast<uintptr_t>(a.kv_pool) % 16 != 0)
    return false;
  dims[rank - 1] = cuuint64_t(rows);
  const cuuint32_t element_strides[3] = {1, 1, 1};
  return encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rank, const_cast<void*>(a.kv_pool), dims, strides, box,
                element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, promotion,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bool pool_tensor_map(const PagedAttentionArgs& a, CUtensorMap& map, CUtensorMapL2promotion promotion) {
  cuuint64_t dims[2] = {cuuint64_t(a.head_dim), 0};
  const cuuint64_t strides[1] = {cuuint64_t(a.head_dim) * sizeof(__nv_bfloat16)};
  const cuuint32_t box[2] = {64, cuuint32_t(std::min(a.block_size, kDecodeTile))};
  return encode_pool_map(a, map, 2, dims, strides, box, promotion);
}

// The pool for the row-ordered copies: {64 columns, D / 64 parts, rows}, boxes of all parts of
// min(B, 64) rows, no L2 promotion.
bool pool_rows_tensor_map(const PagedAttentionArgs& a, CUtensorMap& map) {
  cuuint64_t dims[3] = {64, cuuint64_t(a.head_dim / 64), 0};
  const cuuint64_t strides[2] = {128, cuuint64_t(a.head_dim) * sizeof(__nv_bfloat16)};
  const cuuint32_t box[3] = {64, cuuint32_t(a.head_dim / 64), cuuint32_t(std::min(a.block_size, kDecodeTile))};
  return encode_pool_map(a, map, 3, dims, strides, box, CU_TENSOR_MAP_L2_PROMOTION_NONE);
}

// Blocks of the kernel resident on one multiprocessor (0 on error).
int blocks_per_sm(const void* kernel, int threads, size_t smem) {
  int n = 0;
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem) == cudaSuccess ? n : 0;
}

// Blocks of an instance of the copy-engine kernel that run at once on the device.
template <int D, int Inst>
int32_t tma_slots() {
  return device_attribute(cudaDevAttrMultiProcessorCount) *
         blocks_per_sm(tma_kernel_ptr<D, Inst>(), kDecodeThreads + 32, TmaDecodeCfg<D, Inst>::kSmem);
}

// Blocks of the triple instance that run at once (0: it has no kernel at this D).
template <int D>
int32_t triple_slots() {
  if constexpr (D == 128) return tma_slots<D, kTriple>();
  else return 0;
}

// Variant 0 runs grids of more items than this on the triple instance (0: the triple instance does
// not fit more blocks than the shared one at this D, or has no kernel).
template <int D>
int32_t triple_above() {
  static const int32_t above =
      triple_slots<D>() > tma_slots<D, kShared>() ? kTripleWaves * tma_slots<D, kShared>() : 0;
  return above;
}

// Whether a grid of n_items that is not lone runs the triple instance (variant 3: every such grid).
template <int D>
bool runs_triple(int32_t n_items) {
  const int v = kernel_variant(0);
  return triple_above<D>() && (v == 3 || ((v == 0 || v == 4) && n_items > triple_above<D>()));
}

// Variant 0: the copy engine, with its lone instance for grids of at most lone_slots_for() blocks
// and its triple one for grids of more than kTripleWaves waves; variant 2: the copy engine, always
// the shared instance; variant 3: always the triple one (but for lone grids); variant 4: variant 0
// with every item of a lone grid copied by rows and no tiles kernel (runs_tiles128); variant 1:
// cp.async.
template <int D>
int32_t slots_for() {
  const int v = kernel_variant(0);
  const int32_t n = v == 1 ? device_attribute(cudaDevAttrMultiProcessorCount) *
                                 blocks_per_sm(cp_async_kernel_ptr<D>(), kDecodeThreads, DecodeCfg<D>::kSmem)
                           : (v == 3 && triple_above<D>() ? triple_slots<D>() : tma_slots<D, kShared>());
  return std::max(n, device_attribute(cudaDevAttrMultiProcessorCount));
}

template <int D>
int32_t lone_slots_for() {
  static const int32_t lone = tma_slots<D, kShared>() > tma_slots<D, kLone>() ? tma_slots<D, kLone>() : 0;
  const int v = kernel_variant(0);
  return v == 0 || v == 3 || v == 4 ? lone : 0;
}

// Whether the grid of p runs one block per multiprocessor: at most lone_slots_for() items, or a lone
// plan (DecodeParams::lone).
template <int D>
bool lone_grid(const DecodeParams& p) {
  const int32_t lone = lone_slots_for<D>();
  return p.n_items <= lone || (p.lone && lone > 0);
}

// One instance of the copy-engine kernel, its shared-memory limit set first (tma_kernel_ptr).
template <int D, int Inst>
cudaError_t launch_tma(const TmaDecodeArgs& args, cudaStream_t stream) {
  tma_kernel_ptr<D, Inst>();
  return launch(decode_tma_kernel<D, Inst>, args.p.n_items, kDecodeThreads + 32, TmaDecodeCfg<D, Inst>::kSmem, stream,
                args);
}

// The 128-token-tile kernel: at D = 128 and pages of 64, every grid that is not lone (variant 9:
// lone grids too; variants 4 and 10: none). Lone grids keep the copy engine's one-block-per-SM
// instance, which the tiles kernel trails by 0.35-3.4% at 16 x 4k and 16 to 256 sequences of 32k.
// Against the copy engine's other instances at 16 to 256 sequences of 1k to 32k, dense and strided,
// it was up to 7.6% faster (24 x 1k), 1-2.6% at 160 to 224 sequences, and slower only at 256 x 8k
// dense and 80 x 4k strided (0.35-0.45%, twice) (kernels/NOTES.md, sessions 48-51).
bool runs_tiles128(int D, const DecodeParams& p) {
  const int v = kernel_variant(0);
  if (D != 128 || p.a.block_size != 64) return false;
  return v == 9 || (v == 0 && !decode_tiles_off() && !lone_grid<128>(p));
}

template <int D>
cudaError_t launch_decode(const DecodeParams& p, cudaStream_t stream) {
  if (runs_tiles128(D, p)) {
    tiles128_kernel_ptr();
    return launch(decode_tiles128_kernel, p.n_items, kDecodeThreads, kTiles128Smem, stream, p);
  }
  if (kernel_variant(0) != 1) {
    TmaDecodeArgs args;
    args.p = p;
    if (pool_tensor_map(p.a, args.kv, CU_TENSOR_MAP_L2_PROMOTION_NONE)) {
      if (lone_grid<D>(p)) {
        if (D >= 128 && pool_rows_tensor_map(p.a, args.kv_rows))
          args.rows_min_tiles = kernel_variant(0) == 4 ? 1 : kLoneRowsMinTiles;
        return launch_tma<D, kLone>(args, stream);
      }
      if constexpr (D == 128) {
        const int v = kernel_variant(0);
        if (p.two_stage && (v == 0 || v == 4)) return launch_tma<D, kTwoStage>(args, stream);
        if (runs_triple<D>(p.n_items)) return launch_tma<D, kTriple>(args, stream);
      }
      return launch_tma<D, kShared>(args, stream);
    }
  }
  cp_async_kernel_ptr<D>();
  return launch(decode_kernel<D>, p.n_items, kDecodeThreads, DecodeCfg<D>::kSmem, stream, p);
}

}  // namespace detail

int32_t decode_slots(int32_t head_dim) {
  return detail::with_head_dim(head_dim, int32_t{0}, [](auto D) { return detail::slots_for<D>(); });
}

int32_t decode_lone_slots(int32_t head_dim) {
  return detail::with_head_dim(head_dim, int32_t{0}, [](auto D) { return detail::lone_slots_for<D>(); });
}

cudaError_t decode_attention(const DecodeParams& p, cudaStream_t stream) {
  const int B = p.a.block_size;
  if (p.a.group < 1 || p.a.group > 16 || B < 16 || B > 128 || (B & (B - 1)) != 0) return cudaErrorInvalidValue;
  if (p.n_items == 0) return cudaSuccess;
  return detail::with_head_dim(p.a.head_dim, cudaErrorInvalidValue,
                               [&](auto D) { return detail::launch_decode<D>(p, stream); });
}

}  // namespace hs::kernels
