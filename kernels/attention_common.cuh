// Device helpers shared by the attention kernels: cp.async, ldmatrix, mma.sync (bf16, fp32
// accumulate), the swizzled shared-memory tile layout, and the HCS rule.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "sharded_attention.h"

namespace hs::kernels::detail {

constexpr float kLog2e = 1.4426950408889634f;

// 16-byte asynchronous copy global -> shared; when !pred nothing is read and the 16 bytes are
// zeroed (src-size 0).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ldmatrix from a shared-window address (a) or a generic pointer to shared memory.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t a) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  ldmatrix_x4(r, static_cast<uint32_t>(__cvta_generic_to_shared(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  ldmatrix_x4_trans(r, static_cast<uint32_t>(__cvta_generic_to_shared(smem)));
}

// D (16x8 fp32) += A (16x16 bf16, row) * B (16x8 bf16, col).
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// 2^x by the special-function unit alone (exp2f adds a range fix-up of three instructions for
// results below 2^-126, which a softmax can flush to zero).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// The online-softmax step of this thread's two rows of an m16 tile (lane / 4 and lane / 4 + 8) over
// NT n8 blocks of raw scores s, hidden keys at -inf, mx holding each row's largest score here:
// with sl the softmax scale in log2 units, updates the running max m (log2 units) and sum l, and
// leaves P in s and O's factor in alpha.
template <int NT, int kChunks = 1>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float (&mx)[2], float sl, float (&m)[2],
                                             float (&l)[2], float (&alpha)[2]) {
  float base[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float mn = fmaxf(m[r], mx[r] * sl);
    base[r] = mn == -INFINITY ? 0.f : mn;
    alpha[r] = fast_exp2(m[r] - base[r]);
    m[r] = mn;
  }
  float rs[2] = {0.f, 0.f};
  static_assert(NT % kChunks == 0, "chunks of whole n8 blocks");
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float pv = fast_exp2(fmaf(s[nt][i], sl, -base[i >> 1]));
      s[nt][i] = pv;
      rs[i >> 1] += pv;
    }
    // With kChunks > 1 the next chunk's inputs wait for this chunk's first exponentials (p * 0 + base
    // is base: p is finite), so that ptxas spreads their FFMAs among the MUFUs instead of issuing
    // them all first.
    if (nt % (NT / kChunks) == 0 && nt + NT / kChunks < NT) {
      base[0] = fmaf(s[nt][0], 0.f, base[0]);
      base[1] = fmaf(s[nt][2], 0.f, base[1]);
    }
  }
  l[0] = l[0] * alpha[0] + rs[0];
  l[1] = l[1] * alpha[1] + rs[1];
}

// Accumulator fragments of the same two rows, times alpha.
template <int N>
__device__ __forceinline__ void scale_rows(float (&o)[N][4], const float (&alpha)[2]) {
#pragma unroll
  for (int dn = 0; dn < N; ++dn) {
    o[dn][0] *= alpha[0];
    o[dn][1] *= alpha[0];
    o[dn][2] *= alpha[1];
    o[dn][3] *= alpha[1];
  }
}

// P of n8 blocks 2 kk and 2 kk + 1 (after softmax_step) as the bf16 A fragment of k-step kk.
template <int NT>
__device__ __forceinline__ void p_fragment(const float (&s)[NT][4], int kk, uint32_t (&pa)[4]) {
  pa[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
  pa[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
  pa[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  pa[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// A tile of rows of D bf16 in shared memory, 16-byte chunks XOR-swizzled by row so that
// ldmatrix (8 rows, one chunk column) and the row-wise cp.async fills are free of bank conflicts.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

// Tuning variants (set_kernel_variant): which = 0 decode, 1 prefill.
int kernel_variant(int which);
bool decode_tiles_off();  // decode variant 10

// The warpgroup-MMA prefill kernel (prefill_wgmma.cu): launches it and sets err when it can take p
// (head dim 128, the pool known to the copy engine, built for sm_90a and running on compute
// capability 9); false otherwise.
bool launch_prefill_wgmma(const PrefillParams& p, cudaStream_t stream, cudaError_t& err);

// Calls f(D) with D the head dim as a std::integral_constant (the instantiations the kernels
// provide); `unsupported` for any other head dim.
template <typename R, typename F>
R with_head_dim(int head_dim, R unsupported, F&& f) {
  switch (head_dim) {
    case 64: return f(std::integral_constant<int, 64>{});
    case 128: return f(std::integral_constant<int, 128>{});
    case 256: return f(std::integral_constant<int, 256>{});
    default: return unsupported;
  }
}

// The HCS block rule for query block i and key block j <= i (on_stride and always_kept: host and
// device, for the tile search's CPU test).
__host__ __device__ inline bool on_stride(const ShardParams& h, int j) {
  return h.stride == 1 || (h.stride > 1 && (j + h.offset) % h.stride == 0);
}
// Whether the shard keeps key block j for every query block (a sink, or on the stride).
__host__ __device__ inline bool always_kept(const ShardParams& h, int j) { return j < h.sink || on_stride(h, j); }
__device__ __forceinline__ bool attends_block(const ShardParams& h, int i, int j) {
  return j < h.sink || i - j < h.local || on_stride(h, j);
}

}  // namespace hs::kernels::detail
