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

}  // namespace hs::kernels::detail
