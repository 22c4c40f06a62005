// Session 46 experiment, not part of the build. Does the way a block requests the pool's bytes set the
// rate of the decode's slower multiprocessors? cuDNN's decode kernel (two 128-thread blocks per SM, every
// thread copying by cp.async) ends 64 x 4k about 1 us sooner than ours (two blocks per SM, a producer
// warp's bulk tensor copies) with the same grid and bytes (kernels/NOTES.md, session 46). This program
// streams the pool as the decode does, with no attention arithmetic (each thread reads one 16-byte word
// of every stage), in both ways, each run after a 256 MB read (the benchmark's flush):
//   tma     a producer warp issues each page's K then V as two 64-column boxes each (128-byte
//           swizzle), as decode_tma_kernel does; four consumer warps wait on the stage, read, release
//   cpasync 128 threads copy each page (K and V, 32 KB) by cp.async.cg, 16 bytes a thread sixteen times
//           a stage, S - 1 stages in flight; then a barrier, read, barrier
// at S = 2 or 3 stages of one page, two blocks per SM (101 KB each), and "lone" (192 KB: one
// block per SM, three stages). One block per item of P consecutive 32 KB pages. Rounds take turns over
// every configuration; medians over the rounds' runs.
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o stream_cpasync stream_cpasync_s46.cu -lcuda
//   ./stream_cpasync [JSON]
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../tma.cuh"

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

constexpr int kPageBytes = 32768, kTileBytes = 16384;

using hs::kernels::detail::mbar_arrive;
using hs::kernels::detail::mbar_arrive_expect_tx;
using hs::kernels::detail::mbar_init;
using hs::kernels::detail::mbar_wait;
using hs::kernels::detail::tma_load_2d;
__device__ __forceinline__ uint32_t sa(const void* p) { return hs::kernels::detail::smem_addr(p); }

struct Args {
  CUtensorMap map;
  const unsigned char* pool;
  int pages_per_item, stages;
  unsigned* sink;
};

__device__ __forceinline__ unsigned touch(const unsigned char* stage) {  // one word of the stage a thread
  return reinterpret_cast<const uint4*>(stage)[threadIdx.x & 127].x;
}

__global__ void __launch_bounds__(160) tma_kernel(const __grid_constant__ Args a) {
  extern __shared__ unsigned char raw[];
  unsigned char* smem = raw + ((1024 - (sa(raw) & 1023)) & 1023);
  __shared__ __align__(8) uint64_t full[4], empty[4];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, S = a.stages, n = a.pages_per_item;
  const int64_t page0 = int64_t(blockIdx.x) * n;
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
      unsigned char* K = smem + st * kPageBytes;
      const int row = int((page0 + k) * 128);  // rows of 256 bytes, 128 a page (K's 64, then V's)
      for (int b = 0; b < 2; ++b) tma_load_2d(K + b * 8192, &a.map, b * 64, row, &full[st]);
      for (int b = 0; b < 2; ++b) tma_load_2d(K + kTileBytes + b * 8192, &a.map, b * 64, row + 64, &full[st]);
    }
  } else {
    unsigned acc = 0;
    for (int k = 0; k < n; ++k) {
      const int st = k % S;
      mbar_wait(&full[st], (k / S) & 1);
      acc ^= touch(smem + st * kPageBytes);
      __syncwarp();
      if (lane == 0) mbar_arrive(&empty[st]);
    }
    if (acc == 0x9e3779b9u) a.sink[0] = acc;  // keeps the reads; the pool is zero
  }
}

template <int S>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(S) : "memory");
}

template <int S>
__global__ void __launch_bounds__(128) cpasync_kernel(const Args a) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int tid = threadIdx.x, n = a.pages_per_item;
  const unsigned char* src = a.pool + int64_t(blockIdx.x) * n * kPageBytes;
  auto issue = [&](int k) {
    if (k < n) {
      const unsigned char* g = src + int64_t(k) * kPageBytes;
      unsigned char* d = smem + (k % S) * kPageBytes;
#pragma unroll
      for (int u = 0; u < kPageBytes / 16 / 128; ++u) {
        const int off = (u * 128 + tid) * 16;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa(d + off)), "l"(g + off) : "memory");
      }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  };
  for (int k = 0; k < S - 1; ++k) issue(k);
  unsigned acc = 0;
  for (int k = 0; k < n; ++k) {
    cp_wait<S - 2>();  // this thread's copies of page k have landed
    __syncthreads();   // everyone's; and everyone is done with page k - 1, whose stage is refilled next
    issue(k + S - 1);
    acc ^= touch(smem + (k % S) * kPageBytes);
  }
  if (acc == 0x9e3779b9u) a.sink[0] = acc;
}

__global__ void read_flush(const uint4* buf, int64_t n, unsigned* sink) {
  unsigned acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    acc ^= buf[i].x;
  if (acc == 0x9e3779b9u) sink[1] = acc;
}

