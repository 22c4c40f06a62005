// The prefill kernels' search for the keys a tile of queries may attend (unit_attended, on the host
// too, so that a CPU test can check it against the rule exhaustively, and a warp's walk of a list
// with it), and their tile setup and score mask.
#pragma once
#include <climits>
#include <cstdint>

#include "attention_common.cuh"
#include "sharded_attention.h"

namespace hs::kernels::detail {

__host__ __device__ inline int hs_max(int a, int b) { return a > b ? a : b; }

// The query tile a block works on, and its KV head's shard: everything the tile search needs.
struct TileQuery {
  int t0, t1;    // positions of the tile's first and last (real) query
  int i0, i1;    // their blocks
  int logB, B, U;  // log2 of B, block size B, unit size min(B, 64)
  int window;
  ShardParams sh;
};

// Whether some query of the tile may attend the unit at slot offset so of block j, given that the
// unit starts at or before the tile's last query (`always`: the shard always keeps block j).
// UnitScan applies it to 32 units of the list at once.
__host__ __device__ inline bool unit_attended(const TileQuery& q, int j, int so, bool always) {
  return (always || hs_max(q.i0, j) - j < q.sh.local) &&
         (q.window == 0 || (j << q.logB) + so + q.U - 1 > q.t0 - q.window);
}

// Whether every query of the tile sees every key of the unit at position s0 of block j: no mask.
__host__ __device__ inline bool unit_interior(const TileQuery& q, int j, int s0, bool always) {
  return s0 + q.U - 1 <= q.t0 && (always || q.i1 - j < q.sh.local) && (q.window == 0 || q.t1 - s0 < q.window);
}

// Whether a query of the tile sees key s of the unit at position s0 of block j exactly when s is
// not past the query: neither the shard's local window nor the sliding window hides the unit from a
// query of the tile.
__host__ __device__ inline bool unit_causal(const TileQuery& q, int j, int s0, bool always) {
  return (always || q.i1 - j < q.sh.local) && (q.window == 0 || q.t1 - s0 < q.window);
}

#ifdef __CUDACC__
// A warp's walk, in order, over the units of a list that some query of the tile may attend
// (unit_attended), up to the first unit after the tile's last query; 32 at a time: for a window of
// the list, lane l loads unit l (entry e0 + l / nu, slot offset (l % nu) U, with nu = B / U units
// an entry) and one ballot marks the units to take. During a prefill a strided head's list still
// holds every block, so its tiles skip most entries; a search unit by unit (a chain of dependent
// loads) bounded the kernels there (kernels/NOTES.md, session 7). Every warp that walks the same
// list gets the same units.
struct UnitScan {
  int e0, eb;        // the window's first entry; the list's end
  int lognu;         // log2 of units per entry
  uint32_t pend = 0;    // the window's attended units not yet taken
  uint32_t always = 0;  // the window's units whose block the shard always keeps
  bool ended = false;   // the window reached the list's end or a unit after the tile's last query
  int j = 0, page = 0;  // this lane's unit's block and page

  // The list of chunk `chunk`, this launch's layer and KV head kvh, for tile q.
  __device__ UnitScan(const PagedAttentionArgs& a, int chunk, int kvh, const TileQuery& q) {
    const int list = (chunk * a.n_layers + a.layer) * a.n_kv_heads + kvh;
    e0 = a.indptr[list];
    eb = a.list_end ? a.list_end[list] : a.indptr[list + 1];
    lognu = q.logB - (__ffs(q.U) - 1);
  }

