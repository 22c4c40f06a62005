#include "backend/cuda/gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

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

// One warp per R consecutive weight rows; lane l takes elements [8 l, 8 l + 8) of each
// 256-element stretch, and issues the loads of U stretches of every row before it uses any, so
// that U * R 16-byte loads per lane are in flight. The weights stream through without L1
// allocation; x stays cached. No kernel writes the weights, so the first U stretches are loaded
// before the block waits for the kernel before it (programmatic launch): they are in flight
// during that kernel's tail.
template <typename T, int R, int U, typename X>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ W, int m, int k_vec, float* __restrict__ y,
                float beta) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
  const uint4* w[R];
#pragma unroll
  for (int r = 0; r < R; ++r) w[r] = W + static_cast<int64_t>(min(row0 + r, m - 1)) * k_vec;
  uint4 wv[U][R];
  auto load_weights = [&](int i0) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = i0 + 32 * u < k_vec ? __ldcs(w[r] + i0 + 32 * u) : make_uint4(0, 0, 0, 0);
  };
  if (row0 < m) load_weights(lane);
  kernels::pdl_begin();
  if (row0 >= m) return;
  float acc[R] = {};
  for (int i0 = lane; i0 < k_vec;) {
    uint4 xv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) xv[u] = i0 + 32 * u < k_vec ? __ldg(x + i0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float2 xf[4];
      unpack(xv[u], X{}, xf);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float2 wf[4];
        unpack(wv[u][r], T{}, wf);
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[r] += wf[j].x * xf[j].x + wf[j].y * xf[j].y;
      }
    }
    i0 += 32 * U;
    if (i0 < k_vec) load_weights(i0);
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = acc[r];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0 && row0 + r < m) y[row0 + r] = beta != 0.0f ? v + beta * y[row0 + r] : v;
  }
}

template <typename T, int R, int U>
void launch(const half16* x, GemmType xt, const half16* W, int m, int k, float* y, float beta, cudaStream_t s) {
  constexpr int per_block = kWarps * R;
  auto* kernel = xt == GemmType::FP16 ? gemv_kernel<T, R, U, __half> : gemv_kernel<T, R, U, __nv_bfloat16>;
  HS_CUDA_CHECK(kernels::launch(kernel, (m + per_block - 1) / per_block, kWarps * 32, 0, s,
                                reinterpret_cast<const uint4*>(x), reinterpret_cast<const uint4*>(W), m, k / kVec,
                                y, beta));
}

// The kernel for a configuration, as a launcher of one 16-bit type.
template <typename T>
using Launcher = void (*)(const half16*, GemmType, const half16*, int, int, float*, float, cudaStream_t);

template <typename T>
Launcher<T> launcher(const GemvConfig& c) {
  switch (c.rows_per_warp * 100 + c.loads_per_lane) {
    case 102: return launch<T, 1, 2>;
    case 104: return launch<T, 1, 4>;
    case 108: return launch<T, 1, 8>;
    case 116: return launch<T, 1, 16>;
    case 202: return launch<T, 2, 2>;
    case 204: return launch<T, 2, 4>;
    case 208: return launch<T, 2, 8>;
    default:
      throw std::invalid_argument("gemv: no kernel for " + std::to_string(c.rows_per_warp) + " rows per warp and " +
                                  std::to_string(c.loads_per_lane) + " loads per lane");
  }
}

}  // namespace

bool gemv_supports(const half16* X, const half16* W, int k, int n) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return n == 1 && k % kVec == 0 && aligned(X) && aligned(W);
}

void gemv(const half16* x, GemmType xt, const half16* W, GemmType t, int m, int k, float* y, float beta,
          cudaStream_t s, const GemvConfig& config) {
  if (t == GemmType::FP16) launcher<__half>(config)(x, xt, W, m, k, y, beta, s);
  else launcher<__nv_bfloat16>(config)(x, xt, W, m, k, y, beta, s);
}

}  // namespace hs::cuda
