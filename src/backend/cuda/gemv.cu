#include "backend/cuda/gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_check.h"
#include "pdl.cuh"

namespace hs::cuda {

namespace {

constexpr int kWarps = 8;  // per block
constexpr int kVec = 8;    // 16-bit elements per 16-byte load

// Eight 16-bit floats, as float pairs.
__device__ void unpack(const uint4& v, __half, float2 (&f)[4]) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = __half22float2(h[j]);
}
__device__ void unpack(const uint4& v, __nv_bfloat16, float2 (&f)[4]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = __bfloat1622float2(h[j]);
}

// Eight elements of the input row x, as loaded: 16-bit X in one 16-byte load, float32 (X = float:
// the residual stream of a normed input, GemvInput) in two.
template <typename X>
struct XVec {
  static constexpr int kWords = std::is_same_v<X, float> ? 2 : 1;
  uint4 v[kWords];
  // Vector i of x (elements 8 i to 8 i + 7), or zeros when !in.
  __device__ void load(const uint4* x, int i, bool in) {
#pragma unroll
    for (int w = 0; w < kWords; ++w) v[w] = in ? __ldg(x + kWords * i + w) : make_uint4(0, 0, 0, 0);
  }
  __device__ void to_float(float2 (&f)[4]) const {
    if constexpr (kWords == 2) {
      const float2* p = reinterpret_cast<const float2*>(v);
#pragma unroll
      for (int j = 0; j < 4; ++j) f[j] = p[j];
    } else {
      unpack(v[0], X{}, f);
    }
  }
};

// A thread's share of a normed input's sum of squares, over eight elements.
__device__ __forceinline__ void add_squares(const float2 (&f)[4], float& ss) {
#pragma unroll
  for (int j = 0; j < 4; ++j) ss += f[j].x * f[j].x + f[j].y * f[j].y;
}

// One warp per R consecutive weight rows and part of k: a row's KS warps (in one block) each take
// a contiguous KS-th of it, and the block adds their sums. Lane l takes elements [8 l, 8 l + 8) of
// each 256-element stretch of its part, and issues the loads of U stretches of every row before it
// uses any, so that U * R 16-byte loads per lane are in flight. The weights stream through without
// L1 allocation; x stays cached. No kernel writes the weights, so the first U stretches are loaded
// before the block waits for the kernel before it (programmatic launch): they are in flight during
// that kernel's tail.
// Gated: W is a gated MLP's gate and up rows interleaved (gate j at row 2j, up j at 2j + 1; m = 2
// d_ff) and the kernel writes act[j] = T(act(gate_j x) * (up_j x)) (gated_value) instead of y; a
// block's row warps take consecutive rows as always, so that it holds both sums of its pairs.
// X = float: x is a normed input (GemvInput); each warp also sums the squares of the x it reads
// (every warp of a row part reads the same elements in the same order, so all get the same scale)
// and scales its sums by rms_scale before they are written.
template <typename T, int R, int U, int KS, typename X, bool kGated = false>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ W, int m, int k_vec, float* __restrict__ y,
                float beta, T* __restrict__ act, bool gelu, float eps) {
  constexpr bool kNormed = std::is_same_v<X, float>;
  constexpr int kRowWarps = kWarps / KS;  // warps of a block that share no row
  static_assert(!kGated || (R == 1 && kRowWarps % 2 == 0));
  constexpr int kPairs = kRowWarps / 2;   // gated: (gate, up) row pairs a block
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int part = warp / kRowWarps;
  const int row0 = (blockIdx.x * kRowWarps + warp % kRowWarps) * R;
  const bool live = row0 < m;
  const int side = row0 & 1, pair = row0 >> 1;  // gated: up (1) or gate (0) row of pair
  // Parts are whole stretches of 32 vectors, so that every lane's loads stay 16-byte aligned.
  const int per_part = (k_vec + 32 * KS - 1) / (32 * KS) * 32;
  const int i_begin = part * per_part + lane, i_end = min(k_vec, (part + 1) * per_part);
  const uint4* w[R];
#pragma unroll
  for (int r = 0; r < R; ++r) w[r] = W + static_cast<int64_t>(min(row0 + r, m - 1)) * k_vec;
  uint4 wv[U][R];
  auto load_weights = [&](int i0) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = i0 + 32 * u < i_end ? __ldcs(w[r] + i0 + 32 * u) : make_uint4(0, 0, 0, 0);
  };
  if (live) load_weights(i_begin);
  kernels::pdl_begin();
  if (KS == 1 && !kGated && !live) return;  // with parts (or gated), every warp stays for the block's sum
  float acc[R] = {}, ss = 0.0f;
  for (int i0 = i_begin; live && i0 < i_end;) {
    XVec<X> xv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) xv[u].load(x, i0 + 32 * u, i0 + 32 * u < i_end);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float2 xf[4];
      xv[u].to_float(xf);
      if constexpr (kNormed) add_squares(xf, ss);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float2 wf[4];
        unpack(wv[u][r], T{}, wf);
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[r] += wf[j].x * xf[j].x + wf[j].y * xf[j].y;
      }
    }
    i0 += 32 * U;
    if (i0 < i_end) load_weights(i0);
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
    for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
  if constexpr (kNormed) ss = warp_sum(ss);
  if constexpr (KS > 1) {
    __shared__ float part_sum[KS - 1][kRowWarps][R + 1];  // the sums, then the part's squares
    if (part > 0 && lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) part_sum[part - 1][warp % kRowWarps][r] = acc[r];
      part_sum[part - 1][warp % kRowWarps][R] = ss;
    }
    __syncthreads();
    if (part > 0) return;
