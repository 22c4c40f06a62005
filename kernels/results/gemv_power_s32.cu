// Session 32 experiment, not part of the build. Does the order in which a batch-1 GEMV reads its
// weights change the board's power at the same bandwidth? At its 700 W limit an H200 lowers the SM
// clock (kernels/NOTES.md, session 31), and the Engine's batch-1 step with the per-warp GEMV
// (src/backend/cuda/gemv.cu) sits there, while a torch sum reads 4.22 TB/s at 483 W. Kernels,
// each y = W x (bf16 W [m x k] and x, float y) except `read`:
//   warp R:U:S  the per-warp kernel of gemv.cu (a warp per R rows, U 16-byte loads per lane in
//               flight, S warps per row each a contiguous part of k): its rows progress side by side,
//               so at any moment the loads in flight are thousands of 1 KB pieces 8 KB apart
//   block T:G   T threads share each row (thread t takes vectors t, t + T, ... of it), G rows at a
//               time, the next G rows' loads issued before the block adds up the current ones;
//               blocks take groups in grid order, so the loads in flight are one contiguous window
//               (persistent: one wave of blocks walking the groups; else one group per block)
//   read        the matrix summed as one flat array by a grid-stride loop (the floor: no rows)
// Each runs back to back for about --secs seconds per shape on enough copies of W that the L2 holds
// none of them; the program writes "epoch start|end NAME" lines to --marks for
// scripts/power_log.py, with nvidia-smi logging alongside (.device/s32c.sh).
//   nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -o gemv_power gemv_power_s32.cu
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <string>
#include <vector>

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

__device__ __forceinline__ float dot8(const uint4& w, const uint4& x) {
  const __nv_bfloat162* a = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* b = reinterpret_cast<const __nv_bfloat162*>(&x);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float2 fa = __bfloat1622float2(a[j]), fb = __bfloat1622float2(b[j]);
    s += fa.x * fb.x + fa.y * fb.y;
  }
  return s;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The per-warp kernel, as gemv.cu has it (without the programmatic launch and beta).
template <int R, int U, int KS>
__global__ void __launch_bounds__(256) warp_rows(const uint4* __restrict__ x, const uint4* __restrict__ W, int m,
                                                 int k_vec, float* __restrict__ y) {
  constexpr int kRowWarps = 8 / KS;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp / kRowWarps;
  const int row0 = (blockIdx.x * kRowWarps + warp % kRowWarps) * R;
  const bool live = row0 < m;
  const int per_part = (k_vec + 32 * KS - 1) / (32 * KS) * 32;
  const int i_begin = part * per_part + lane, i_end = min(k_vec, (part + 1) * per_part);
  const uint4* w[R];
#pragma unroll
  for (int r = 0; r < R; ++r) w[r] = W + static_cast<int64_t>(min(row0 + r, m - 1)) * k_vec;
  uint4 wv[U][R];
  auto load = [&](int i0) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = i0 + 32 * u < i_end ? __ldcs(w[r] + i0 + 32 * u) : make_uint4(0, 0, 0, 0);
  };
  if (KS == 1 && !live) return;
  if (live) load(i_begin);
  float acc[R] = {};
  for (int i0 = i_begin; live && i0 < i_end;) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const uint4 xv = i0 + 32 * u < i_end ? __ldg(x + i0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] += dot8(wv[u][r], xv);
    }
    i0 += 32 * U;
    if (i0 < i_end) load(i0);
  }
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
  if constexpr (KS > 1) {
    __shared__ float part_sum[KS][kRowWarps][R];
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < R; ++r) part_sum[part][warp % kRowWarps][r] = acc[r];
    __syncthreads();
    if (part > 0) return;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int q = 1; q < KS; ++q) acc[r] += part_sum[q][warp][r];
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
    if (lane == 0 && row0 + r < m) y[row0 + r] = acc[r];
}

