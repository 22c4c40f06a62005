// Device math shared by the model's kernels (model_kernels.cu) and the single-row projections that
// apply the activation as they write or the RMS norm as they read (gemv.cu), so that both compute
// them alike.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace hs::cuda {

// Float conversions to the two 16-bit types (round to nearest even).
template <typename T>
__device__ T from_float(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }

// The gated MLP's activation of one feature, act(g) * u in float32, with act SiLU (llama) or GELU
// with the tanh approximation (Gemma).
__device__ __forceinline__ float gated_value(float g, float u, bool gelu) {
  constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
  const float a = gelu ? 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g))) : g / (1.0f + expf(-g));
  return a * u;
}

// An RMS norm's scale, 1 / sqrt(mean + eps), from a row of n's sum of squares.
__device__ __forceinline__ float rms_scale(float sum_sq, int n, float eps) {
  return 1.0f / sqrtf(sum_sq / static_cast<float>(n) + eps);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block; every thread gets the result. blockDim.x is a multiple of 32, at most 1024.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0f;
    w = warp_sum(w);
    if (lane == 0) total = w;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();  // the shared slots may be reused by a following block_sum
  return r;
}

// 1 / rms of a row of n, from each thread's share ss of its sum of squares (the block adds them):
// the scale the CPU's rms_norm multiplies by.
__device__ __forceinline__ float inv_rms_of(float ss, int n, float eps) { return rms_scale(block_sum(ss), n, eps); }

}  // namespace hs::cuda
