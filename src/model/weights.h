// Float32 model weights for the CPU reference backend (and the source the CUDA backend uploads).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"

namespace hs {

struct GgufTensor;

// A row-major matrix of `rows` output features by `cols` input features (a linear layer's W).
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
  const float* row(int64_t r) const { return data.data() + r * cols; }
  bool empty() const { return data.empty(); }
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;
  std::vector<float> q_norm, k_norm, post_attn_norm, post_ffw_norm;  // Gemma 3 only
  Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct ModelWeights {
  ModelConfig config;
  Matrix token_embd;              // vocab x d_model
  Matrix output;                  // vocab x d_model; empty when tied to token_embd
  std::vector<float> output_norm;
  std::vector<float> rope_freq_factors;  // llama3-style per-frequency divisors, if any
  std::vector<LayerWeights> layers;

  const Matrix& lm_head() const { return output.empty() ? token_embd : output; }
  size_t bytes() const;
};

using TensorLookup = std::function<const GgufTensor*(const std::string& name)>;
// Called with (tensors done, tensors total) while loading.
using LoadProgress = std::function<void(int, int)>;

// Dequantizes every tensor the config needs. Throws ModelFileError naming the missing tensor or
// the tensor whose shape does not match the config. `source` names the file in messages.
std::unique_ptr<ModelWeights> load_weights(const ModelConfig& config, const TensorLookup& find,
                                           const std::string& source, const LoadProgress& progress = {});

// Seeded random weights of the config's shapes (for benchmarks and tests): matrices drawn
// uniformly with a 1/sqrt(fan_in) scale, norms near one.
std::unique_ptr<ModelWeights> synthetic_weights(const ModelConfig& config, uint64_t seed);

}  // namespace hs
