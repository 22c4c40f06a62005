// The gated MLP's activation of one feature, act(g) * u in float32, with act SiLU (llama) or GELU
// with the tanh approximation (Gemma). Shared by the activation kernel (model_kernels.cu) and the
// single-row gate/up projection that applies it as it writes (gemv.cu), so both give the same bits.
#pragma once
#include <cuda_runtime.h>

namespace hs::cuda {

__device__ __forceinline__ float gated_value(float g, float u, bool gelu) {
  constexpr float k = 0.7978845608028654f;  // sqrt(2/pi)
  const float a = gelu ? 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g))) : g / (1.0f + expf(-g));
  return a * u;
}

}  // namespace hs::cuda
