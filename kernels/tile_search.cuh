// The prefill kernel's search for the keys a tile of queries may attend (host and device, so
// that a CPU test can check it against the rule exhaustively).
#pragma once
#include <cstdint>

#include "sharded_attention.h"

namespace hs::kernels::detail {

__host__ __device__ inline int hs_max(int a, int b) { return a > b ? a : b; }
__host__ __device__ inline int64_t hs_min(int64_t a, int64_t b) { return a < b ? a : b; }

#ifdef __CUDA_ARCH__
#define hs_ldg(p) __ldg(p)
#else
#define hs_ldg(p) (*(p))
#endif

__host__ __device__ inline bool shard_on_stride(const ShardParams& h, int j) {
  return h.stride == 1 || (h.stride > 1 && (j + h.offset) % h.stride == 0);
}

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
// next_unit's test without its skipping; the wgmma prefill's producer applies it to 32 units at once.
__host__ __device__ inline bool unit_attended(const TileQuery& q, int j, int so, bool always) {
  return (always || hs_max(q.i0, j) - j < q.sh.local) &&
         (q.window == 0 || (j << q.logB) + so + q.U - 1 > q.t0 - q.window);
}

// The next unit (entry e, slot offset so) at or after (e, so) that some query of the tile may
// attend; false when there is none. Uniform across the block (every thread computes it).
__host__ __device__ inline bool next_unit(const int* __restrict__ blocks, int eb, const TileQuery& q, int& e,
                                          int& so) {
  while (e < eb) {
    const int j = hs_ldg(blocks + e);
    const int base = j << q.logB;
    if (base + so > q.t1) return false;  // blocks ascend: the rest is after every query
    int jt;                              // a block no needed unit precedes
    const bool always = j < q.sh.sink || shard_on_stride(q.sh, j);
    if (always || hs_max(q.i0, j) - j < q.sh.local) {
      if (q.window == 0 || base + so + q.U - 1 > q.t0 - q.window) return true;
      const int jw = (q.t0 - q.window + 1) >> q.logB;  // block of the window's first key for t0
      if (j >= jw) {  // a later unit of this block may be inside the window
        so += q.U;
        if (so >= q.B) {
          so = 0;
          ++e;
        }
        continue;
      }
      jt = jw;
    } else {
      jt = hs_max(j + 1, q.i0 - q.sh.local + 1);  // the window of the tile's first query block
      if (q.sh.stride > 1) {
        int c1 = j + 1;
        const int r = (c1 + q.sh.offset) % q.sh.stride;
        if (r) c1 += q.sh.stride - r;
        jt = int(hs_min(jt, c1));
      }
    }
    // First entry in (e, e + (jt - j)] with block >= jt: blocks ascend strictly, so entry
    // e + (jt - j) (when it exists) already has block >= jt.
    so = 0;
    int lo = e + 1;
    int hi = int(hs_min(int64_t(e) + (jt - j) + 1, int64_t(eb)));
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (hs_ldg(blocks + mid) < jt)
        lo = mid + 1;
      else
        hi = mid;
    }
    e = lo;
  }
  return false;
}

#ifdef __CUDACC__
// Item `it`'s tile of at most bm query rows of its chunk (n_rows of them real) against KV head
// kvh's shard, for units of at most bn keys.
__device__ inline TileQuery prefill_tile(const PagedAttentionArgs& a, const PrefillWorkItem& it, int kvh, int bm,
                                         int bn, int& n_rows) {
  const int pos0 = a.chunk_pos0[it.chunk];
  n_rows = min(bm, a.chunk_tok0[it.chunk + 1] - a.chunk_tok0[it.chunk] - it.q_start);
  TileQuery q;
  q.B = a.block_size;
  q.logB = __ffs(q.B) - 1;
  q.U = min(q.B, bn);
  q.window = a.window;
  q.sh = a.shards[kvh];
  q.t0 = pos0 + it.q_start;
  q.t1 = q.t0 + n_rows - 1;
  q.i0 = q.t0 >> q.logB;
  q.i1 = q.t1 >> q.logB;
  return q;
}

// A tile's scores for this thread's rows (positions tr0 and tr0 + 8) in the mma fragment layout,
// unless the tile is interior (every query sees every key), set to -inf where the rule hides the
// key: keys[c] is key c's (position << 1 | block always kept), or -1. mx gets each row's largest.
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
  const int tr1 = tr0 + 8, qb0 = tr0 >> q.logB, qb1 = tr1 >> q.logB;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int2 kv = *reinterpret_cast<const int2*>(keys + nt * 8 + (lane & 3) * 2);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int key = (i & 1) ? kv.y : kv.x;
      const int tq = (i >> 1) ? tr1 : tr0;
      const int qb = (i >> 1) ? qb1 : qb0;
      const int ks = key >> 1;
      const bool ok = key >= 0 && ks <= tq && ((key & 1) || qb - (ks >> q.logB) < q.sh.local) &&
                      (q.window == 0 || tq - ks < q.window);
      const float v = ok ? s[nt][i] : -INFINITY;
      s[nt][i] = v;
      mx[i >> 1] = fmaxf(mx[i >> 1], v);
    }
  }
}
#endif

}  // namespace hs::kernels::detail
