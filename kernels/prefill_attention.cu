// Prefill / chunked-prefill attention through the per-head sharded page lists.
//
// One thread block per (query head, tile of BM query rows of a chunk); each warp owns 32 rows
// (16 for D = 256).
// The block walks its KV head's list and gathers only the units (min(B, 64) tokens) that some
// query of the tile may attend: sink blocks, blocks on the stride, the recent window, up to the
// tile's last query, inside the model window. Runs of blocks no query of the tile attends are
// skipped by a binary search to the next candidate block (next on the stride, or the window's
// start), so a strided head costs about kept blocks, not list length. Gathered units form tiles
// of 64 keys streamed through a cp.async pipeline; S = Q K^T and O += P V use mma.sync m16n8k16
// (bf16 in, fp32 accumulate) with an online softmax. Tiles every query of the block fully sees
// run unmasked; the others (diagonal, window edges, partial units) apply the rule per element.
// Slots after the tile's last query are never read (cp.async zero-fills them).
#include <algorithm>
#include <cmath>
#include <mutex>

#include "attention_common.cuh"
#include "tile_search.cuh"


namespace hs::kernels {
namespace detail {

// Each warp owns kMT m16 tiles (32 rows for D <= 128, as FlashAttention-2: every K/V fragment
// read from shared memory feeds two mma, halving shared-memory traffic per flop).
// Variant 0: 64 keys per tile; variant 1 (D = 128): 32 (fewer registers live, more barriers).
template <int D, int V>
struct PrefillCfg {
  static constexpr int kMT = D == 256 ? 1 : 2;
  static constexpr int kBM = D == 256 ? 64 : 128;
  static constexpr int kWarps = kBM / (16 * kMT);
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = D == 64 ? 3 : 2;
  static constexpr int kBN = D == 128 && V == 1 ? 32 : 64;  // keys per tile
  static constexpr int kTileElems = kBN * D;
  static constexpr size_t kSmem = size_t(kBM) * D * 2 + size_t(kStages) * 2 * kTileElems * 2 +
                                  size_t(kStages) * kBN * sizeof(int) + size_t(kStages) * 2 * sizeof(int);
};

template <int D, int V>
__global__ void __launch_bounds__(PrefillCfg<D, V>::kThreads) prefill_kernel(const PrefillParams p) {
  using Cfg = PrefillCfg<D, V>;
  constexpr int S = Cfg::kStages;
  constexpr int BM = Cfg::kBM;
  constexpr int BN = Cfg::kBN;
  constexpr int NT = Cfg::kThreads;
  constexpr int CPR = D / 8;
  constexpr int ROWS_PER_PASS = NT / CPR;
  constexpr int PASSES = BN / ROWS_PER_PASS;
  constexpr int MAXU = BN / 16;  // units per tile at most (B = 16)
  constexpr int NT8 = BN / 8;     // n8 tiles of scores per m16 tile
  static_assert(NT % CPR == 0 && BN % ROWS_PER_PASS == 0, "tile shape");

  extern __shared__ __align__(128) unsigned char smem[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Ks = Qs + BM * D;
  __nv_bfloat16* Vs = Ks + S * Cfg::kTileElems;
  int* keys = reinterpret_cast<int*>(Vs + S * Cfg::kTileElems);  // [S][BN]: (s << 1 | always) or -1
  int* info = keys + S * BN;                                      // [S][2]: interior, first key

  const PagedAttentionArgs& a = p.a;
  const PrefillWorkItem it = p.items[blockIdx.y];
  const int h = blockIdx.x;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int G = a.group;
  const int kvh = h / G;
  const int n_rows = it.n_rows;  // real query rows of this tile
  const TileQuery q = prefill_tile(a, it, kvh, BN);
  const int logU = __ffs(q.U) - 1;

  UnitScan scan(a, it.chunk, kvh, q);  // every warp walks the list alike
  bool exhausted = false;

  const __nv_bfloat16* pool = static_cast<const __nv_bfloat16*>(a.kv_pool);
  const int64_t page_elems = 2LL * q.B * D;
  const int64_t q_stride = a.q_stride(), o_stride = a.out_stride();

  // Q tile (rows past the chunk are zero).
  {
    const __nv_bfloat16* qbase =
        static_cast<const __nv_bfloat16*>(a.q) + int64_t(it.tok) * q_stride + int64_t(h) * D;
    for (int c = tid; c < BM * CPR; c += NT) {
      const int r = c / CPR, ch = c % CPR;
      const bool ok = r < n_rows;
      cp_async16(Qs + swz<D>(r, ch), ok ? qbase + int64_t(r) * q_stride + ch * 8 : qbase, ok);
    }
  }

  // Gathers the next tile into stage st; false (and nothing written) when the list is done.
  auto load_tile = [&](int st) -> bool {
    if (exhausted) return false;
    int upage[MAXU], us0[MAXU], uslot[MAXU], ualw[MAXU];
    bool interior = true;
    int n_units = 0;
#pragma unroll
    for (int u = 0; u < MAXU; ++u) {
      upage[u] = -1;
      us0[u] = 0;
      uslot[u] = 0;
      ualw[u] = 0;
      if (u * q.U >= BN) continue;  // fewer, larger units
      int j;
      bool alw;
      if (!exhausted && scan.next(a, q, j, upage[u], uslot[u], alw)) {
        us0[u] = (j << q.logB) + uslot[u];
        ualw[u] = alw;
        interior = interior && unit_interior(q, j, us0[u], alw);
        ++n_units;
      } else {
        exhausted = true;
        interior = false;
      }
    }
    if (n_units == 0) return false;
    const int col = tid % CPR;
    const int r0 = tid / CPR;
    __nv_bfloat16* kd = Ks + st * Cfg::kTileElems;
    __nv_bfloat16* vd = Vs + st * Cfg::kTileElems;
#pragma unroll
    for (int ps = 0; ps < PASSES; ++ps) {
      const int r = r0 + ps * ROWS_PER_PASS;
      const int u = r >> logU, ro = r & (q.U - 1);
      int pg = -1, s0 = 0, sl0 = 0, alw = 0;
#pragma unroll
      for (int x = 0; x < MAXU; ++x)
        if (x == u) {
          pg = upage[x];
          s0 = us0[x];
          sl0 = uslot[x];
          alw = ualw[x];
        }
      const int s = s0 + ro;
      const bool ok = pg >= 0 && s <= q.t1;
      const __nv_bfloat16* src = ok ? pool + int64_t(pg) * page_elems + int64_t(sl0 + ro) * D + col * 8 : pool;
      cp_async16(kd + swz<D>(r, col), src, ok);
      cp_async16(vd + swz<D>(r, col), ok ? src + q.B * D : src, ok);
      if (col == 0) keys[st * BN + r] = ok ? (s << 1) | alw : -1;
    }
    if (tid == 0) {
      info[st * 2] = interior;
      info[st * 2 + 1] = us0[0];
    }
    return true;
  };

  int n_loaded = 0;
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (load_tile(n_loaded % S)) ++n_loaded;
    cp_async_commit();
  }

  constexpr int MT = Cfg::kMT;
  const float sl = a.scale * kLog2e;
  float m[MT][2], l[MT][2];
  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  }
  const int wr0 = warp * 16 * MT;                          // this warp's first row
  const int tw_last = q.t0 + min(wr0 + 16 * MT - 1, n_rows - 1); // its last real query position
  const bool warp_live = wr0 < n_rows;

