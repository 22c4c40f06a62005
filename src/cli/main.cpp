// headshard: the command-line entry point.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "backend/backend.h"
#include "cli/args.h"
#include "cli/common.h"
#include "cli/commands.h"
#include "cli/device.h"
#ifdef HEADSHARD_WITH_SERVER
#include "cli/serve.h"
#endif
#include "engine/engine.h"
#include "model/chat.h"
#include "model/gguf.h"
#include "model/model.h"
#include "shard/shard_plan.h"

namespace {

using hs::cli::Args;
using hs::cli::model_path;
using hs::cli::terminal_progress;

const char* kUsage = R"(headshard: an LLM inference engine with heterogeneous context sharding

usage:
  headshard generate [--model PATH] --prompt TEXT [--chat] [--system TEXT] [--max-tokens N]
                     [--temperature T] [--top-p P] [--top-k K] [--min-p P] [--seed S]
                     [--repeat-penalty R] [--presence-penalty P] [--frequency-penalty F]
                     [--stop TEXT] [--ignore-eos] [--plan FILE|SPEC] [--kv-memory BYTES]
                     [--device cpu|cuda|auto]
  headshard serve [--model PATH] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--ctx-size N]
                  [--max-seqs N] [--max-queue N] [--kv-memory BYTES] [--plan FILE|SPEC] [--device cpu|cuda|auto]
                  [--grace-seconds S] [--max-body-bytes N] [--timeout S]   (see headshard serve --help)
  headshard info [--model PATH]
  headshard kv-report [--model PATH] [--plan FILE|SPEC] [--context N] [--budget BYTES] [--kv-dtype bf16|f32]
  headshard eval [--model PATH] [--plan FILE|SPEC[|FILE|SPEC...]] [--ppl-tokens N] [--window N]
                 [--passkey-contexts N,...] [--passkey-depths F,...] [--passkey-trials N] [--text FILE,...]
  headshard help

