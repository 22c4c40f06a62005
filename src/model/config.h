// The shape and numerics of a model, whatever file it came from (GGUF metadata, a Hugging Face
// config.json, or a synthetic preset in configs/models/).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace hs {

class GgufFile;

enum class Arch { Llama, Gemma3 };
const char* arch_name(Arch a);

enum class RopeScalingType { None, Linear, Yarn, Llama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::None;
  float factor = 1.0f;
  int original_context = 0;       // yarn, llama3
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  float yarn_beta_fast = 32.0f, yarn_beta_slow = 1.0f, yarn_ext_factor = 1.0f, yarn_attn_factor = 1.0f;
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string name;
  int n_layers = 0;
  int d_model = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int d_ff = 0;
  int vocab_size = 0;
  int context_length = 0;
  float norm_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_base_local = 10000.0f;  // Gemma 3's sliding-window layers
  int rope_dims = 0;                 // rotated dimensions per head (== head_dim unless partial)
  bool rope_neox = false;            // rotate halves (NeoX/HF) instead of adjacent pairs (GGUF llama)
  RopeScaling rope_scaling;
  bool tied_embeddings = false;
  float embed_scale = 1.0f;          // Gemma multiplies embeddings by sqrt(d_model)
  float attn_scale = 0.0f;           // softmax scale; 1/sqrt(head_dim) when 0
  float norm_weight_offset = 0.0f;   // Gemma's HF weights store w for a (1+w) norm; GGUF stores 1+w
  int sliding_window = 0;            // tokens a local layer sees (including the current one)
  std::vector<bool> layer_is_local;  // per layer: uses the sliding window (Gemma 3)

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  float softmax_scale() const;
  bool is_local(int layer) const { return !layer_is_local.empty() && layer_is_local[layer]; }
  // Throws std::invalid_argument naming the field when the shape is inconsistent.
  void validate() const;
  nlohmann::json to_json() const;
};

// From GGUF metadata ("<arch>.block_count", ...). Throws ModelFileError naming the key.
ModelConfig config_from_gguf(const GgufFile& f);
// From a Hugging Face config.json object.
ModelConfig config_from_hf(const nlohmann::json& j);
// A synthetic preset: the same fields as to_json() writes (configs/models/*.json).
ModelConfig config_from_preset(const nlohmann::json& j);

}  // namespace hs