  for (int k = 0; k < n_loaded; ++k) {
    cp_async_wait<S - 2>();
    __syncthreads();
    if (load_tile(n_loaded % S)) ++n_loaded;
    cp_async_commit();

    const int st = k % S;
    const bool interior = info[st * 2] != 0;
    if (!warp_live || (!interior && info[st * 2 + 1] > tw_last)) continue;  // nothing this warp sees

    const __nv_bfloat16* Kt = Ks + st * Cfg::kTileElems;
    const __nv_bfloat16* Vt = Vs + st * Cfg::kTileElems;
    float s[MT][NT8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < NT8; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(qa[mt], Qs + swz<D>(wr0 + mt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), kk * 2 + (lane >> 4)));
#pragma unroll
      for (int np = 0; np < BN / 16; ++np) {
        uint32_t kb[4];
        ldmatrix_x4(kb, Kt + swz<D>(np * 16 + (lane >> 4) * 8 + (lane & 7), kk * 2 + ((lane >> 3) & 1)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(s[mt][2 * np], qa[mt], kb[0], kb[1]);
          mma_bf16(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
        }
      }
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float mx[2], alpha[2];
      mask_scores(s[mt], keys + st * BN, interior, q.t0 + wr0 + mt * 16 + (lane >> 2), q, mx);
      softmax_step(s[mt], mx, sl, m[mt], l[mt], alpha);
      scale_rows(o[mt], alpha);
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) p_fragment(s[mt], kk, pa[mt]);
#pragma unroll
      for (int n2 = 0; n2 < D / 16; ++n2) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, Vt + swz<D>(kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), n2 * 2 + (lane >> 4)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_bf16(o[mt][2 * n2], pa[mt], vb[0], vb[1]);
          mma_bf16(o[mt][2 * n2 + 1], pa[mt], vb[2], vb[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 1);
      l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 2);
    }
    const float inv0 = l[mt][0] > 0.f ? 1.f / l[mt][0] : 0.f;
    const float inv1 = l[mt][1] > 0.f ? 1.f / l[mt][1] : 0.f;
    const int row0 = wr0 + mt * 16 + (lane >> 2), row1 = row0 + 8;
    __nv_bfloat16* obase = static_cast<__nv_bfloat16*>(a.out) + int64_t(it.tok) * o_stride +
                           int64_t(h) * D + (lane & 3) * 2;
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn) {
      if (row0 < n_rows)
        *reinterpret_cast<__nv_bfloat162*>(obase + int64_t(row0) * o_stride + dn * 8) =
            __floats2bfloat162_rn(o[mt][dn][0] * inv0, o[mt][dn][1] * inv0);
      if (row1 < n_rows)
        *reinterpret_cast<__nv_bfloat162*>(obase + int64_t(row1) * o_stride + dn * 8) =
            __floats2bfloat162_rn(o[mt][dn][2] * inv1, o[mt][dn][3] * inv1);
    }
  }
}

