// Prefill / chunked-prefill attention at head dim 128 on Hopper's warpgroup MMA (the default
// prefill kernel there; set_kernel_variant). Same work split and results as the mma.sync kernels
// of prefill_attention.cu:
// one block per (query head, tile of 128 query rows), walking only the units of its KV head's
// list that some query of the tile may attend (tile_search.cuh). With an even GQA group the block
// instead takes two query heads of one KV head and a tile of 64 query rows (a warpgroup each, on the
// same keys): a 128-row tile computes the union of its two query blocks' keys for both, which at
// 8k tokens under the strided plans is 4-5% more work than each block's own (kernels/NOTES.md,
// session 22).
//
// The block is two consumer warpgroups of 64 query rows each and a producer warpgroup, which
// gives most of its registers to the consumers (setmaxnreg) and of which one warp works:
// - the producer finds each 64-key tile's units and has the copy engine bring their K and V rows
//   (one 64-column box per half of a unit's rows, 128-byte swizzle) into a ring of six stages,
//   each with a "full" and an "empty" mbarrier; it publishes each key's position and whether the
//   rule always keeps its block;
// - each consumer warpgroup takes two stages at a time (128 keys; a list's odd last stage alone),
//   computes S = Q K^T with wgmma (Q from registers, K from shared memory), masks and runs the
//   online softmax on the fragments, and accumulates O += P V with wgmma (P from registers, V from
//   shared memory read N-major).
//   Slots no query may see (past the chunk's last query, or units the list ran out of) can hold
//   anything, NaN included: their V rows are zeroed before P V, as the decode kernel does.
// kernels/NOTES.md (sessions 6 to 8) has what was measured, and the schedules that measured slower.
#include "attention_common.cuh"
#include "tile_search.cuh"
#include "tma.cuh"

