// The model's weights on the device: matrices in 16-bit floats (one GemmType), norm vectors in
// float32, with the projections that read the same input fused into one matrix (rows stacked) so
// that each is one GEMM: wqkv = [wq; wk; wv] and wgu = w_gate's and w_up's rows interleaved (gate row j
// at row 2j, up row j at 2j + 1, so a gate/up pair is one contiguous stretch of memory).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <vector>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/model_kernels.h"
#include "model/weights.h"

namespace hs::cuda {

struct DeviceLayer {
  DeviceBuffer<float> attn_norm, ffn_norm;
  DeviceBuffer<float> q_norm, k_norm, post_attn_norm, post_ffw_norm;  // Gemma 3 only (else empty)
  DeviceBuffer<half16> wqkv;  // [q_dim + 2 kv_dim][d_model]
  DeviceBuffer<half16> wo;    // [d_model][q_dim]
  DeviceBuffer<half16> wgu;   // [d_ff][2: gate, up][d_model]
  DeviceBuffer<half16> wdown; // [d_model][d_ff]
};

struct DeviceWeights {
  GemmType type = GemmType::BF16;   // of every matrix
  DeviceBuffer<half16> token_embd;  // [vocab][d_model]
  DeviceBuffer<half16> output;      // [vocab][d_model]; empty when tied to token_embd
  DeviceBuffer<float> output_norm;
  std::vector<DeviceLayer> layers;
  size_t bytes = 0;  // device memory held
  // wqkv's columns carry attn_norm and wgu's ffn_norm (upload_weights' fold_norms): their norms
  // apply no weight of their own.
  bool attn_norm_folded = false, ffn_norm_folded = false;

  const half16* lm_head() const { return output.size() ? output.get() : token_embd.get(); }
};

// Converts and uploads every tensor (float32 host -> `type` on the device, in chunks through a
// staging buffer). fold_norms: each layer's pre-norm weights multiply the columns of the matrix
// that reads the norm (attn_norm into wqkv, ffn_norm into wgu), so that a single row's projection
// can read the residual stream and apply the norm itself (GemvInput). Throws std::runtime_error
// when device memory runs out and std::invalid_argument when a matrix does not have the config's
// shape.
DeviceWeights upload_weights(const ModelWeights& w, GemmType type, cudaStream_t s, bool fold_attn_norm = false,
                             bool fold_ffn_norm = false);

}  // namespace hs::cuda
