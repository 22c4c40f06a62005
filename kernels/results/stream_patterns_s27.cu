// Session 27 experiment, not part of the build (kernels/results/bench_s27_stream_patterns.json: call
// A ran modes 0-4, call C modes 0, 2 and 4-8 without four blocks per SM). How fast the decode's way
// of streaming the page pool reads, against other ways of reading the same bytes. No attention
// arithmetic: one block per item of P consecutive 32 KB pages (K rows [64][128] then V rows, bf16,
// as the pool), a producer warp that fills a ring of stages and four consumer warps that only wait
// for each stage and release it. So each mode's time is the streaming alone, at the decode's grid
// shapes. Each time follows a 256 MB memset (the L2 holds none of the pool), whose write-back
// overlaps the kernel: times run a few percent above the decode's own in bench_attention.py.
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o stream_patterns stream_patterns_s27.cu -lcuda
// Modes (how a stage's K and V tiles, 16 KB each, are fetched):
//   0 tma2d      two 64-column boxes of 64 rows each for K and for V, 128-byte swizzle, no L2
//                promotion, in the order K 0, V 0, K 1, V 1: what decode_tma_kernel issued before
//                session 27
//   1 tma2d_l2   the same with 256-byte L2 promotion
//   2 tma3d      one box per tile that walks the rows in address order ({64 cols, 2 halves, 64
//                rows}, 128-byte swizzle), no promotion
//   3 bulk       one non-tensor bulk copy of 16 KB for K and one for V (no swizzle)
//   4 ldg        no copy engine: all 160 threads load 16-byte words, 8 in flight each
//   5-8 chunkR   2D boxes of R = 64, 32, 16, 8 rows: both column halves of a chunk of rows, then
//                the next chunk; K's tile before V's (R = 64: mode 0 with K's boxes first, what
//                decode_tma_kernel issues since)
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../tma.cuh"

#define CK(x)                                                                             \
  do {                                                                                    \
    cudaError_t e_ = (x);                                                                 \
    if (e_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

constexpr int kPageBytes = 32768, kTileBytes = 16384, kThreads = 160;

using hs::kernels::detail::mbar_arrive;
using hs::kernels::detail::mbar_arrive_expect_tx;
using hs::kernels::detail::mbar_init;
using hs::kernels::detail::mbar_wait;
using hs::kernels::detail::tma_load_2d;
using hs::kernels::detail::tma_load_3d;
__device__ __forceinline__ uint32_t sa(const void* p) { return hs::kernels::detail::smem_addr(p); }
__device__ __forceinline__ void bulk(void* dst, const void* src, uint32_t bytes, uint64_t* b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   sa(dst)),
               "l"(src), "r"(bytes), "r"(sa(b))
               : "memory");
}

struct Args {
  CUtensorMap map;  // mode 0-2, 5-8
  int box_rows;
  const unsigned char* pool;
  int pages_per_item, mode, stages;
  unsigned* sink;
};

