#include "model/config.h"

#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "model/gguf.h"

namespace hs {

const char* arch_name(Arch a) { return a == Arch::Gemma3 ? "gemma3" : "llama"; }

float ModelConfig::softmax_scale() const {
  return attn_scale > 0.0f ? attn_scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}

void ModelConfig::validate() const {
  auto need = [](bool ok, const char* field, const std::string& why) {
    if (!ok) throw std::invalid_argument(std::string("model config: ") + field + " " + why);
  };
  need(n_layers > 0, "n_layers", "must be positive");
  need(d_model > 0, "d_model", "must be positive");
  need(n_heads > 0, "n_heads", "must be positive");
  need(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "n_kv_heads",
       "must divide n_heads (" + std::to_string(n_heads) + ")");
  need(head_dim > 0 && head_dim % 2 == 0, "head_dim", "must be positive and even");
  need(rope_dims > 0 && rope_dims <= head_dim && rope_dims % 2 == 0, "rope_dims",
       "must be even and at most head_dim");
  need(d_ff > 0, "d_ff", "must be positive");
  need(vocab_size > 0, "vocab_size", "must be positive");
  need(context_length > 0, "context_length", "must be positive");
  need(layer_is_local.empty() || static_cast<int>(layer_is_local.size()) == n_layers,
       "layer_is_local", "must have one entry per layer");
  need(layer_is_local.empty() || sliding_window > 0, "sliding_window",
       "must be positive when layers are local");
}

static const char* rope_type_name(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::Linear: return "linear";
    case RopeScalingType::Yarn: return "yarn";
    case RopeScalingType::Llama3: return "llama3";
    default: return "none";
  }
}

static RopeScalingType rope_type_from_name(const std::string& s) {
  if (s == "linear") return RopeScalingType::Linear;
  if (s == "yarn") return RopeScalingType::Yarn;
  if (s == "llama3") return RopeScalingType::Llama3;
  if (s == "none" || s == "default" || s.empty()) return RopeScalingType::None;
  throw std::invalid_argument("unsupported rope scaling type '" + s + "'");
}

// Gemma 3 alternates five sliding-window layers with one global layer.
static std::vector<bool> gemma3_layer_pattern(int n_layers, int period) {
  std::vector<bool> local(n_layers);
  for (int i = 0; i < n_layers; ++i) local[i] = (i + 1) % period != 0;
  return local;
}

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  const std::string arch = f.get_string("general.architecture");
  if (arch == "llama") {
    c.arch = Arch::Llama;
  } else if (arch == "gemma3") {
    c.arch = Arch::Gemma3;
  } else {
    throw ModelFileError(f.path() + ": general.architecture '" + arch +
                         "' is not supported (llama, gemma3)");
  }
  auto key = [&](const char* k) { return arch + "." + k; };
  c.name = f.opt_string("general.name").value_or(arch);
  c.n_layers = static_cast<int>(f.get_int(key("block_count")));
  c.d_model = static_cast<int>(f.get_int(key("embedding_length")));
  c.d_ff = static_cast<int>(f.get_int(key("feed_forward_length")));
  c.n_heads = static_cast<int>(f.get_int(key("attention.head_count")));
  c.n_kv_heads = static_cast<int>(f.opt_int(key("attention.head_count_kv")).value_or(c.n_heads));
  c.head_dim = static_cast<int>(f.opt_int(key("attention.key_length")).value_or(c.n_heads ? c.d_model / c.n_heads : 0));
  c.rope_dims = static_cast<int>(f.opt_int(key("rope.dimension_count")).value_or(c.head_dim));
  c.context_length = static_cast<int>(f.get_int(key("context_length")));
  c.norm_eps = static_cast<float>(f.get_float(key("attention.layer_norm_rms_epsilon")));
  c.rope_base = static_cast<float>(f.opt_float(key("rope.freq_base")).value_or(10000.0));
  if (auto v = f.opt_int(key("vocab_size"))) {
    c.vocab_size = static_cast<int>(*v);
  } else if (f.has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int>(f.metadata().at("tokenizer.ggml.tokens").array_size());
  } else if (const GgufTensor* t = f.find_tensor("token_embd.weight"); t && t->dims.size() == 2) {
    c.vocab_size = static_cast<int>(t->dims[1]);
  }
  if (auto type = f.opt_string(key("rope.scaling.type"))) {
    c.rope_scaling.type = rope_type_from_name(*type);
    c.rope_scaling.factor = static_cast<float>(f.opt_float(key("rope.scaling.factor")).value_or(1.0));
    c.rope_scaling.original_context =
        static_cast<int>(f.opt_int(key("rope.scaling.original_context_length")).value_or(c.context_length));
    if (auto v = f.opt_float(key("rope.scaling.yarn_beta_fast"))) c.rope_scaling.yarn_beta_fast = static_cast<float>(*v);
    if (auto v = f.opt_float(key("rope.scaling.yarn_beta_slow"))) c.rope_scaling.yarn_beta_slow = static_cast<float>(*v);
  }
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  if (c.arch == Arch::Llama) {
    c.rope_neox = false;  // llama.cpp's converter permutes Q/K for adjacent-pair rotation
  } else {
    c.rope_neox = true;
    c.embed_scale = std::sqrt(static_cast<float>(c.d_model));
    c.rope_base_local = 10000.0f;  // not in the metadata; fixed for Gemma 3
    c.sliding_window = static_cast<int>(f.opt_int(key("attention.sliding_window")).value_or(512));
    c.layer_is_local = gemma3_layer_pattern(c.n_layers, 6);
    c.norm_weight_offset = 0.0f;  // the converter stored 1+w
    // llama.cpp: the 27B model scales by d_model/n_heads, the others by head_dim.
    c.attn_scale = c.n_layers == 62 ? 1.0f / std::sqrt(static_cast<float>(c.d_model / c.n_heads))
                                    : 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw ModelFileError(f.path() + ": " + e.what());
  }
  return c;
}

