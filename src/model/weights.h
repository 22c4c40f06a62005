// Model weights for the CPU reference backend (and the source the CUDA backend uploads).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/ggml_type.h"

namespace hs {

struct GgufTensor;

// A row-major matrix of `rows` output features by `cols` input features (a linear layer's W).
// Float32, or packed: kept in the file's form (the ones with AVX2 readers in dequant_simd.h,
// simd::kReadable: F16, BF16, Q4_0 to Q8_0, Q2_K to Q6_K), a half to a twelfth of the bytes, for
// the CPU backend to dequantize as it multiplies.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;        // float32 rows; empty when packed
  GgmlType type = GgmlType::F32;  // the blocks' type when packed
  std::vector<uint8_t> blocks;    // rows x row_bytes() when packed

  bool empty() const { return rows == 0; }
  bool packed() const { return type != GgmlType::F32; }
  const float* row(int64_t r) const { return data.data() + r * cols; }  // float32 matrices only
  size_t row_bytes() const;
  // Rows [r0, r0 + n) as float32 into out (n x cols), whatever the storage.
  void rows_f32(int64_t r0, int64_t n, float* out) const;
  size_t bytes() const { return data.size() * sizeof(float) + blocks.size(); }
};

// rows x cols elements of `type` at src as float32 into dst, the rows spread over the thread pool
// (so not from inside one of its loops).
void dequantize_rows(GgmlType type, const uint8_t* src, int64_t rows, int64_t cols, float* dst);

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
  // A copy with every matrix float32.
  std::unique_ptr<ModelWeights> unpacked() const;
};

// f(matrix) for every matrix of w (ModelWeights, const or not): token_embd, output (empty when
// tied), then each layer's.
template <class Weights, class F>
void for_each_matrix(Weights& w, F f) {
  f(w.token_embd);
  f(w.output);
  for (auto& l : w.layers)
    for (auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) f(*m);
}

using TensorLookup = std::function<const GgufTensor*(const std::string& name)>;
// Called with (tensors done, tensors total) while loading.
using LoadProgress = std::function<void(int, int)>;

// Loads every tensor the config needs: matrices in a format with an AVX2 reader stay packed
// (where the CPU has AVX2), the rest become float32. Throws ModelFileError naming the missing
// tensor or the tensor whose shape does not match the config. `source` names the file in messages.
std::unique_ptr<ModelWeights> load_weights(const ModelConfig& config, const TensorLookup& find,
                                           const std::string& source, const LoadProgress& progress = {});

// Seeded random weights of the config's shapes (for benchmarks and tests): matrices drawn
// uniformly with a 1/sqrt(fan_in) scale, norms near one.
std::unique_ptr<ModelWeights> synthetic_weights(const ModelConfig& config, uint64_t seed);

}  // namespace hs