__global__ void __launch_bounds__(kThreads) stream_kernel(const __grid_constant__ Args a) {
  extern __shared__ unsigned char raw[];
  unsigned char* smem = raw + ((1024 - (sa(raw) & 1023)) & 1023);
  __shared__ __align__(8) uint64_t full[4], empty[4];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, S = a.stages;
  const int64_t page0 = int64_t(blockIdx.x) * a.pages_per_item;
  const int n = a.pages_per_item;  // one stage per page: K tile and V tile
  if (a.mode == 4) {
    const uint4* src = reinterpret_cast<const uint4*>(a.pool + page0 * kPageBytes);
    const int64_t words = int64_t(n) * kPageBytes / 16;
    unsigned acc = 0;
    for (int64_t i0 = tid; i0 < words; i0 += 8 * kThreads) {
      uint4 v[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) v[u] = i0 + u * kThreads < words ? __ldcs(src + i0 + u * kThreads) : uint4{};
#pragma unroll
      for (int u = 0; u < 8; ++u) acc ^= v[u].x ^ v[u].w;
    }
    if (acc == 0x9e3779b9u) a.sink[0] = acc;  // keeps the loads; the pool is zero
    return;
  }
  if (tid == 0) {
    for (int s = 0; s < S; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], 4);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  if (warp == 4) {
    if (lane != 0) return;
    for (int k = 0; k < n; ++k) {
      const int st = k % S;
      if (k >= S) mbar_wait(&empty[st], ((k / S) - 1) & 1);
      mbar_arrive_expect_tx(&full[st], 2 * kTileBytes);
      unsigned char* K = smem + st * 2 * kTileBytes;
      unsigned char* V = K + kTileBytes;
      const int64_t pg = page0 + k;
      const int row = int(pg * 128);  // 2D/3D maps: rows of 256 bytes, 128 a page
      if (a.mode <= 1) {
        for (int b = 0; b < 2; ++b) {
          tma_load_2d(K + b * 8192, &a.map, b * 64, row, &full[st]);
          tma_load_2d(V + b * 8192, &a.map, b * 64, row + 64, &full[st]);
        }
      } else if (a.mode >= 5) {
        for (int j = 0; j < 64; j += a.box_rows)
          for (int b = 0; b < 2; ++b) tma_load_2d(K + b * 8192 + j * 128, &a.map, b * 64, row + j, &full[st]);
        for (int j = 0; j < 64; j += a.box_rows)
          for (int b = 0; b < 2; ++b) tma_load_2d(V + b * 8192 + j * 128, &a.map, b * 64, row + 64 + j, &full[st]);
      } else if (a.mode == 2) {
        tma_load_3d(K, &a.map, 0, 0, row, &full[st]);
        tma_load_3d(V, &a.map, 0, 0, row + 64, &full[st]);
      } else {
        const unsigned char* g = a.pool + pg * kPageBytes;
        bulk(K, g, kTileBytes, &full[st]);
        bulk(V, g + kTileBytes, kTileBytes, &full[st]);
      }
    }
  } else {
    for (int k = 0; k < n; ++k) {
      const int st = k % S;
      mbar_wait(&full[st], (k / S) & 1);
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[st]);
    }
  }
}

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  void* f = nullptr;
  cudaDriverEntryPointQueryResult q{};
  CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
  return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
}