int main(int argc, char** argv) {
  const char* json = argc > 1 ? argv[1] : nullptr;
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  struct Shape { const char* name; int items, pages; };
  const Shape shapes[] = {{"64x4k", 512, 64}, {"16x4k", 128, 64}, {"16x32k", 128, 512}, {"64x32k", 512, 512}};
  int64_t max_pages = 0;
  for (const Shape& s : shapes) max_pages = std::max<int64_t>(max_pages, int64_t(s.items) * s.pages);
  unsigned char *pool = nullptr, *flush = nullptr;
  unsigned* sink = nullptr;
  CK(cudaMalloc(&pool, max_pages * kPageBytes));
  CK(cudaMemset(pool, 0, max_pages * kPageBytes));
  CK(cudaMalloc(&sink, 8));
  const size_t flush_bytes = size_t(256) << 20;
  CK(cudaMalloc(&flush, flush_bytes));
  CK(cudaMemset(flush, 1, flush_bytes));

  void* enc = nullptr;
  cudaDriverEntryPointQueryResult q{};
  CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &enc, 12000, cudaEnableDefault, &q));
  CUtensorMap map;
  const cuuint64_t dims[2] = {128, cuuint64_t(max_pages) * 128}, strides[1] = {256};
  const cuuint32_t box[2] = {64, 64}, es[2] = {1, 1};
  if (reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(enc)(
          &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, pool, dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) !=
      CUDA_SUCCESS) {
    std::fprintf(stderr, "tensor map failed\n");
    return 1;
  }
  CK(cudaFuncSetAttribute(tma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 192 << 10));
  CK(cudaFuncSetAttribute(cpasync_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 192 << 10));
  CK(cudaFuncSetAttribute(cpasync_kernel<3>, cudaFuncAttributeMaxDynamicSharedMemorySize, 192 << 10));

  struct Config { const char* name; bool tma; int stages; size_t smem; };
  // S2 is padded to S3's shared memory, so that both run two blocks per SM (the decode's two-stage instance).
  const size_t pair = 3 * 32768 + 5120;
  const Config configs[] = {{"tma S2", true, 2, pair},      {"tma S3", true, 3, pair},
                            {"cpasync S2", false, 2, pair}, {"cpasync S3", false, 3, pair},
                            {"tma lone", true, 3, 192 << 10}, {"cpasync lone", false, 3, 192 << 10}};
  const int n_cfg = sizeof(configs) / sizeof(configs[0]);
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  FILE* js = json ? std::fopen(json, "w") : nullptr;
  if (js) std::fprintf(js, "{\"rows\": [\n");
  bool first = true;
  std::printf("%-7s %-13s %6s %9s %9s %9s %7s\n", "shape", "config", "per_sm", "median us", "min", "max", "TB/s");
  for (const Shape& sh : shapes) {
    const double bytes = double(sh.items) * sh.pages * kPageBytes;
    std::vector<std::vector<float>> t(n_cfg);
    auto run = [&](const Config& c) {
      Args a{};
      a.map = map;
      a.pool = pool;
      a.pages_per_item = sh.pages;
      a.stages = c.stages;
      a.sink = sink;
      read_flush<<<sms * 4, 512>>>(reinterpret_cast<const uint4*>(flush), int64_t(flush_bytes / 16), sink);
      CK(cudaEventRecord(e0));
      if (c.tma) tma_kernel<<<sh.items, 160, c.smem>>>(a);
      else if (c.stages == 2) cpasync_kernel<2><<<sh.items, 128, c.smem>>>(a);
      else cpasync_kernel<3><<<sh.items, 128, c.smem>>>(a);
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      CK(cudaGetLastError());
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      return ms * 1e3f;
    };
    for (int c = 0; c < n_cfg; ++c) run(configs[c]);  // warm-up
    for (int round = 0; round < 10; ++round)
      for (int i = 0; i < n_cfg; ++i) {
        const int c = round % 2 ? n_cfg - 1 - i : i;
        for (int r = 0; r < 5; ++r) t[c].push_back(run(configs[c]));
      }
    for (int c = 0; c < n_cfg; ++c) {
      std::vector<float> v = t[c];
      std::sort(v.begin(), v.end());
      const double med = v[v.size() / 2];
      int occ = 0;
      if (configs[c].tma) CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, tma_kernel, 160, configs[c].smem));
      else if (configs[c].stages == 2)
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, cpasync_kernel<2>, 128, configs[c].smem));
      else CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, cpasync_kernel<3>, 128, configs[c].smem));
      std::printf("%-7s %-13s %6d %9.1f %9.1f %9.1f %7.3f\n", sh.name, configs[c].name, occ, med, v.front(), v.back(),
                  bytes / (med * 1e-6) / 1e12);
      if (js)
        std::fprintf(js, "%s{\"shape\": \"%s\", \"config\": \"%s\", \"per_sm\": %d, \"median_us\": %.2f, \"min_us\": %.2f, "
                     "\"max_us\": %.2f, \"runs\": %zu}",
                     first ? "" : ",\n", sh.name, configs[c].name, occ, med, v.front(), v.back(), v.size());
      first = false;
    }
  }
  if (js) std::fprintf(js, "\n]}\n"), std::fclose(js);
  return 0;
}