  // The next unit (its block, page, slot offset, and whether its block is always kept); false
  // when there is none. Warp-uniform.
  __device__ bool next(const PagedAttentionArgs& a, const TileQuery& q, int& uj, int& upage, int& uso, bool& ualw) {
    const int lane = threadIdx.x & 31;
    const int nu_mask = (1 << lognu) - 1;
    while (pend == 0) {
      if (ended) return false;
      const int e = e0 + (lane >> lognu), so = (lane & nu_mask) * q.U;
      bool end = e >= eb;
      j = end ? 0 : __ldg(a.blocks + e);
      page = end ? 0 : __ldg(a.pages + e);
      end = end || (j << q.logB) + so > q.t1;  // blocks ascend: so does every later unit
      const bool alw = always_kept(q.sh, j);
      const uint32_t ends = __ballot_sync(0xffffffffu, end);
      pend = __ballot_sync(0xffffffffu, !end && unit_attended(q, j, so, alw)) & ((ends & (0u - ends)) - 1u);
      always = __ballot_sync(0xffffffffu, alw);
      ended = ends != 0;
      e0 += 32 >> lognu;
    }
    const int l = __ffs(pend) - 1;
    pend &= pend - 1;
    uj = __shfl_sync(0xffffffffu, j, l);
    upage = __shfl_sync(0xffffffffu, page, l);
    uso = (l & nu_mask) * q.U;
    ualw = (always >> l) & 1u;
    return true;
  }
};

// Item `it`'s tile of query rows against KV head kvh's shard, for units of at most bn keys.
__device__ inline TileQuery prefill_tile(const PagedAttentionArgs& a, const PrefillWorkItem& it, int kvh, int bn) {
  TileQuery q;
  q.B = a.block_size;
  q.logB = __ffs(q.B) - 1;
  q.U = min(q.B, bn);
  q.window = a.window;
  q.sh = a.shards[kvh];
  q.t0 = it.pos;
  q.t1 = q.t0 + it.n_rows - 1;
  q.i0 = q.t0 >> q.logB;
  q.i1 = q.t1 >> q.logB;
  return q;
}

// A tile's scores for this thread's rows (positions tr0 and tr0 + 8) in the mma fragment layout,
// unless the tile is interior (every query sees every key), set to -inf where the rule hides the
// key: keys[c] is key c's (position << 1 | block always kept), or -1. mx gets each row's largest.
// Each key becomes the span of query positions that see it, so that a score's test is two
// comparisons without branches (the rule's tests spelled out per score compiled to a branch each,
// and the masked steps took a fifth of the strided prefill's time at 8k; kernels/NOTES.md, session 14).
template <int NT>
__device__ __forceinline__ void mask_scores(float (&s)[NT][4], const int* keys, bool interior, int tr0,
                                            const TileQuery& q, float (&mx)[2]) {
  const int lane = threadIdx.x & 31;
  mx[0] = mx[1] = -INFINITY;
  if (interior) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) mx[i >> 1] = fmaxf(mx[i >> 1], s[nt][i]);
    return;
  }
  // Queries of block qb see key block kb (not always kept) while qb - kb < local, that is up to
  // position ((kb + local) << logB) - 1; beyond kb_cap that bound passes every position.
  const int kb_cap = (INT_MAX >> q.logB) - q.sh.local;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int2 kv = *reinterpret_cast<const int2*>(keys + nt * 8 + (lane & 3) * 2);
    int lo[2], hi[2];
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int key = c ? kv.y : kv.x, ks = max(key, 0) >> 1, kb = ks >> q.logB;  // an invalid key (-1): ks 0
      lo[c] = key >= 0 ? ks : INT_MAX;
      hi[c] = (key & 1) || kb > kb_cap ? INT_MAX : ((kb + q.sh.local) << q.logB) - 1;
      if (q.window > 0) hi[c] = min(hi[c], ks + min(q.window - 1, INT_MAX - ks));  // tq - ks < window
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int tq = (i >> 1) ? tr0 + 8 : tr0;
      const bool ok = (tq >= lo[i & 1]) & (tq <= hi[i & 1]);
      const float v = ok ? s[nt][i] : -INFINITY;
      s[nt][i] = v;
      mx[i >> 1] = fmaxf(mx[i >> 1], v);
    }
  }
}

// mask_scores for keys at consecutive positions from `first`, each seen by every query of the tile
// that it does not follow (unit_causal): a score's test is one comparison with its column.
template <int NT>
__device__ __forceinline__ void mask_causal(float (&s)[NT][4], int first, int tr0, float (&mx)[2]) {
  const int lane = threadIdx.x & 31;
  const int last[2] = {tr0 - first - (lane & 3) * 2, tr0 + 8 - first - (lane & 3) * 2};  // last column seen
  mx[0] = mx[1] = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float v = nt * 8 + (i & 1) <= last[i >> 1] ? s[nt][i] : -INFINITY;
      s[nt][i] = v;
      mx[i >> 1] = fmaxf(mx[i >> 1], v);
    }
}
#endif

}  // namespace hs::kernels::detail
