// The copy engine (TMA) and mbarriers, as the copy-engine attention kernels use them: the page
// pool as one 2D tensor map, bulk tensor copies of 64-column boxes into shared memory (128-byte
// swizzle), and the barriers that count their bytes.
#pragma once
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "sharded_attention.h"

namespace hs::kernels::detail {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  while (!done)
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
}
// Rows [row, row + box rows) and columns [col, col + 64) of the tensor map, into dst (the box's
// swizzled layout), completing `bytes` on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int col, int row, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_addr(dst)),
      "l"(map), "r"(col), "r"(row), "r"(smem_addr(bar))
      : "memory");
}

// Box at (c0, c1, c2) of a 3D tensor map into dst, completing its bytes on bar.
__device__ __forceinline__ void tma_load_3d(void* dst, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_addr(dst)),
      "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar))
      : "memory");
}

// Starts fetching a tensor map into the copy engine's descriptor cache, so that the first copy
// through it does not wait for the descriptor (map: a kernel parameter).
__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(map) : "memory");
}

// Byte address of 16-byte chunk c of row r in a tile of 64-column boxes of 128-byte rows, each box
// BoxBytes after the one before and 1024-byte aligned, with the copy engine's 128-byte swizzle.
template <int BoxBytes, typename Byte>
__device__ __forceinline__ Byte* sw128_chunk(Byte* tile, int r, int c) {
  return tile + (c >> 3) * BoxBytes + r * 128 + (((c & 7) ^ (r & 7)) << 4);
}

// The same for a tile whose rows are Parts 128-byte lines each, in address order (line r * Parts +
// c / 8), the swizzle by the line's index.
template <int Parts, typename Byte>
__device__ __forceinline__ Byte* sw128_row_chunk(Byte* tile, int r, int c) {
  const int line = r * Parts + (c >> 3);
  return tile + line * 128 + (((c & 7) ^ (line & 7)) << 4);
}

// The current device's compute capability (major); 0 when it cannot be read.
int compute_capability_major();

// The pool as a [pages * 2B][head_dim] bf16 tensor for the copy engine, in boxes of min(B, 64)
// rows by 64 columns with the 128-byte swizzle. False when the copy engine cannot take it (pool
// size unknown, more rows than an int32 coordinate reaches, a GPU older than compute capability 9).
// promotion: what the L2 fetches for each request. The prefill has it fetch 256 bytes (a whole row
// at D = 128); the decode streams with none: with 256 bytes, decode at batch 16 and up with 32k and
// 128k contexts took 2-9% longer (kernels/NOTES.md, session 9). The prefill measured the same
// either way.
bool pool_tensor_map(const PagedAttentionArgs& a, CUtensorMap& map, CUtensorMapL2promotion promotion);

}  // namespace hs::kernels::detail