#pragma unroll
    for (int q = 0; q < KS - 1; ++q) {
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] += part_sum[q][warp][r];
      ss += part_sum[q][warp][R];
    }
  }
  if constexpr (kNormed) {
    const float scale = rms_scale(ss, 8 * k_vec, eps);
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] *= scale;
  }
  if constexpr (kGated) {
    __shared__ float up_sum[kPairs];
    if (side == 1 && lane == 0) up_sum[(warp % kRowWarps) >> 1] = acc[0];
    asm volatile("bar.sync 1, %0;\n" ::"n"(kRowWarps * 32) : "memory");  // the row warps, part 0
    if (side == 0 && lane == 0 && live)
      act[pair] = from_float<T>(gated_value(acc[0], up_sum[(warp % kRowWarps) >> 1], gelu));
  } else {
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (lane == 0 && row0 + r < m) y[row0 + r] = beta != 0.0f ? acc[r] + beta * y[row0 + r] : acc[r];
  }
}

// The block kernel: the kBlockThreads threads of a block share each row (thread t takes vectors
// t, t + kBlockThreads, ... of it, NV at most), G rows at a time. One wave of blocks walks the
// groups of rows in grid order, so at any moment the loads in flight cover one contiguous stretch
// of the matrix; a block issues the next group's loads before it adds up the current group across
// its warps. The first group's loads go out before the programmatic wait, as above; x, which the
// kernel before may write, is read after it, once, into registers (X = float, a normed input: the
// block's scale is one sum of squares there).
constexpr int kBlockThreads = 256;

template <typename T, int NV, int G, typename X>
__global__ void __launch_bounds__(kBlockThreads)
    gemv_block_kernel(const uint4* __restrict__ x, const uint4* __restrict__ W, int m, int k_vec,
                      float* __restrict__ y, float beta, float eps) {
  constexpr int kBlockWarps = kBlockThreads / 32;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int groups = (m + G - 1) / G;
  __shared__ float warp_sums[2][kBlockWarps][G];
  uint4 wv[G][NV];
  auto load_weights = [&](int g) {
#pragma unroll
    for (int r = 0; r < G; ++r) {
      const uint4* row = W + static_cast<int64_t>(min(g * G + r, m - 1)) * k_vec + tid;
#pragma unroll
      for (int v = 0; v < NV; ++v)
        wv[r][v] = tid + kBlockThreads * v < k_vec ? __ldcs(row + kBlockThreads * v) : make_uint4(0, 0, 0, 0);
    }
  };
  int g = blockIdx.x;  // the grid has no more blocks than groups
  load_weights(g);
  kernels::pdl_begin();
  XVec<X> xv[NV];
#pragma unroll
  for (int v = 0; v < NV; ++v) xv[v].load(x, tid + kBlockThreads * v, tid + kBlockThreads * v < k_vec);
  float2 xf[NV][4];
#pragma unroll
  for (int v = 0; v < NV; ++v) xv[v].to_float(xf[v]);
  float scale = 1.0f;
  if constexpr (std::is_same_v<X, float>) {
    float ss = 0.0f;
#pragma unroll
    for (int v = 0; v < NV; ++v) add_squares(xf[v], ss);
    scale = inv_rms_of(ss, 8 * k_vec, eps);
  }
  for (int buf = 0; g < groups; g += gridDim.x, buf ^= 1) {
    float acc[G] = {};
#pragma unroll
    for (int r = 0; r < G; ++r)
#pragma unroll
      for (int v = 0; v < NV; ++v) {
        float2 wf[4];
        unpack(wv[r][v], T{}, wf);
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[r] += wf[j].x * xf[v][j].x + wf[j].y * xf[v][j].y;
      }
    if (g + static_cast<int>(gridDim.x) < groups) load_weights(g + gridDim.x);
#pragma unroll
    for (int r = 0; r < G; ++r)
      for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < G; ++r) warp_sums[buf][warp][r] = acc[r];
    // warp_sums[buf] is written again two groups on, after the next group's barrier.
    __syncthreads();
    const int row = g * G + tid;
    if (tid < G && row < m) {
      float sum = 0.0f;
#pragma unroll
      for (int w = 0; w < kBlockWarps; ++w) sum += warp_sums[buf][w][tid];
      sum *= scale;
      y[row] = beta != 0.0f ? sum + beta * y[row] : sum;
    }
  }
}

