// A model ready to run: config, weights, tokenizer and chat template source, from any of
//   - a GGUF file (path ending in .gguf),
//   - a Hugging Face folder (config.json + safetensors + tokenizer.model / tokenizer.json),
//   - "synthetic:<preset>" where <preset> is a name in configs/models/ or a JSON file path,
//     optionally "synthetic:<preset>@<seed>" (seeded random weights, no tokenizer).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "model/config.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace hs {

struct Model {
  std::string source;  // what was asked for
  std::string format;  // "gguf", "safetensors" or "synthetic"
  ModelConfig config;
  std::shared_ptr<const ModelWeights> weights;   // null when loaded with weights = false
  std::shared_ptr<const Tokenizer> tokenizer;    // null for synthetic models
  std::string chat_template;                     // Jinja source from the file; may be empty
  size_t n_tensors = 0;
  std::map<std::string, int> tensor_types;       // type name -> number of tensors
};

struct LoadOptions {
  bool load_weights = true;
  LoadProgress progress;  // called as tensors are dequantized
};

// Throws ModelFileError (file problems) or std::invalid_argument (a bad spec), with messages
// that name the file and what is wrong.
Model load_model(const std::string& spec, const LoadOptions& options = {});

// Where presets live: $HEADSHARD_CONFIGS_DIR/models, else configs/models beside the binary's
// source tree (compiled in), else ./configs/models.
std::string find_preset(const std::string& name);

}  // namespace hs
