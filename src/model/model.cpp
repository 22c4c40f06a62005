#include "model/model.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "model/gguf.h"
#include "model/safetensors.h"

#ifndef HS_CONFIGS_DIR
#define HS_CONFIGS_DIR "configs"
#endif

namespace hs {

namespace fs = std::filesystem;

std::string find_preset(const std::string& name) {
  if (fs::exists(name)) return name;
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("HEADSHARD_CONFIGS_DIR")) dirs.push_back(std::string(env) + "/models");
  dirs.push_back(std::string(HS_CONFIGS_DIR) + "/models");
  dirs.push_back("configs/models");
  for (const auto& d : dirs) {
    for (const std::string& candidate : {d + "/" + name, d + "/" + name + ".json"})
      if (fs::exists(candidate)) return candidate;
  }
  throw std::invalid_argument("synthetic model preset '" + name + "' not found (looked in " + dirs[0] +
                              (dirs.size() > 1 ? " and " + dirs[1] : "") + ")");
}

static void count_types(Model& m, const std::vector<GgufTensor>& tensors) {
  m.n_tensors = tensors.size();
  for (const auto& t : tensors) ++m.tensor_types[ggml_type_name(t.type)];
}

static Model load_synthetic(const std::string& spec, const LoadOptions& opt) {
  std::string name = spec.substr(std::string("synthetic:").size());
  uint64_t seed = 0;
  if (auto at = name.rfind('@'); at != std::string::npos) {
    seed = std::stoull(name.substr(at + 1));
    name = name.substr(0, at);
  }
  const std::string path = find_preset(name);
  std::ifstream in(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
  Model m;
  m.source = spec;
  m.format = "synthetic";
  m.config = config_from_preset(j);
  if (opt.load_weights) m.weights = synthetic_weights(m.config, seed);
  return m;
}

Model load_model(const std::string& spec, const LoadOptions& opt) {
  if (spec.rfind("synthetic:", 0) == 0) return load_synthetic(spec, opt);
  if (!fs::exists(spec)) throw ModelFileError(spec + ": no such file or directory");
  Model m;
  m.source = spec;
  if (is_safetensors_dir(spec)) {
    auto st = SafetensorsModel::open(spec);
    m.format = "safetensors";
    try {
      m.config = config_from_hf(st->config());
    } catch (const std::exception& e) {
      throw ModelFileError(spec + "/config.json: " + e.what());
    }
    count_types(m, st->tensors());
    if (opt.load_weights) {
      if (!st->find_tensor("output.weight")) m.config.tied_embeddings = true;
      m.weights = load_weights(m.config, [&](const std::string& n) { return st->find_tensor(n); },
                               spec, opt.progress);
    }
    m.tokenizer = Tokenizer::from_hf_dir(spec);
    return m;
  }
  auto f = GgufFile::open(spec);
  m.format = "gguf";
  m.config = config_from_gguf(*f);
  count_types(m, f->tensors());
  m.chat_template = f->opt_string("tokenizer.chat_template").value_or("");
  m.tokenizer = Tokenizer::from_gguf(*f);
  if (opt.load_weights) {
    // Weights are copied out as float32, so the mapping can close after this.
    m.weights = load_weights(m.config, [&](const std::string& n) { return f->find_tensor(n); }, spec, opt.progress);
  }
  return m;
}

}  // namespace hs
