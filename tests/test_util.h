// Helpers shared by the tests: where the sources and models are, and skipping when a model
// file has not been fetched.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace hs::test {

inline std::string source_path(const std::string& rel) { return std::string(HS_SOURCE_DIR) + "/" + rel; }

// Directory holding the model files (HEADSHARD_MODELS_DIR, default <source>/models).
inline std::string models_dir() {
  const char* env = std::getenv("HEADSHARD_MODELS_DIR");
  return env ? std::string(env) : source_path("models");
}

inline const char* kSmolLM2File = "SmolLM2-135M-Instruct.Q4_1.gguf";
inline const char* kGemma3File = "gemma-3-270m-q4_k_m.gguf";

// Path of a model file; the test is skipped when it is missing, unless HEADSHARD_REQUIRE_MODELS
// is set (CI sets it, so a missing model fails instead of hiding tests).
#define HS_MODEL_OR_SKIP(var, file)                                                         \
  std::string var = ::hs::test::models_dir() + "/" + (file);                                \
  if (!std::filesystem::exists(var)) {                                                      \
    if (std::getenv("HEADSHARD_REQUIRE_MODELS")) FAIL() << "model file missing: " << var;   \
    GTEST_SKIP() << "model file missing: " << var << " (run scripts/fetch-model.sh --all)"; \
  }

// A golden file from tests/golden/ (made by the scripts/make-*-golden.py generators).
inline nlohmann::json read_golden(const std::string& name) {
  std::ifstream in(source_path("tests/golden/" + name));
  if (!in) throw std::runtime_error("missing golden file tests/golden/" + name);
  return nlohmann::json::parse(in);
}

// Models are large: each is loaded once per test program.
inline const Model& cached_model(const std::string& path) {
  static std::map<std::string, Model> models;
  auto it = models.find(path);
  if (it == models.end()) it = models.emplace(path, load_model(path)).first;
  return it->second;
}

}  // namespace hs::test
