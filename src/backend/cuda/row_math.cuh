// Device arithmetic that the per-row kernels (model_kernels.cu) and the fused GEMVs (gemv.cu)
// share, so that a fused kernel rounds exactly like the kernels it replaces: the same source
// compiles to the same instructions in both (no fast-math anywhere in the build).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace hs::cuda::rowmath {

// Float conversions of the two 16-bit types (round to nearest even).
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The RMSNorm scale from a row's sum of squares: 1 / sqrt(mean(v^2) + eps).
__device__ __forceinline__ float rms_scale_of(float sum_sq, int n, float eps) {
  return 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps);
}

// residual_norm's pre-norm: the row's threads each sum the squares of their kNormPer elements
// (x[t + kNormThreads * j], j in order), then the block sums the kNormThreads partials as
// block_sum does (a butterfly per warp of 32, then a butterfly over the warps' sums).
constexpr int kNormThreads = 1024;
constexpr int kNormPer = 8;  // elements per thread of the d <= kNormThreads * kNormPer kernel

__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

// The gated MLP's activation of one (gate, up) pair: act(g) * u, act = gelu_tanh or silu.
__device__ __forceinline__ float gated(float g, float u, bool gelu) {
  const float a = gelu ? gelu_tanh(g) : g / (1.0f + expf(-g));
  return a * u;
}

}  // namespace hs::cuda::rowmath