template <int D, int V>
cudaError_t launch_prefill(const PrefillParams& p, cudaStream_t stream) {
  using Cfg = PrefillCfg<D, V>;
  static std::once_flag once;
  std::call_once(once, [] {
    cudaFuncSetAttribute(prefill_kernel<D, V>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Cfg::kSmem));
  });
  const dim3 grid(p.a.n_kv_heads * p.a.group, p.n_items);
  prefill_kernel<D, V><<<grid, Cfg::kThreads, Cfg::kSmem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace detail

int32_t prefill_block_m(int32_t head_dim) { return head_dim == 256 ? 64 : 128; }

cudaError_t prefill_attention(const PrefillParams& p, cudaStream_t stream) {
  const int B = p.a.block_size;
  if (p.a.group < 1 || B < 16 || B > 128 || (B & (B - 1)) != 0 || p.n_items > 65535) return cudaErrorInvalidValue;
  if (p.n_items == 0) return cudaSuccess;
  return detail::with_head_dim(p.a.head_dim, cudaErrorInvalidValue, [&](auto D) {
    // At head dim 128: variant 0 is the warpgroup-MMA kernel where it runs (an sm_90a build on a
    // GPU of compute capability 9, the pool known to the copy engine), 1 the 32-key mma.sync
    // kernel, 2 the 64-key one (variant 0 elsewhere).
    if constexpr (D == 128) {
      if (detail::kernel_variant(1) == 1) return detail::launch_prefill<D, 1>(p, stream);
      cudaError_t err = cudaSuccess;
      if (detail::kernel_variant(1) == 0 && detail::launch_prefill_wgmma(p, stream, err)) return err;
    }
    return detail::launch_prefill<D, 0>(p, stream);
  });
}

}  // namespace hs::kernels