// f(Tag<X>{}) with X the element type the kernels read x as: float for a normed input, else its
// 16-bit type.
template <typename X>
struct Tag {
  using type = X;
};
template <typename F>
void with_input_type(const GemvInput& x, F&& f) {
  if (x.normed) f(Tag<float>{});
  else if (x.type == GemmType::FP16) f(Tag<__half>{});
  else f(Tag<__nv_bfloat16>{});
}

template <typename T, int NV, int G, typename X>
void launch_block_as(const GemvInput& x, const half16* W, int m, int k, float* y, float beta, cudaStream_t s) {
  static const int wave = [] {  // blocks in one wave (the first device this process uses)
    int per_sm = 0, dev = 0, sms = 0;
    HS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_block_kernel<T, NV, G, X>, kBlockThreads, 0));
    HS_CUDA_CHECK(cudaGetDevice(&dev));
    HS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return per_sm * sms;
  }();
  HS_CUDA_CHECK(kernels::launch(gemv_block_kernel<T, NV, G, X>, std::min((m + G - 1) / G, wave),
                                kBlockThreads, 0, s, reinterpret_cast<const uint4*>(x.x),
                                reinterpret_cast<const uint4*>(W), m, k / kVec, y, beta, x.eps));
}

template <typename T, int NV, int G>
void launch_block(const GemvInput& x, const half16* W, int m, int k, float* y, float beta, cudaStream_t s) {
  with_input_type(x, [&](auto xt) { launch_block_as<T, NV, G, typename decltype(xt)::type>(x, W, m, k, y, beta, s); });
}

template <typename T, int R, int U, int KS>
void launch(const GemvInput& x, const half16* W, int m, int k, float* y, float beta, cudaStream_t s) {
  constexpr int per_block = kWarps / KS * R;
  with_input_type(x, [&](auto xt) {
    HS_CUDA_CHECK(kernels::launch(gemv_kernel<T, R, U, KS, typename decltype(xt)::type>,
                                  (m + per_block - 1) / per_block, kWarps * 32, 0, s,
                                  reinterpret_cast<const uint4*>(x.x), reinterpret_cast<const uint4*>(W), m, k / kVec,
                                  y, beta, static_cast<T*>(nullptr), false, x.eps));
  });
}

// x of W's type, or normed.
template <typename T, int U, int KS>
void launch_gated(const GemvInput& x, const half16* W, int d_ff, int k, half16* act, bool gelu, cudaStream_t s) {
  constexpr int rows = kWarps / KS;
  auto* kernel = x.normed ? gemv_kernel<T, 1, U, KS, float, true> : gemv_kernel<T, 1, U, KS, T, true>;
  HS_CUDA_CHECK(kernels::launch(kernel, (2 * d_ff + rows - 1) / rows, kWarps * 32, 0, s,
                                reinterpret_cast<const uint4*>(x.x), reinterpret_cast<const uint4*>(W), 2 * d_ff,
                                k / kVec, static_cast<float*>(nullptr), 0.0f, reinterpret_cast<T*>(act), gelu, x.eps));
}

// The per-warp kernel's configurations that have an instance: f(PerWarp<R, U, KS>{}) for c's, and
// false when c has none (or is the block kernel's).
template <int R_, int U_, int KS_>
struct PerWarp {
  static constexpr int R = R_, U = U_, KS = KS_;
};
template <typename F>
bool with_per_warp(const GemvConfig& c, F&& f) {
  if (c.block_rows > 0) return false;
  switch (c.k_splits * 1000 + c.rows_per_warp * 100 + c.loads_per_lane) {
    case 1102: f(PerWarp<1, 2, 1>{}); return true;
    case 1104: f(PerWarp<1, 4, 1>{}); return true;
    case 1108: f(PerWarp<1, 8, 1>{}); return true;
    case 1116: f(PerWarp<1, 16, 1>{}); return true;
    case 1202: f(PerWarp<2, 2, 1>{}); return true;
    case 1204: f(PerWarp<2, 4, 1>{}); return true;
    case 1208: f(PerWarp<2, 8, 1>{}); return true;
    case 2102: f(PerWarp<1, 2, 2>{}); return true;
    case 2104: f(PerWarp<1, 4, 2>{}); return true;
    case 4102: f(PerWarp<1, 2, 4>{}); return true;
    default: return false;
  }
}