namespace hs::kernels::detail {

namespace {

constexpr int kD = 128, kBM = 128;
[[maybe_unused]] constexpr int kBN = 64, kStages = 6;
constexpr int kConsumers = 256;             // two warpgroups
constexpr int kThreads = kConsumers + 128;  // and the producer warpgroup
constexpr int kBoxBytes = 64 * 128;         // 64 rows of 64 bf16 columns
constexpr int kTileBytes = 2 * kBoxBytes;   // K (or V) of 64 keys: the two column halves
constexpr int kQBoxBytes = kBM * 128;       // 128 query rows of 64 columns
constexpr size_t kSmem = 1024 + 2 * kQBoxBytes + size_t(kStages) * 2 * kTileBytes;

// How a stage's scores are masked (its info[][1]): not at all (every query of the tile sees every
// key), by position alone (mask_causal), or by the rule (mask_scores).
enum StageMask : int { kMaskRule, kMaskNone, kMaskCausal };

struct TmaPrefillArgs {
  CUtensorMap kv;  // pool_tensor_map
  PrefillParams p;
};

// A shared-memory matrix descriptor with the 128-byte swizzle (tiles 1024-byte aligned).
__device__ __forceinline__ uint64_t sw128_desc(const void* p, uint32_t lbo, uint32_t sbo) {
  return uint64_t((smem_addr(p) & 0x3FFFF) >> 4) | (uint64_t(lbo >> 4) << 16) | (uint64_t(sbo >> 4) << 32) |
         (uint64_t(1) << 62);
}
// Descriptor d moved on by `bytes` (16-byte units in its low field, which cannot carry: shared
// memory ends below 2^18 bytes). One add before each product, where building the descriptor from an
// address took four dependent uniform instructions (kernels/NOTES.md, session 18).
__device__ __forceinline__ uint64_t desc_plus(uint64_t d, uint32_t bytes) {
  return (d >> 32 << 32) | (uint32_t(d) + (bytes >> 4));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// Keeps the compiler from moving uses of accumulator registers across the wait above.
template <int N>
__device__ __forceinline__ void fence_regs(float (&d)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+f"(d[j][i])::"memory");
}

// The accumulator fragments d[j][0..3] as read-write asm operands, for the wrappers below.
#define HS_ACC4(j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define HS_ACC32 HS_ACC4(0), HS_ACC4(1), HS_ACC4(2), HS_ACC4(3), HS_ACC4(4), HS_ACC4(5), HS_ACC4(6), HS_ACC4(7)

// D (64 x 64 fp32: the warpgroup's accumulator fragments, mma.sync's C layout per warp and n8
// block) = A (64 x 16 in registers: mma.sync's A fragments) B (16 x 64 in shared memory, K-major)
// + (first ? 0 : D).
__device__ __forceinline__ void wgmma_rs_64x64(float (&d)[8][4], const uint32_t (&a)[4], uint64_t db, bool first) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.eq.u32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
      "}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
      : HS_ACC32
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(uint32_t(first)));
}

// D (64 x 128 fp32) += A (64 x 16 in registers: mma.sync's A fragments) B (16 x 128 in shared
// memory, N-major: the transpose bit).
__device__ __forceinline__ void wgmma_rs_64x128(float (&d)[16][4], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.u32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
      "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
      "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
      "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
      "}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
      : HS_ACC32, HS_ACC4(8), HS_ACC4(9), HS_ACC4(10), HS_ACC4(11), HS_ACC4(12), HS_ACC4(13), HS_ACC4(14),
        HS_ACC4(15)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
}
#undef HS_ACC32
#undef HS_ACC4

// wgmma needs the arch-specific target (sm_90a: CMAKE_CUDA_ARCHITECTURES=90a); this says whether
// the device code was built for it.
__device__ const int kBuiltForWgmma =
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    1;
#else
    0;
#endif

__global__ void __launch_bounds__(kThreads, 1) prefill_wgmma_kernel(const __grid_constant__ TmaPrefillArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int S = kStages;
  constexpr int MAXU = kBN / 16;  // units per tile at most (B = 16)
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  unsigned char* Qs = smem;                    // [2 column halves][128 rows][128 B], swizzled
  unsigned char* Kbuf = Qs + 2 * kQBoxBytes;   // stage st: [2 halves][64 keys][128 B]
  unsigned char* Vbuf = Kbuf + S * kTileBytes;
  __shared__ __align__(8) uint64_t full[S], empty[S];
  __shared__ int keys[S][kBN];  // (position << 1 | block always kept), or -1: no query sees it
  __shared__ int info[S][4];    // units (0: the list is done), StageMask, first key, some key is -1

  const PrefillParams& p = args.p;
  const PagedAttentionArgs& a = p.a;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  // The barriers are set up before any load of this thread is in flight (the fence would wait for
  // them), and the copy engine fetches the pool's tensor map while the block finds its first keys.
  if (tid == 0) {
    for (int s = 0; s < S; ++s) {
      mbar_init(&full[s], 32);  // every producer lane: each releases the keys it wrote
      mbar_init(&empty[s], kConsumers);  // every consumer thread releases what it read
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if (tid == kConsumers) tma_prefetch_map(&args.kv);
  // The grid is one row of blocks nested as a group of p.kv_heads_together KV heads, then item,
  // then the group's query-head blocks (hb; a block takes one query head, or two when packed). With
  // one KV head a group, the blocks in flight together read one KV head's keys, which then stay in
  // the L2: with the query-head blocks varying fastest across all KV heads (a single group), the
  // 32k and 128k dense prefills read 11 and 28 times the DRAM bytes and took 1.5-6.5% longer
  // (kernels/NOTES.md, session 33; session 34 timed the groups between).
  // Packed (even group): y = 2i and 2i + 1 take the second and the first half of item i's rows
  // (the later queries first: they see more keys).
  const bool packed = a.group % 2 == 0;
  const int per_kv = packed ? a.group / 2 : a.group, ny = packed ? 2 * p.n_items : p.n_items;
  const int per_group = p.kv_heads_together * per_kv;  // query-head blocks of a group
  const int grp = blockIdx.x / (per_group * ny), r = blockIdx.x - grp * per_group * ny, y = r / per_group;
  const int hb = grp * per_group + r - y * per_group;
  const int kvh = hb / per_kv;
  PrefillWorkItem it = p.items[packed ? y >> 1 : y];
  if (packed) {
    const int half = (~y & 1) * 64;
    it.pos += half;
    it.tok += half;
    it.n_rows = min(it.n_rows - half, 64);
  }
  const int n_rows = it.n_rows;
  if (n_rows <= 0) return;  // packed: an item's second half past its chunk's end
  const int h0 = packed ? 2 * hb : hb;  // the block's (first) query head
  const TileQuery q = prefill_tile(a, it, kvh, kBN);
  const int logU = __ffs(q.U) - 1;
  // Row r of the block's Q (and O) tile: its query head and its row in the tile of queries.
  auto row_head = [&](int r) { return packed ? h0 + (r >> 6) : h0; };
  auto row_query = [&](int r) { return packed ? r & 63 : r; };
  const int64_t q_stride = a.q_stride(), o_stride = a.out_stride();

  __syncthreads();  // the barriers are set up

  if (warp >= kConsumers / 32) {
    // Producer: its warpgroup hands registers to the consumers; one warp works, every lane running
    // the (uniform) search, lane 0 issuing the copies.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (warp != kConsumers / 32) return;
    UnitScan scan(a, it.chunk, kvh, q);
    bool exhausted = false;
    for (int k = 0;; ++k) {
      const int st = k % S;
      if (k >= S) mbar_wait(&empty[st], ((k / S) - 1) & 1);
      int upage[MAXU], urow[MAXU];
      int n_units = 0, first = 0;
      bool interior = true, causal = true;
      int my_key[2] = {-1, -1};  // rows lane and lane + 32 of the tile
#pragma unroll
      for (int u = 0; u < MAXU; ++u) {
        upage[u] = 0;
        urow[u] = 0;
        if (u * q.U >= kBN || exhausted) continue;
        int j;
        bool alw;
        if (!scan.next(a, q, j, upage[u], urow[u], alw)) {
          exhausted = true;
          continue;
        }
        const int s0 = (j << q.logB) + urow[u];
        interior = interior && unit_interior(q, j, s0, alw);
        if (u == 0) first = s0;
        causal = causal && unit_causal(q, j, s0, alw) && s0 == first + u * q.U;
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int r = lane + 32 * hh;
          if ((r >> logU) == u) {
            const int s = s0 + (r & (q.U - 1));
            my_key[hh] = s <= q.t1 ? (s << 1) | int(alw) : -1;
          }
        }
        ++n_units;
      }
      const bool invalid = __any_sync(0xffffffffu, my_key[0] < 0 || my_key[1] < 0);
      keys[st][lane] = my_key[0];
      keys[st][lane + 32] = my_key[1];
      if (lane == 0) {
        info[st][0] = n_units;
        info[st][1] = n_units * q.U < kBN ? kMaskRule : interior ? kMaskNone : causal ? kMaskCausal : kMaskRule;
        info[st][2] = first;
        info[st][3] = invalid;
      }
      __syncwarp();
      if (lane != 0) mbar_arrive(&full[st]);
      if (lane == 0) {
        mbar_arrive_expect_tx(&full[st], uint32_t(n_units) * 2u * uint32_t(q.U) * kD * 2u);
#pragma unroll
        for (int u = 0; u < MAXU; ++u) {
          if (u >= n_units) break;
          const int row = upage[u] * 2 * q.B + urow[u];
          unsigned char* kd = Kbuf + st * kTileBytes + u * q.U * 128;
          unsigned char* vd = Vbuf + st * kTileBytes + u * q.U * 128;
#pragma unroll
          for (int b = 0; b < 2; ++b) {
            tma_load_2d(kd + b * kBoxBytes, &args.kv, b * 64, row, &full[st]);
            tma_load_2d(vd + b * kBoxBytes, &args.kv, b * 64, row + q.B, &full[st]);
          }
        }
      }
      if (n_units == 0) break;
    }
    return;
  }

  // Consumers (232 registers each, the producer warpgroup keeping 40). Q tile: 16-byte chunk c of
  // row r at half c / 8, swizzled (rows past the chunk zero). With these copies and the list's
  // bounds issued before the block's barrier, the barrier came later and the prefill took longer
  // (kernels/NOTES.md, session 23).
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  {
    const __nv_bfloat16* qbase = static_cast<const __nv_bfloat16*>(a.q) + int64_t(it.tok) * q_stride;
    for (int c = tid; c < kBM * 16; c += kConsumers) {
      const int r = c >> 4, ch = c & 15, qr = row_query(r);
      const bool ok = qr < n_rows;
      cp_async16(sw128_chunk<kQBoxBytes>(Qs, r, ch),
                 qbase + (ok ? int64_t(qr) * q_stride + int64_t(row_head(r)) * kD + ch * 8 : 0), ok);
    }
    cp_async_commit();
    cp_async_wait<0>();
    asm volatile("bar.sync 1, %0;\n" ::"n"(kConsumers) : "memory");
  }
  const int g = warp >> 2;                  // warpgroup: rows [64 g, 64 g + 64)
  const int wr0 = 64 * g + 16 * (warp & 3);  // this warp's first row
  const int wg_last = q.t0 + min(row_query(64 * g + 63), n_rows - 1);
  const bool wg_live = row_query(64 * g) < n_rows;
  const float sl = a.scale * kLog2e;
  const int tr0 = q.t0 + row_query(wr0) + (lane >> 2);  // this thread's queries: tr0 and tr0 + 8
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[kD / 8][4] = {};

  // A consumer step takes two stages, 128 keys: with one stage of 64 keys, the costs paid per step
  // (barrier waits, waiting on each product, the row reductions' shuffles) took 11-15% more time on
  // dense prefill at 32k and 128k tokens. A list's odd last stage is a step of its own. The step's
  // keys are tile_keys(st0)[0, 64 * stages).
  static_assert(S % 2 == 0, "steps must not wrap around the ring");
  auto tile_keys = [&](int st0) -> const int* { return &keys[0][0] + st0 * kBN; };
  // Zeroes the V rows of the step's keys that no query sees (each warpgroup for itself).
  auto zero_hidden_v = [&](int st0, int stages) {
    for (int x = tid & 127; x < stages * kBN * 16; x += 128) {
      const int r = x >> 4, c = x & 15, rr = r & (kBN - 1);
      unsigned char* Vt = Vbuf + (st0 + r / kBN) * kTileBytes;
      if (tile_keys(st0)[r] < 0)  // sw128_chunk spelled out: through it the compiler branches around the stores
        *reinterpret_cast<uint4*>(Vt + (c >> 3) * kBoxBytes + rr * 128 + (((c & 7) ^ (rr & 7)) << 4)) =
            uint4{0, 0, 0, 0};
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    asm volatile("bar.sync %0, 128;\n" ::"r"(2 + g) : "memory");
  };
  // The warp's Q rows stay in registers as A fragments, so the products read only K from shared
  // memory (with Q there too, 3-4% slower at 8k to 128k tokens).
  uint32_t qa[kD / 16][4];
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk) {
    const int r = wr0 + ((lane >> 3) & 1) * 8 + (lane & 7), c = kk * 2 + (lane >> 4);
    ldmatrix_x4(qa[kk], sw128_chunk<kQBoxBytes>(Qs, r, c));
  }
  // One step over NS stages from st0. S is one 64 x 64 product per stage (one 64 x 128 product per
  // pair, with a pair's K rows laid out as one matrix, measured the same: kernels/NOTES.md, session 18).
  const uint64_t kdesc = sw128_desc(Kbuf, 16, 1024), vdesc = sw128_desc(Vbuf, kBoxBytes, 1024);
  auto step = [&](auto ns, int st0, bool interior) {
    constexpr int NS = decltype(ns)::value, NT = NS * kBN / 8;
    float s[NT][4];
    const uint64_t ks = desc_plus(kdesc, st0 * kTileBytes), vs = desc_plus(vdesc, st0 * kTileBytes);
    wgmma_fence();
#pragma unroll
    for (int h = 0; h < NS; ++h) {
      float (&sh)[kBN / 8][4] = *reinterpret_cast<float (*)[kBN / 8][4]>(&s[h * kBN / 8][0]);
#pragma unroll
      for (int kk = 0; kk < kD / 16; ++kk)
        wgmma_rs_64x64(sh, qa[kk], desc_plus(ks, h * kTileBytes + (kk >> 2) * kBoxBytes + (kk & 3) * 32),
                       kk == 0);
    }
    wgmma_commit();
    wgmma_wait();
    fence_regs(s);
    float mx[2], alpha[2];
    if (interior) {
      mask_scores(s, tile_keys(st0), true, tr0, q, mx);
    } else {  // each stage as its own StageMask says
      mx[0] = mx[1] = -INFINITY;
#pragma unroll
      for (int h = 0; h < NS; ++h) {
        float (&sh)[kBN / 8][4] = *reinterpret_cast<float (*)[kBN / 8][4]>(&s[h * kBN / 8][0]);
        const int mode = info[st0 + h][1];
        float hx[2];
        if (mode == kMaskCausal) mask_causal(sh, info[st0 + h][2], tr0, hx);
        else mask_scores(sh, tile_keys(st0 + h), mode == kMaskNone, tr0, q, hx);
        mx[0] = fmaxf(mx[0], hx[0]);
        mx[1] = fmaxf(mx[1], hx[1]);
      }
    }
    softmax_step<NT, 4>(s, mx, sl, m, l, alpha);  // 4 chunks: kernels/NOTES.md, session 18
    scale_rows(o, alpha);
    uint32_t pa[NT / 2][4];
#pragma unroll
    for (int kk = 0; kk < NT / 2; ++kk) p_fragment(s, kk, pa[kk]);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < NT / 2; ++kk)  // 16 keys of V a k-step
      wgmma_rs_64x128(o, pa[kk], desc_plus(vs, (kk >> 2) * kTileBytes + (kk & 3) * 16 * 128));
    wgmma_commit();
    wgmma_wait();
    fence_regs(o);
  };

  for (int k = 0;; ++k) {
    const int st0 = (2 * k) % S;
    const uint32_t parity = ((2 * k) / S) & 1;
    mbar_wait(&full[st0], parity);
    if (info[st0][0] == 0) break;
    mbar_wait(&full[st0 + 1], parity);
    const bool last = info[st0 + 1][0] == 0;  // stage st0 + 1 ends the list
    if (wg_live && (info[st0][1] == kMaskNone || info[st0][2] <= wg_last)) {  // some query of the warpgroup sees it
      if (last) {
        if (info[st0][3]) zero_hidden_v(st0, 1);
        step(std::integral_constant<int, 1>{}, st0, info[st0][1] == kMaskNone);
      } else {
        if (info[st0][3] || info[st0 + 1][3]) zero_hidden_v(st0, 2);
        step(std::integral_constant<int, 2>{}, st0, info[st0][1] == kMaskNone && info[st0 + 1][1] == kMaskNone);
      }
    }
    // Each thread releases the stages itself, so that its own reads of their keys and info are
    // ordered before the producer rewrites them (one arrive per warp after __syncwarp() left
    // racecheck reporting the other lanes' reads: kernels/NOTES.md, sessions 19 and 20). The
    // __syncwarp() stays: without it the products' descriptors go through R2UR (89 against 20).
    __syncwarp();
    mbar_arrive(&empty[st0]);
    mbar_arrive(&empty[st0 + 1]);
    if (last) break;
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const float inv0 = l[0] > 0.f ? 1.f / l[0] : 0.f;
  const float inv1 = l[1] > 0.f ? 1.f / l[1] : 0.f;
  // O goes out through the warp's own rows of the Q tile (Q has lived in registers since the
  // start), then as whole 16-byte chunks of two rows per store.
  const int row0 = wr0 + (lane >> 2);
#pragma unroll
  for (int dn = 0; dn < kD / 8; ++dn) {
    *reinterpret_cast<__nv_bfloat162*>(sw128_chunk<kQBoxBytes>(Qs, row0, dn) + (lane & 3) * 4) =
        __floats2bfloat162_rn(o[dn][0] * inv0, o[dn][1] * inv0);
    *reinterpret_cast<__nv_bfloat162*>(sw128_chunk<kQBoxBytes>(Qs, row0 + 8, dn) + (lane & 3) * 4) =
        __floats2bfloat162_rn(o[dn][2] * inv1, o[dn][3] * inv1);
  }
  asm volatile("bar.sync %0, 128;\n" ::"r"(2 + g) : "memory");
  __nv_bfloat16* obase = static_cast<__nv_bfloat16*>(a.out) + int64_t(it.tok) * o_stride;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int r = wr0 + 2 * i + (lane >> 4), ch = lane & 15, qr = row_query(r);
    if (qr < n_rows)
      *reinterpret_cast<uint4*>(obase + int64_t(qr) * o_stride + int64_t(row_head(r)) * kD + ch * 8) =
          *reinterpret_cast<const uint4*>(sw128_chunk<kQBoxBytes>(Qs, r, ch));
  }
#else
  __trap();  // built without sm_90a: the launcher never picks this kernel then
#endif
}

bool wgmma_built() {
  static const bool built = [] {
    int v = 0;
    if (compute_capability_major() != 9 || cudaMemcpyFromSymbol(&v, kBuiltForWgmma, sizeof v) != cudaSuccess)
      return false;
    cudaFuncSetAttribute(prefill_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem));
    return v == 1;
  }();
  return built;
}

}  // namespace

bool launch_prefill_wgmma(const PrefillParams& p, cudaStream_t stream, cudaError_t& err) {
  TmaPrefillArgs args;
  args.p = p;
  if (!wgmma_built() || p.a.head_dim != kD || p.a.out_stride() % 8 || reinterpret_cast<uintptr_t>(p.a.out) % 16 ||
      !pool_tensor_map(p.a, args.kv, CU_TENSOR_MAP_L2_PROMOTION_L2_256B))
    return false;  // the output's rows must take 16-byte stores
  if (p.kv_heads_together < 1 || p.a.n_kv_heads % p.kv_heads_together) args.p.kv_heads_together = 1;
  const int64_t blocks = int64_t(p.a.n_kv_heads) * p.a.group * p.n_items;  // packed: twice the items, half the heads
  prefill_wgmma_kernel<<<unsigned(blocks), kThreads, kSmem, stream>>>(args);
  err = cudaGetLastError();
  return true;
}

}  // namespace hs::kernels::detail

namespace hs::kernels {
bool wgmma_prefill_available() { return detail::wgmma_built(); }
}  // namespace hs::kernels