--model defaults to $HEADSHARD_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf.
PATH is a .gguf file, a Hugging Face folder, or synthetic:<preset>[@seed].
--plan is a shard plan file (configs/plans/*.json) or a generator spec: dense,
s2:stride=8,local=16,sink=0,dense-every=2, streaming:sink=1,local=16, mixed:dense-frac=0.25.
Generated text goes to stdout; logs go to stderr (HEADSHARD_LOG_LEVEL=debug|info|warn|error).
)";

int cmd_info(int argc, char** argv) {
  Args a(argc, argv, 2, {"model"}, {});
  hs::LoadOptions opt;
  opt.load_weights = false;
  const hs::Model m = hs::load_model(model_path(a), opt);
  const hs::ModelConfig& c = m.config;
  std::cout << "model:          " << m.source << "\n"
            << "format:         " << m.format << "\n"
            << "architecture:   " << hs::arch_name(c.arch) << " (" << c.name << ")\n"
            << "layers:         " << c.n_layers << "\n"
            << "d_model:        " << c.d_model << "\n"
            << "heads:          " << c.n_heads << " query, " << c.n_kv_heads << " key/value, head dim " << c.head_dim
            << "\n"
            << "feed-forward:   " << c.d_ff << "\n"
            << "vocabulary:     " << c.vocab_size << "\n"
            << "context length: " << c.context_length << "\n";
  if (c.sliding_window > 0) {
    int local = 0;
    for (bool b : c.layer_is_local) local += b;
    std::cout << "sliding window: " << c.sliding_window << " tokens on " << local << " of " << c.n_layers << " layers\n";
  }
  std::cout << "tensors:        " << m.n_tensors << "\n"
            << "tensor types:  ";
  for (const auto& [type, n] : m.tensor_types) std::cout << " " << type << " x" << n;
  std::cout << "\n"
            << "tokenizer:      " << (m.tokenizer ? m.tokenizer->kind() : std::string("none")) << "\n";
  if (m.tokenizer)
    std::cout << "special tokens: bos " << m.tokenizer->bos_id() << ", eos " << m.tokenizer->eos_id()
              << (m.tokenizer->add_bos_default() ? " (BOS added)" : "") << "\n";
  std::cout << "chat template:  " << hs::chat_format_name(m) << "\n";
  return 0;
}

int cmd_generate(int argc, char** argv) {
  Args a(argc, argv, 2,
         {"model", "prompt", "system", "max-tokens", "temperature", "top-p", "top-k", "min-p", "seed", "repeat-penalty",
          "presence-penalty", "frequency-penalty", "stop", "plan", "kv-memory", "device"},
         {"chat", "ignore-eos"});
  hs::GenerationRequest req;
  req.max_tokens = static_cast<int>(a.integer("max-tokens", 128));
  req.ignore_eos = a.has("ignore-eos");
  req.sampling.temperature = static_cast<float>(a.number("temperature", 0.8));
  req.sampling.top_p = static_cast<float>(a.number("top-p", 0.95));
  req.sampling.top_k = static_cast<int>(a.integer("top-k", 40));
  req.sampling.min_p = static_cast<float>(a.number("min-p", 0.05));
  req.sampling.repetition_penalty = static_cast<float>(a.number("repeat-penalty", 1.0));
  req.sampling.presence_penalty = static_cast<float>(a.number("presence-penalty", 0.0));
  req.sampling.frequency_penalty = static_cast<float>(a.number("frequency-penalty", 0.0));
  if (a.has("seed")) req.sampling.seed = static_cast<uint64_t>(a.integer("seed", 0));
  if (a.has("stop")) req.stop.push_back(a.str("stop"));
  const std::string prompt = a.required("prompt");
  const std::string device = hs::cli::resolve_device(a.str("device", "auto"));  // fail before loading

  const auto t0 = std::chrono::steady_clock::now();
  hs::LoadOptions opt;
  opt.progress = terminal_progress();
  hs::Model m = hs::load_model(model_path(a), opt);
  if (!m.tokenizer) throw std::invalid_argument("this model has no tokenizer; generate needs text");
  spdlog::info("loaded {} ({}, {} layers) in {:.1f} s, {:.0f} MiB of weights", m.source,
               hs::arch_name(m.config.arch), m.config.n_layers,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               m.weights->bytes() / 1048576.0);

  std::string text = prompt;
  if (a.has("chat")) {
    std::vector<hs::ChatMessage> msgs;
    if (a.has("system")) msgs.push_back({"system", a.str("system")});
    msgs.push_back({"user", prompt});
    text = hs::render_chat(m, msgs);
  }
  req.prompt = m.tokenizer->encode(text, m.tokenizer->add_bos_default(), /*parse_special=*/a.has("chat"));
  spdlog::debug("prompt: {} tokens", req.prompt.size());

  hs::EngineOptions eo;
  eo.plan = hs::plan_from_spec(a.str("plan", "dense"), m.config);
  eo.kv_bytes = a.bytes("kv-memory", int64_t{2} << 30);
  hs::Engine engine(hs::cli::make_backend(device, m.weights), m.tokenizer, eo);
  int n_out = 0;
  hs::FinishReason reason = hs::FinishReason::None;
  engine.submit(req, [&](const hs::TokenEvent& ev) {
    if (ev.token >= 0) ++n_out;
    std::cout << ev.text << std::flush;
    if (ev.finish != hs::FinishReason::None) reason = ev.finish;
  });
  const auto t1 = std::chrono::steady_clock::now();
  engine.run_until_idle();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::cout << std::endl;
  spdlog::info("{} prompt tokens, {} generated in {:.2f} s ({:.1f} tokens/s), finish: {}", req.prompt.size(), n_out,
               secs, n_out / secs, hs::finish_reason_name(reason));
  return 0;
}

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("headshard");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  const char* level = std::getenv("HEADSHARD_LOG_LEVEL");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::info);
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging();
  const std::string cmd = argc > 1 ? argv[1] : "help";
  try {
    if (cmd == "generate") return cmd_generate(argc, argv);
    if (cmd == "info") return cmd_info(argc, argv);
    if (cmd == "kv-report") return hs::cli::cmd_kv_report(argc, argv);
    if (cmd == "eval") return hs::cli::cmd_eval(argc, argv);
#ifdef HEADSHARD_WITH_SERVER
    if (cmd == "serve") return cmd_serve(argc, argv);
#else
    if (cmd == "serve") throw std::invalid_argument("this build has no HTTP server (cpp-httplib was not found)");
#endif
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << "unknown command '" << cmd << "'\n\n" << kUsage;
    return 2;
  } catch (const std::invalid_argument& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
