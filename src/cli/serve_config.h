// The settings of `headshard serve`, from flags and environment variables.
//
// Every flag --some-name can also come from HEADSHARD_SOME_NAME (the flag wins): HEADSHARD_MODEL,
// HEADSHARD_HOST, HEADSHARD_PORT, HEADSHARD_API_KEY, HEADSHARD_CTX_SIZE, HEADSHARD_MAX_SEQS, ...
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "cli/common.h"

namespace hs::cli {

struct ServeConfig {
  std::string model = kDefaultModelPath;
  std::string served_model_name;  // "" -> the file name without .gguf
  std::string plan = "dense";     // shard plan spec or file (plan_from_spec)
  std::string host = "127.0.0.1";
  int port = 8080;                // 0: any free port
  std::string api_key;
  int ctx_size = 0;               // 0: the model's context length
  int max_seqs = 16;
  int max_batch_tokens = 512;
  std::optional<int64_t> kv_memory;  // bytes; none: the engine's default
  int max_queue = 128;
  std::string device = "auto";    // cpu, cuda, or auto (cuda when built with it and a GPU is there)
  double grace_seconds = 30.0;
  int64_t max_body_bytes = int64_t{8} << 20;
  double timeout_seconds = 0.0;   // per request; 0: none
  int http_threads = 0;           // the most HTTP threads (server::ServerOptions::threads); 0: its default
};

// Parses argv[first..] and the environment (`getenv` is injectable for tests). Throws
// std::invalid_argument with a message naming the flag.
ServeConfig parse_serve_config(int argc, char** argv, int first,
                               const std::function<const char*(const char*)>& getenv_fn = nullptr);

extern const char* kServeUsage;

}  // namespace hs::cli
