// Hugging Face model folder reader: config.json plus model.safetensors, or shards listed by
// model.safetensors.index.json. Files are memory-mapped read-only.
//
// Tensors are exposed like a GGUF file's so a loader can treat both alike: hs::GgufTensor with
// GGUF tensor names (for the llama and gemma3 families; see hf_to_gguf_tensor_name) and dims in
// ggml order (the reverse of the safetensors shape: dims[0] is the contiguous dimension).
// Only F32, F16 and BF16 tensors are accepted; anything else throws ModelFileError.
//
// Same names and dims do NOT mean same values: llama.cpp's converter changes some weights on the
// way to GGUF, and this reader does not (the data is the raw mapped bytes):
//   * llama-family attn_q / attn_k: GGUF rows are permuted per head so that ggml's "normal"
//     (adjacent-pair) RoPE applies; HF weights expect rotate-half (NEOX-style) RoPE.
//   * gemma norms (every *norm.weight): HF stores w for x * (1 + w); GGUF stores 1 + w.
// Tensor data is only as aligned as the file makes it (safetensors does not guarantee 4-byte
// alignment), so read it with memcpy or hs::dequantize, not by casting to float*.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace hs {

class SafetensorsModel {
 public:
  // Opens the folder: parses config.json, the index (when sharded), and every safetensors
  // header, and checks that each tensor's bytes lie inside its file. Throws ModelFileError
  // naming the file and the tensor or key concerned.
  static std::unique_ptr<SafetensorsModel> open(const std::string& dir);
  ~SafetensorsModel();
  SafetensorsModel(const SafetensorsModel&) = delete;
  SafetensorsModel& operator=(const SafetensorsModel&) = delete;

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config() const { return *config_; }
  // GGUF-style architecture name from config.json's model_type: "llama", "gemma3" (also for
  // "gemma3_text"), or the model_type unchanged for other families.
  const std::string& architecture() const { return arch_; }

  // All tensors, in file order (shard by shard). name is the GGUF-style name; offset is the
  // byte offset inside the owning file's data section.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  // The original Hugging Face name of tensors()[i].
  const std::string& hf_name(size_t i) const { return hf_names_.at(i); }
  // The safetensors file holding tensors()[i].
  const std::string& file_of(size_t i) const;
  const GgufTensor* find_tensor(const std::string& gguf_name) const;     // nullptr if absent
  const GgufTensor* find_hf_tensor(const std::string& hf_name) const;    // nullptr if absent

  // Paths of the tokenizer files in the folder, when present.
  const std::optional<std::string>& tokenizer_model_path() const { return tokenizer_model_; }  // SentencePiece
  const std::optional<std::string>& tokenizer_json_path() const { return tokenizer_json_; }    // HF tokenizers

 private:
  struct Mapping {
    const uint8_t* base = nullptr;
    size_t size = 0;
    std::string path;
  };

  SafetensorsModel() = default;
  void load_file(const std::string& path, const std::map<std::string, std::string>* wanted);

  std::string dir_;
  std::string arch_;
  std::unique_ptr<nlohmann::json> config_;
  std::vector<Mapping> maps_;
  std::vector<GgufTensor> tensors_;
  std::vector<std::string> hf_names_;
  std::vector<size_t> file_index_;  // tensors_[i] lives in maps_[file_index_[i]]
  std::map<std::string, size_t> by_name_, by_hf_name_;
  std::optional<std::string> tokenizer_model_, tokenizer_json_;
};

// Maps a Hugging Face tensor name to its GGUF name for architecture `arch` ("llama", "gemma3",
// ...; see SafetensorsModel::architecture). Names it does not know are returned unchanged.
// Accepts gemma3's multimodal prefixes ("model.language_model.", "language_model.model.").
std::string hf_to_gguf_tensor_name(const std::string& hf_name, const std::string& arch);

// True when `path` is a directory holding config.json and model.safetensors or
// model.safetensors.index.json.
bool is_safetensors_dir(const std::string& path);

}  // namespace hs