template <typename T>
static T json_get(const nlohmann::json& j, const char* k, T fallback) {
  auto it = j.find(k);
  return (it == j.end() || it->is_null()) ? fallback : it->get<T>();
}

static void rope_scaling_from_hf(const nlohmann::json& rs, ModelConfig& c) {
  if (!rs.is_object()) return;
  std::string type = json_get<std::string>(rs, "rope_type", json_get<std::string>(rs, "type", "default"));
  c.rope_scaling.type = rope_type_from_name(type);
  c.rope_scaling.factor = json_get<float>(rs, "factor", 1.0f);
  c.rope_scaling.original_context = json_get<int>(rs, "original_max_position_embeddings", c.context_length);
  c.rope_scaling.low_freq_factor = json_get<float>(rs, "low_freq_factor", 1.0f);
  c.rope_scaling.high_freq_factor = json_get<float>(rs, "high_freq_factor", 4.0f);
  c.rope_scaling.yarn_beta_fast = json_get<float>(rs, "beta_fast", 32.0f);
  c.rope_scaling.yarn_beta_slow = json_get<float>(rs, "beta_slow", 1.0f);
}

ModelConfig config_from_hf(const nlohmann::json& root) {
  const nlohmann::json& j = root.contains("text_config") ? root.at("text_config") : root;
  ModelConfig c;
  std::string type = json_get<std::string>(j, "model_type", json_get<std::string>(root, "model_type", ""));
  if (type == "llama" || type == "mistral") {
    c.arch = Arch::Llama;
  } else if (type == "gemma3" || type == "gemma3_text") {
    c.arch = Arch::Gemma3;
  } else {
    throw std::invalid_argument("config.json: model_type '" + type + "' is not supported (llama, gemma3)");
  }
  c.name = type;
  c.n_layers = json_get<int>(j, "num_hidden_layers", 0);
  c.d_model = json_get<int>(j, "hidden_size", 0);
  c.d_ff = json_get<int>(j, "intermediate_size", 0);
  c.n_heads = json_get<int>(j, "num_attention_heads", 0);
  c.n_kv_heads = json_get<int>(j, "num_key_value_heads", c.n_heads);
  c.head_dim = json_get<int>(j, "head_dim", c.n_heads ? c.d_model / c.n_heads : 0);
  c.rope_dims = c.head_dim;
  c.vocab_size = json_get<int>(j, "vocab_size", 0);
  c.context_length = json_get<int>(j, "max_position_embeddings", 2048);
  c.norm_eps = json_get<float>(j, "rms_norm_eps", 1e-6f);
  c.rope_neox = true;  // HF checkpoints rotate halves
  c.tied_embeddings = json_get<bool>(j, "tie_word_embeddings", c.arch == Arch::Gemma3);
  c.rope_base = json_get<float>(j, "rope_theta", 10000.0f);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    const auto& rp = j["rope_parameters"];
    if (rp.contains("full_attention")) {  // per layer type (Gemma 3 in newer transformers)
      c.rope_base = json_get<float>(rp["full_attention"], "rope_theta", c.rope_base);
      c.rope_base_local = json_get<float>(rp.value("sliding_attention", nlohmann::json::object()), "rope_theta", 10000.0f);
      rope_scaling_from_hf(rp["full_attention"], c);
    } else {
      c.rope_base = json_get<float>(rp, "rope_theta", c.rope_base);
      rope_scaling_from_hf(rp, c);
    }
  } else if (j.contains("rope_scaling")) {
    rope_scaling_from_hf(j["rope_scaling"], c);
  }
  if (c.arch == Arch::Gemma3) {
    c.embed_scale = std::sqrt(static_cast<float>(c.d_model));
    c.rope_base_local = json_get<float>(j, "rope_local_base_freq", c.rope_base_local);
    c.sliding_window = json_get<int>(j, "sliding_window", 512);
    c.norm_weight_offset = 1.0f;
    c.attn_scale = 1.0f / std::sqrt(json_get<float>(j, "query_pre_attn_scalar", static_cast<float>(c.head_dim)));
    if (j.contains("layer_types")) {
      for (const auto& t : j["layer_types"]) c.layer_is_local.push_back(t.get<std::string>() == "sliding_attention");
    } else {
      c.layer_is_local = gemma3_layer_pattern(c.n_layers, json_get<int>(j, "sliding_window_pattern", 6));
    }
  }
  c.validate();
  return c;
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = {
      {"arch", arch_name(arch)}, {"name", name}, {"n_layers", n_layers}, {"d_model", d_model},
      {"n_heads", n_heads}, {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim}, {"d_ff", d_ff},
      {"vocab_size", vocab_size}, {"context_length", context_length}, {"norm_eps", norm_eps},
      {"rope_base", rope_base}, {"rope_base_local", rope_base_local}, {"rope_dims", rope_dims},
      {"rope_neox", rope_neox}, {"tied_embeddings", tied_embeddings}, {"embed_scale", embed_scale},
      {"attn_scale", attn_scale}, {"norm_weight_offset", norm_weight_offset},
      {"sliding_window", sliding_window}, {"layer_is_local", layer_is_local},
      {"rope_scaling", {{"type", rope_type_name(rope_scaling.type)}, {"factor", rope_scaling.factor},
                        {"original_context", rope_scaling.original_context},
                        {"low_freq_factor", rope_scaling.low_freq_factor},
                        {"high_freq_factor", rope_scaling.high_freq_factor}}},
  };
  return j;
}

