#include "backend/cuda/gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "backend/cuda/cuda_check.h"

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

// One warp per R consecutive weight rows, streamed side by side (loads in flight); lane l takes
// elements [8 l, 8 l + 8) of each 256-element stretch. The weights stream through without L1
// allocation; x stays cached.
template <typename T, int R>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ W, int m, int k_vec, float* __restrict__ y,
                float beta) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
  if (row0 >= m) return;
  float acc[R] = {};
  const uint4* w[R];
#pragma unroll
  for (int r = 0; r < R; ++r) w[r] = W + static_cast<int64_t>(min(row0 + r, m - 1)) * k_vec;
#pragma unroll 4
  for (int i = lane; i < k_vec; i += 32) {
    float2 xf[4];
    unpack(__ldg(x + i), T{}, xf);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float2 wf[4];
      unpack(__ldcs(w[r] + i), T{}, wf);
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[r] += wf[j].x * xf[j].x + wf[j].y * xf[j].y;
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = acc[r];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0 && row0 + r < m) y[row0 + r] = beta != 0.0f ? v + beta * y[row0 + r] : v;
  }
}

template <typename T>
void launch(const half16* x, const half16* W, int m, int k, float* y, float beta, cudaStream_t s) {
  // Two rows per warp for tall matrices; one for short ones, which then still fill every SM.
  auto go = [&](auto rows) {
    constexpr int R = decltype(rows)::value;
    const int per_block = kWarps * R;
    gemv_kernel<T, R><<<(m + per_block - 1) / per_block, kWarps * 32, 0, s>>>(
        reinterpret_cast<const uint4*>(x), reinterpret_cast<const uint4*>(W), m, k / kVec, y, beta);
  };
  if (m >= 16384) go(std::integral_constant<int, 2>{});
  else go(std::integral_constant<int, 1>{});
  HS_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool gemv_supports(const half16* X, const half16* W, int k, int n) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return n == 1 && k % kVec == 0 && aligned(X) && aligned(W);
}

void gemv(const half16* x, const half16* W, GemmType t, int m, int k, float* y, float beta, cudaStream_t s) {
  if (t == GemmType::FP16) launch<__half>(x, W, m, k, y, beta, s);
  else launch<__nv_bfloat16>(x, W, m, k, y, beta, s);
}

}  // namespace hs::cuda