int main(int argc, char** argv) {
  const char* json = argc > 1 ? argv[1] : nullptr;
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  struct Shape { const char* name; int items, pages; };
  const Shape shapes[] = {{"16x4k", 128, 64},   {"64x4k", 512, 64},     {"16x32k", 128, 512},
                          {"64x32k", 512, 512}, {"16x128k", 128, 2048}, {"256x32k", 2048, 512}};
  int64_t max_pages = 0;
  for (const Shape& s : shapes) max_pages = std::max<int64_t>(max_pages, int64_t(s.items) * s.pages);
  unsigned char* pool = nullptr;
  unsigned* sink = nullptr;
  CK(cudaMalloc(&pool, max_pages * kPageBytes));
  CK(cudaMemset(pool, 0, max_pages * kPageBytes));
  CK(cudaMalloc(&sink, 4));
  const size_t flush_bytes = size_t(256) << 20;
  unsigned char* flush = nullptr;
  CK(cudaMalloc(&flush, flush_bytes));

  const auto encode = encoder();
  const cuuint64_t rows = cuuint64_t(max_pages) * 128;
  CUtensorMap map2d[2], map3d, map_chunk[4];  // map_chunk[i]: boxes of 64 >> i rows
  for (int m = 0; m < 6; ++m) {
    const int promo = m == 1, box_rows = m < 2 ? 64 : 64 >> (m - 2);
    const cuuint64_t dims[2] = {128, rows}, strides[1] = {256};
    const cuuint32_t box[2] = {64, cuuint32_t(box_rows)}, es[2] = {1, 1};
    if (encode(m < 2 ? &map2d[m] : &map_chunk[m - 2], CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, pool, dims, strides, box, es,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               promo ? CU_TENSOR_MAP_L2_PROMOTION_L2_256B : CU_TENSOR_MAP_L2_PROMOTION_NONE,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
      std::fprintf(stderr, "2d map failed\n");
      return 1;
    }
  }
  {
    const cuuint64_t dims[3] = {64, 2, rows}, strides[2] = {128, 256};
    const cuuint32_t box[3] = {64, 2, 64}, es[3] = {1, 1, 1};
    if (encode(&map3d, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, pool, dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
      std::fprintf(stderr, "3d map failed\n");
      return 1;
    }
  }

  // Blocks per SM: 1 (three stages in 192 KB, as the lone instance), 2 (three stages, as the
  // shared one), 3 (two stages, as the triple one), 4 (one stage, padded to four per SM).
  struct Config { int per_sm, stages; size_t smem; };
  const Config configs[] = {{1, 3, 192 << 10}, {2, 3, 3 * 32768 + 1024 + 4096}, {3, 2, 2 * 32768 + 1024 + 4096},
                            {4, 1, 52 << 10}};
  CK(cudaFuncSetAttribute(stream_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 192 << 10));
  const char* mode_names[] = {"tma2d", "tma2d_l2", "tma3d", "bulk", "ldg", "kfirst64", "chunk32", "chunk16", "chunk8"};

  // Device copy for the ceiling (read + write counted).
  float copy_tbs = 0;
  {
    const size_t half = size_t(4) << 30;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> t;
    for (int r = 0; r < 6; ++r) {
      CK(cudaEventRecord(e0));
      CK(cudaMemcpyAsync(pool + half, pool, half, cudaMemcpyDeviceToDevice));
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (r) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    copy_tbs = float(2.0 * half / (t[t.size() / 2] * 1e-3) / 1e12);
  }
  std::printf("device copy %.2f TB/s (read + write)\n", copy_tbs);
  std::printf("%-8s %-9s %6s %6s %10s %7s\n", "shape", "mode", "per_sm", "grid", "us", "TB/s");
  FILE* js = json ? std::fopen(json, "w") : nullptr;
  if (js) std::fprintf(js, "{\"copy_tbs\": %.4f, \"rows\": [\n", copy_tbs);
  bool first = true;
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (const Shape& sh : shapes) {
    const double bytes = double(sh.items) * sh.pages * kPageBytes;
    for (int mode = 0; mode < 9; ++mode)
      for (const Config& c : configs) {
        if (mode == 4 && c.per_sm != 4) continue;  // ldg: no shared memory, as many blocks as fit
        Args a{};
        a.map = mode >= 5 ? map_chunk[mode - 5] : mode == 2 ? map3d : map2d[mode == 1];
        a.box_rows = 64 >> (mode >= 5 ? mode - 5 : 0);
        a.pool = pool;
        a.pages_per_item = sh.pages;
        a.mode = mode;
        a.stages = c.stages;
        a.sink = sink;
        const size_t smem = mode == 4 ? 0 : c.smem;
        int occ = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, stream_kernel, kThreads, smem));
        std::vector<float> t;
        for (int r = 0; r < 8; ++r) {
          CK(cudaMemsetAsync(flush, r, flush_bytes));  // the L2 holds none of the pool
          CK(cudaEventRecord(e0));
          stream_kernel<<<sh.items, kThreads, smem>>>(a);
          CK(cudaEventRecord(e1));
          CK(cudaEventSynchronize(e1));
          CK(cudaGetLastError());
          float ms;
          CK(cudaEventElapsedTime(&ms, e0, e1));
          if (r) t.push_back(ms);
        }
        std::sort(t.begin(), t.end());
        const double us = t[t.size() / 2] * 1e3, tbs = bytes / (us * 1e-6) / 1e12;
        std::printf("%-8s %-9s %6d %6d %10.1f %7.3f\n", sh.name, mode_names[mode], occ, sh.items, us, tbs);
        if (js)
          std::fprintf(js, "%s{\"shape\": \"%s\", \"mode\": \"%s\", \"per_sm\": %d, \"grid\": %d, \"us\": %.2f, \"tbs\": %.4f}",
                       first ? "" : ",\n", sh.name, mode_names[mode], occ, sh.items, us, tbs);
        first = false;
      }
  }
  if (js) std::fprintf(js, "\n]}\n"), std::fclose(js);
  return 0;
}