ModelConfig config_from_preset(const nlohmann::json& j) {
  ModelConfig c;
  std::string arch = json_get<std::string>(j, "arch", "llama");
  if (arch == "llama") {
    c.arch = Arch::Llama;
  } else if (arch == "gemma3") {
    c.arch = Arch::Gemma3;
  } else {
    throw std::invalid_argument("preset: arch '" + arch + "' is not supported (llama, gemma3)");
  }
  c.name = json_get<std::string>(j, "name", arch);
  c.n_layers = json_get<int>(j, "n_layers", 0);
  c.d_model = json_get<int>(j, "d_model", 0);
  c.n_heads = json_get<int>(j, "n_heads", 0);
  c.n_kv_heads = json_get<int>(j, "n_kv_heads", c.n_heads);
  c.head_dim = json_get<int>(j, "head_dim", c.n_heads ? c.d_model / c.n_heads : 0);
  c.d_ff = json_get<int>(j, "d_ff", 0);
  c.vocab_size = json_get<int>(j, "vocab_size", 0);
  c.context_length = json_get<int>(j, "context_length", 0);
  c.norm_eps = json_get<float>(j, "norm_eps", 1e-5f);
  c.rope_base = json_get<float>(j, "rope_base", 10000.0f);
  c.rope_base_local = json_get<float>(j, "rope_base_local", 10000.0f);
  c.rope_dims = json_get<int>(j, "rope_dims", c.head_dim);
  c.rope_neox = json_get<bool>(j, "rope_neox", c.arch == Arch::Gemma3);
  c.tied_embeddings = json_get<bool>(j, "tied_embeddings", false);
  c.embed_scale = json_get<float>(j, "embed_scale", c.arch == Arch::Gemma3 ? std::sqrt(static_cast<float>(c.d_model)) : 1.0f);
  c.attn_scale = json_get<float>(j, "attn_scale", 0.0f);
  c.norm_weight_offset = json_get<float>(j, "norm_weight_offset", 0.0f);
  c.sliding_window = json_get<int>(j, "sliding_window", 0);
  if (j.contains("layer_is_local")) c.layer_is_local = j["layer_is_local"].get<std::vector<bool>>();
  else if (c.arch == Arch::Gemma3) c.layer_is_local = gemma3_layer_pattern(c.n_layers, 6);
  if (j.contains("rope_scaling")) {
    const auto& rs = j["rope_scaling"];
    c.rope_scaling.type = rope_type_from_name(json_get<std::string>(rs, "type", "none"));
    c.rope_scaling.factor = json_get<float>(rs, "factor", 1.0f);
    c.rope_scaling.original_context = json_get<int>(rs, "original_context", c.context_length);
    c.rope_scaling.low_freq_factor = json_get<float>(rs, "low_freq_factor", 1.0f);
    c.rope_scaling.high_freq_factor = json_get<float>(rs, "high_freq_factor", 4.0f);
  }
  c.validate();
  return c;
}

}  // namespace hs
