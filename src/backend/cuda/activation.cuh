// Device math shared by the model's kernels (model_kernels.cu) and the single-row gate/up projection
// that applies the activation as it writes (gemv.cu), so that both give the same bits.
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

}  // namespace hs::cuda
