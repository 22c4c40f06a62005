// Helpers shared by the tests: where the sources and models are, and skipping when a model
// file has not been fetched.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

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

}  // namespace hs::test