template <typename T>
using GatedLauncher = void (*)(const GemvInput&, const half16*, int, int, half16*, bool, cudaStream_t);

// The gated kernel of a per-warp configuration of one row a warp (nullptr: none).
template <typename T>
GatedLauncher<T> gated_launcher(const GemvConfig& c) {
  GatedLauncher<T> l = nullptr;
  with_per_warp(c, [&](auto w) {
    using C = decltype(w);
    if constexpr (C::R == 1) l = launch_gated<T, C::U, C::KS>;
  });
  return l;
}

// The kernel for a configuration, as a launcher of one 16-bit type.
template <typename T>
using Launcher = void (*)(const GemvInput&, const half16*, int, int, float*, float, cudaStream_t);

// The block kernel's vectors a thread per row at k (a power of two, k up to 2,048 of them times
// 8), and the most rows a group with them: at most 16 vectors of loads in flight a thread.
int block_vectors(int k) {
  const int nv = (k / kVec + kBlockThreads - 1) / kBlockThreads;
  return nv <= 1 ? 1 : nv <= 2 ? 2 : nv <= 4 ? 4 : nv <= 8 ? 8 : 0;
}
bool block_kernel_takes(int block_rows, int k) {
  const int nv = block_vectors(k);
  return nv > 0 && (block_rows == 2 || block_rows == 4 || block_rows == 8) && block_rows * nv <= 16;
}

template <typename T>
Launcher<T> block_launcher(int block_rows, int k) {
  switch (block_kernel_takes(block_rows, k) ? block_rows * 100 + block_vectors(k) : 0) {
    case 201: return launch_block<T, 1, 2>;
    case 202: return launch_block<T, 2, 2>;
    case 204: return launch_block<T, 4, 2>;
    case 208: return launch_block<T, 8, 2>;
    case 401: return launch_block<T, 1, 4>;
    case 402: return launch_block<T, 2, 4>;
    case 404: return launch_block<T, 4, 4>;
    case 801: return launch_block<T, 1, 8>;
    case 802: return launch_block<T, 2, 8>;
    default:
      throw std::invalid_argument("gemv: no block kernel for " + std::to_string(block_rows) + " rows a group at k = " +
                                  std::to_string(k));
  }
}

template <typename T>
Launcher<T> launcher(const GemvConfig& c, int k) {
  if (c.block_rows > 0) return block_launcher<T>(c.block_rows, k);
  Launcher<T> l = nullptr;
  if (!with_per_warp(c, [&](auto w) {
        using C = decltype(w);
        l = launch<T, C::R, C::U, C::KS>;
      }))
    throw std::invalid_argument("gemv: no kernel for " + std::to_string(c.rows_per_warp) + " rows per warp, " +
                                std::to_string(c.loads_per_lane) + " loads per lane and " +
                                std::to_string(c.k_splits) + " parts of k");
  return l;
}

}  // namespace

GemvConfig gemv_config(int k, int max_splits, int block_rows) {
  constexpr int kMinPartVectors = 2 * 32 * kGemvConfig.loads_per_lane;  // two rounds of a warp's loads
  if (block_kernel_takes(block_rows, k)) return GemvConfig{0, 0, 1, block_rows};
  GemvConfig c = kGemvConfig;
  while (c.k_splits * 2 <= max_splits && k / kVec / (c.k_splits * 2) >= kMinPartVectors) c.k_splits *= 2;
  return c;
}

int gemv_block_rows(int m, int k, int block_rows, int64_t block_max_bytes) {
  return k / kVec >= kBlockThreads && int64_t{m} * k * 2 <= block_max_bytes ? block_rows : 0;
}

bool gemv_supports(const void* X, const half16* W, int k, int n) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return n == 1 && k % kVec == 0 && aligned(X) && aligned(W);
}

void gemv(const GemvInput& x, const half16* W, GemmType t, int m, int k, float* y, float beta, cudaStream_t s,
          const GemvConfig& config) {
  if (t == GemmType::FP16) launcher<__half>(config, k)(x, W, m, k, y, beta, s);
  else launcher<__nv_bfloat16>(config, k)(x, W, m, k, y, beta, s);
}

bool gemv_gated_supports(const GemvConfig& config) { return gated_launcher<__half>(config) != nullptr; }

void gemv_gated(const GemvInput& x, const half16* W, GemmType t, int d_ff, int k, half16* act, bool gelu, cudaStream_t s,
                const GemvConfig& config) {
  if (!gemv_gated_supports(config))
    throw std::invalid_argument("gemv_gated: no gated kernel for this configuration (one row a warp, per-warp kernel)");
  if (t == GemmType::FP16) gated_launcher<__half>(config)(x, W, d_ff, k, act, gelu, s);
  else gated_launcher<__nv_bfloat16>(config)(x, W, d_ff, k, act, gelu, s);
}

}  // namespace hs::cuda