// T threads per row, NV = k_vec / T vectors of each row per thread, G rows per group.
template <int T, int NV, int G>
__global__ void __launch_bounds__(T) block_rows(const uint4* __restrict__ x, const uint4* __restrict__ W, int m,
                                                float* __restrict__ y) {
  constexpr int kW = T / 32, k_vec = T * NV;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int groups = (m + G - 1) / G;
  __shared__ float red[2][kW][G];
  uint4 wv[G][NV];
  auto load = [&](int g) {
#pragma unroll
    for (int r = 0; r < G; ++r) {
      const uint4* row = W + static_cast<int64_t>(min(g * G + r, m - 1)) * k_vec + tid;
#pragma unroll
      for (int v = 0; v < NV; ++v) wv[r][v] = __ldcs(row + T * v);
    }
  };
  int g = blockIdx.x;
  if (g >= groups) return;
  load(g);
  uint4 xv[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v) xv[v] = __ldg(x + tid + T * v);
  for (int buf = 0; g < groups; g += gridDim.x, buf ^= 1) {
    float acc[G];
#pragma unroll
    for (int r = 0; r < G; ++r) {
      acc[r] = 0.f;
#pragma unroll
      for (int v = 0; v < NV; ++v) acc[r] += dot8(wv[r][v], xv[v]);
    }
    if (g + static_cast<int>(gridDim.x) < groups) load(g + gridDim.x);
#pragma unroll
    for (int r = 0; r < G; ++r) acc[r] = warp_sum(acc[r]);
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < G; ++r) red[buf][warp][r] = acc[r];
    __syncthreads();  // red[buf] is written again two groups on, after the next group's barrier
    if (tid < G && g * G + tid < m) {
      float s = 0.f;
#pragma unroll
      for (int w = 0; w < kW; ++w) s += red[buf][w][tid];
      y[g * G + tid] = s;
    }
  }
}

// The floor: the matrix as one flat array of bf16, summed by a grid-stride loop, 4 loads in flight.
__global__ void __launch_bounds__(256) read_sum(const uint4* __restrict__ W, int64_t n_vec, float* __restrict__ out) {
  const uint4 ones = make_uint4(0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  float s = 0.f;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n_vec; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = __ldcs(W + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) s += dot8(v[u], ones);
  }
  for (; i < n_vec; i += stride) s += dot8(__ldcs(W + i), ones);
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, s);
}

struct Kernel {
  std::string name;
  // Enqueues one call on W (m x k); returns false where the kernel has no instance for k.
  bool (*run)(const uint4* x, const uint4* W, int m, int k, float* y, int sms);
};

template <int R, int U, int KS>
bool run_warp(const uint4* x, const uint4* W, int m, int k, float* y, int) {
  const int per_block = 8 / KS * R;
  warp_rows<R, U, KS><<<(m + per_block - 1) / per_block, 256>>>(x, W, m, k / 8, y);
  return true;
}

template <int T, int G, bool kPersistent>
bool run_block(const uint4* x, const uint4* W, int m, int k, float* y, int sms) {
  auto go = [&](auto kernel) {
    const int groups = (m + G - 1) / G;
    int grid = groups;
    if (kPersistent) {
      int per_sm = 0;
      CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, T, 0));
      grid = std::min(groups, per_sm * sms);
    }
    kernel<<<grid, T>>>(x, W, m, y);
    return true;
  };
  // Instances where a thread's G rows of loads fit in registers (G * NV <= 32 vectors).
  switch (k / 8 % T == 0 ? k / 8 / T : 0) {
    case 1: return go(block_rows<T, 1, G>);
    case 2: return go(block_rows<T, 2, G>);
    case 7:
      if constexpr (G <= 4) return go(block_rows<T, 7, G>);
      return false;
    default: return false;
  }
}

bool run_read(const uint4*, const uint4* W, int m, int k, float* y, int sms) {
  read_sum<<<sms * 8, 256>>>(W, static_cast<int64_t>(m) * k / 8, y);
  return true;
}

