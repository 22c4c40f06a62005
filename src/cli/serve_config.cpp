#include "cli/serve_config.h"

#include <cmath>
#include <cstdlib>
#include <set>
#include <stdexcept>

#include "cli/args.h"

namespace hs::cli {

const char* kServeUsage = R"(  headshard serve [--model PATH] [--served-model-name NAME] [--plan FILE|SPEC]
                  [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--ctx-size N]
                  [--max-seqs 16] [--max-batch-tokens 512] [--kv-memory BYTES] [--max-queue 128]
                  [--device auto|cpu|cuda] [--grace-seconds 30] [--max-body-bytes 8M] [--timeout S]
                  [--http-threads 4096]
      (each flag also from HEADSHARD_<NAME>, e.g. HEADSHARD_PORT; the flag wins)
)";

namespace {

std::string env_name(const std::string& flag) {
  std::string e = "HEADSHARD_";
  for (char c : flag) e += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return e;
}

long long to_integer(const std::string& flag, const std::string& text, long long lo, long long hi) {
  const long long v = parse_integer(flag, text);
  if (v < lo || v > hi)
    throw std::invalid_argument("--" + flag + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                text);
  return v;
}

double to_number(const std::string& flag, const std::string& text, double lo, double hi) {
  const double v = parse_number(flag, text);
  if (v < lo || v > hi) throw std::invalid_argument("--" + flag + " is out of range: " + text);
  return v;
}

}  // namespace

ServeConfig parse_serve_config(int argc, char** argv, int first,
                               const std::function<const char*(const char*)>& getenv_fn) {
  const std::set<std::string> options = {"model",     "served-model-name", "plan",          "host",
                                         "port",      "api-key",           "ctx-size",      "max-seqs",
                                         "max-batch-tokens", "kv-memory",  "max-queue",     "device",
                                         "grace-seconds", "max-body-bytes", "timeout", "http-threads"};
  Args a(argc, argv, first, options, {});
  if (!a.positional().empty()) throw std::invalid_argument("unexpected argument '" + a.positional()[0] + "'");
  auto env = [&](const std::string& name) -> const char* {
    const std::string e = env_name(name);
    return getenv_fn ? getenv_fn(e.c_str()) : std::getenv(e.c_str());
  };
  // The flag, else the environment variable, else nothing.
  auto setting = [&](const std::string& name) -> std::optional<std::string> {
    if (a.has(name)) return a.str(name);
    if (const char* v = env(name)) return std::string(v);
    return std::nullopt;
  };

  ServeConfig c;
  if (auto v = setting("model")) c.model = *v;
  if (auto v = setting("served-model-name")) c.served_model_name = *v;
  if (auto v = setting("plan")) c.plan = *v;
  if (auto v = setting("host")) c.host = *v;
  if (auto v = setting("port")) c.port = static_cast<int>(to_integer("port", *v, 0, 65535));
  if (auto v = setting("api-key")) c.api_key = *v;
  if (auto v = setting("ctx-size")) c.ctx_size = static_cast<int>(to_integer("ctx-size", *v, 0, 1 << 30));
  if (auto v = setting("max-seqs")) c.max_seqs = static_cast<int>(to_integer("max-seqs", *v, 1, 4096));
  if (auto v = setting("max-batch-tokens"))
    c.max_batch_tokens = static_cast<int>(to_integer("max-batch-tokens", *v, 1, 1 << 20));
  if (auto v = setting("kv-memory")) c.kv_memory = parse_bytes(*v);
  if (auto v = setting("max-queue")) c.max_queue = static_cast<int>(to_integer("max-queue", *v, 0, 1 << 20));
  if (auto v = setting("device")) c.device = *v;
  if (c.device != "cpu" && c.device != "cuda" && c.device != "auto")
    throw std::invalid_argument("--device must be cpu, cuda or auto, got '" + c.device + "'");
  if (auto v = setting("grace-seconds")) c.grace_seconds = to_number("grace-seconds", *v, 0, 86400);
  if (auto v = setting("max-body-bytes")) c.max_body_bytes = parse_bytes(*v);
  if (c.max_body_bytes < 1024) throw std::invalid_argument("--max-body-bytes must be at least 1K");
  if (auto v = setting("timeout")) c.timeout_seconds = to_number("timeout", *v, 0, 86400 * 7);
  if (auto v = setting("http-threads")) c.http_threads = static_cast<int>(to_integer("http-threads", *v, 4, 1 << 16));
  return c;
}

}  // namespace hs::cli