static double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  double secs = 4.0;
  std::string marks_path = "marks.tsv", json_path = "gemv_power.json";
  std::vector<std::pair<int, int>> shapes = {{28672, 4096}, {4096, 4096}, {4096, 14336}};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--secs")) secs = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--marks")) marks_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--json")) json_path = argv[i + 1];
  }
  const std::vector<Kernel> kernels = {
      {"warp 1:2:4", run_warp<1, 2, 4>},         {"warp 1:2", run_warp<1, 2, 1>},
      {"warp 2:4", run_warp<2, 4, 1>},           {"block 256:4", run_block<256, 4, false>},
      {"block 256:4 persistent", run_block<256, 4, true>},
      {"block 256:2 persistent", run_block<256, 2, true>},
      {"block 256:8 persistent", run_block<256, 8, true>},
      {"block 512:8 persistent", run_block<512, 8, true>},
      {"read", run_read},
  };
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  FILE* marks = std::fopen(marks_path.c_str(), "w");
  FILE* js = std::fopen(json_path.c_str(), "w");
  std::fprintf(js, "{\"device\": \"%s\", \"results\": [", prop.name);
  bool first_json = true;
  std::printf("%-12s %-24s %9s %7s %10s %10s\n", "shape", "kernel", "us/call", "TB/s", "calls", "max rel");
  for (const auto& shape : shapes) {
    const int m = shape.first, k = shape.second;
    const size_t w_bytes = size_t(m) * k * 2;
    const int copies = static_cast<int>(std::max<size_t>(1, (size_t(4) * prop.l2CacheSize + w_bytes - 1) / w_bytes));
    // Random bf16 weights in [-1, 1) and x, the same for every copy.
    std::vector<uint16_t> hw(size_t(m) * k), hx(k);
    uint64_t st = 0x9e3779b97f4a7c15ull;
    auto rnd = [&] {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      const float f = static_cast<float>(st >> 40) / static_cast<float>(1 << 24) * 2.f - 1.f;
      uint32_t b;
      std::memcpy(&b, &f, 4);
      return static_cast<uint16_t>(b >> 16);
    };
    for (auto& v : hw) v = rnd();
    for (auto& v : hx) v = rnd();
    uint4 *dw, *dx;
    float* dy;
    CK(cudaMalloc(&dw, w_bytes * copies));
    CK(cudaMalloc(&dx, k * 2));
    CK(cudaMalloc(&dy, m * 4));
    for (int c = 0; c < copies; ++c)
      CK(cudaMemcpy(reinterpret_cast<char*>(dw) + c * w_bytes, hw.data(), w_bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dx, hx.data(), k * 2, cudaMemcpyHostToDevice));
    // The reference: double sums on the host.
    std::vector<double> ref(m);
    auto f32 = [](uint16_t h) {
      uint32_t b = uint32_t(h) << 16;
      float f;
      std::memcpy(&f, &b, 4);
      return static_cast<double>(f);
    };
    for (int r = 0; r < m; ++r) {
      double s = 0;
      for (int i = 0; i < k; ++i) s += f32(hw[size_t(r) * k + i]) * f32(hx[i]);
      ref[r] = s;
    }
    std::vector<float> got(m);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (const Kernel& kn : kernels) {
      const uint4* w0 = dw;
      CK(cudaMemset(dy, 0, m * 4));
      if (!kn.run(dx, w0, m, k, dy, sms)) {
        std::printf("%-12s %-24s %9s\n", (std::to_string(m) + "x" + std::to_string(k)).c_str(), kn.name.c_str(), "no instance");
        continue;
      }
      CK(cudaDeviceSynchronize());
      CK(cudaMemcpy(got.data(), dy, m * 4, cudaMemcpyDeviceToHost));
      double worst = 0;  // the largest error relative to the row's sum of |w x|
      if (kn.name != "read") {
        for (int r = 0; r < m; ++r) {
          if (r >= 64 && r < m - 64 && r % 61 != 0) continue;  // both ends and every 61st row
          double mag = 0;
          for (int i = 0; i < k; ++i) mag += std::fabs(f32(hw[size_t(r) * k + i]) * f32(hx[i]));
          worst = std::max(worst, std::fabs(got[r] - ref[r]) / mag);
        }
      }
      auto call = [&](int c) {
        kn.run(dx, reinterpret_cast<const uint4*>(reinterpret_cast<const char*>(dw) + size_t(c % copies) * w_bytes), m,
               k, dy, sms);
      };
      CK(cudaEventRecord(e0));
      for (int c = 0; c < 50; ++c) call(c);
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float ms = 0;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      const int calls = std::max(100, static_cast<int>(secs * 1e3 / (ms / 50)));
      const std::string name = std::to_string(m) + "x" + std::to_string(k) + " " + kn.name;
      std::fprintf(marks, "%.6f start %s\n", now_s(), name.c_str());
      std::fflush(marks);
      CK(cudaEventRecord(e0));
      for (int c = 0; c < calls; ++c) call(c);
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      std::fprintf(marks, "%.6f end %s\n", now_s(), name.c_str());
      std::fflush(marks);
      CK(cudaEventElapsedTime(&ms, e0, e1));
      const double us = 1e3 * ms / calls, tbs = w_bytes / (us * 1e-6) / 1e12;
      std::printf("%-12s %-24s %9.2f %7.2f %10d %10.2e\n", (std::to_string(m) + "x" + std::to_string(k)).c_str(),
                  kn.name.c_str(), us, tbs, calls, worst);
      std::fprintf(js, "%s\n {\"shape\": \"%dx%d\", \"kernel\": \"%s\", \"us\": %.3f, \"tbs\": %.4f, \"calls\": %d, \"max_rel\": %.3e}",
                   first_json ? "" : ",", m, k, kn.name.c_str(), us, tbs, calls, worst);
      first_json = false;
      std::fflush(stdout);
      usleep(1500000);  // a gap in the power log between runs
    }
    CK(cudaFree(dw));
    CK(cudaFree(dx));
    CK(cudaFree(dy));
  }
  std::fprintf(js, "\n]}\n");
  std::fclose(js);
  std::fclose(marks);
  return 0;
}
