// `headshard eval`: quality of a shard plan against dense, from real model output.
//   - perplexity over real English text (by default the license texts Debian's base-files
//     package installs in /usr/share/common-licenses), in windows of --window tokens;
//   - passkey retrieval: a five-digit number hidden at several depths in long filler text,
//     answered greedily.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "backend/backend.h"
#include "cli/common.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/forward_runner.h"
#include "model/model.h"
#include "shard/shard_plan.h"

namespace hs::cli {

namespace {

const char* kDefaultTexts =
    "/usr/share/common-licenses/GPL-3,/usr/share/common-licenses/GPL-2,/usr/share/common-licenses/LGPL-2.1,"
    "/usr/share/common-licenses/GFDL-1.3,/usr/share/common-licenses/MPL-2.0,/usr/share/common-licenses/Apache-2.0";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

// Tokens of the text files, in order, until at least `want` tokens.
std::vector<int32_t> eval_tokens(const Tokenizer& tok, const std::string& files, int64_t want) {
  std::vector<int32_t> ids;
  for (const auto& path : split(files, ',')) {
    std::ifstream in(path);
    if (!in) throw std::invalid_argument("cannot read evaluation text " + path);
    std::stringstream buf;
    buf << in.rdbuf();
    auto part = tok.encode(buf.str(), false, false);
    ids.insert(ids.end(), part.begin(), part.end());
    if (static_cast<int64_t>(ids.size()) >= want) break;
  }
  if (static_cast<int64_t>(ids.size()) < want)
    spdlog::warn("evaluation text has only {} tokens (asked for {})", ids.size(), want);
  if (static_cast<int64_t>(ids.size()) > want) ids.resize(want);
  return ids;
}

// Room for n_seqs sequences of `tokens` under the plan, with a prefill chunk's worth to spare.
int64_t kv_bytes_for(const Backend& be, const ShardPlan& plan, int64_t tokens, int n_seqs) {
  const ModelConfig& c = be.config();
  const int64_t spare = (1024 / plan.block_size() + 2) * int64_t{c.n_layers} * c.n_kv_heads;
  return (PagedKvCache::pages_for_length(c, plan, tokens) + spare) * n_seqs * be.page_bytes(plan.block_size());
}

struct Perplexity {
  double ppl = 0;
  int64_t tokens = 0;
  double seconds = 0;
};

// Mean negative log-likelihood of each window's tokens given the ones before them in the window.
Perplexity perplexity(const Model& m, const ShardPlan& plan, const std::vector<int32_t>& ids, int32_t window,
                      int32_t bos) {
  auto backend = make_cpu_backend(m.weights);
  ForwardRunner run(*backend, plan, kv_bytes_for(*backend, plan, window + 1, 1));
  const auto t0 = std::chrono::steady_clock::now();
  double nll = 0;
  int64_t n = 0;
  const int vocab = m.config.vocab_size;
  int64_t seq = 0;
  for (size_t w0 = 0; w0 < ids.size(); w0 += window) {
    std::vector<int32_t> win;
    if (bos >= 0) win.push_back(bos);
    win.insert(win.end(), ids.begin() + w0, ids.begin() + std::min(ids.size(), w0 + window));
    if (win.size() < 2) break;
    ++seq;
    const int32_t chunk = 512;
    for (int32_t p0 = 0; p0 + 1 < static_cast<int32_t>(win.size()); p0 += chunk) {
      const int32_t len = std::min<int32_t>(chunk, static_cast<int32_t>(win.size()) - 1 - p0);
      Batch b;
      b.chunks.push_back({seq, p0, {win.begin() + p0, win.begin() + p0 + len}, true});
      const Logits& lg = run.forward(b);
      for (int32_t i = 0; i < len; ++i) {
        const float* row = lg.row(i);
        const double mx = *std::max_element(row, row + vocab);
        double sum = 0;
        for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
        nll -= row[win[p0 + i + 1]] - mx - std::log(sum);
        ++n;
      }
    }
    run.release(seq);
  }
  return {std::exp(nll / n), n, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

// Builds a passkey prompt of about `context` tokens with the key at fractional `depth`.
std::vector<int32_t> passkey_prompt(const Tokenizer& tok, int64_t context, double depth, const std::string& key) {
  auto enc = [&](const std::string& s) { return tok.encode(s, false, false); };
  const auto intro = enc("There is an important piece of information hidden inside a lot of irrelevant text. "
                         "Find it and memorize it. I will quiz you about it.");
  const auto filler = enc(" The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.");
  const auto needle = enc(" The pass key is " + key + ". Remember it. " + key + " is the pass key.");
  const auto question = enc(" What is the pass key? The pass key is");
  std::vector<int32_t> ids;
  if (tok.bos_id() >= 0 && tok.add_bos_default()) ids.push_back(tok.bos_id());
  const int64_t fixed = static_cast<int64_t>(ids.size() + intro.size() + needle.size() + question.size());
  const int64_t n_fill = std::max<int64_t>(1, (context - fixed) / static_cast<int64_t>(filler.size()));
  const int64_t at = std::llround(depth * n_fill);
  ids.insert(ids.end(), intro.begin(), intro.end());
  for (int64_t i = 0; i <= n_fill; ++i) {
    if (i == at) ids.insert(ids.end(), needle.begin(), needle.end());
    if (i < n_fill) ids.insert(ids.end(), filler.begin(), filler.end());
  }
  ids.insert(ids.end(), question.begin(), question.end());
  return ids;
}

// Fraction of trials whose greedy answer contains the key, at one context length.
std::pair<int, int> passkey(const Model& m, const ShardPlan& plan, int64_t context, const std::vector<double>& depths,
                            int trials, uint64_t seed) {
  EngineOptions eo;
  eo.plan = plan;
  eo.max_batch_tokens = 1024;
  auto backend = make_cpu_backend(m.weights);
  eo.kv_bytes = kv_bytes_for(*backend, plan, context, static_cast<int>(depths.size()) * trials);
  Engine engine(std::move(backend), m.tokenizer, eo);
  std::mt19937_64 rng(seed);
  std::vector<std::string> keys, answers;
  for (double depth : depths) {
    for (int t = 0; t < trials; ++t) {
      keys.push_back(std::to_string(10000 + rng() % 90000));
      answers.emplace_back();
      GenerationRequest r;
      r.prompt = passkey_prompt(*m.tokenizer, context - 8, depth, keys.back());
      r.max_tokens = 8;
      r.sampling.temperature = 0;
      const size_t slot = answers.size() - 1;
      engine.submit(r, [&answers, slot](const TokenEvent& ev) { answers[slot] += ev.text; });
    }
  }
  engine.run_until_idle();
  int ok = 0;
  for (size_t i = 0; i < keys.size(); ++i) ok += answers[i].find(keys[i]) != std::string::npos;
  return {ok, static_cast<int>(keys.size())};
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  Args a(argc, argv, 2,
         {"model", "plan", "ppl-tokens", "window", "text", "passkey-contexts", "passkey-depths", "passkey-trials", "seed"},
         {"no-passkey", "no-perplexity"});
  Model m = load_model(model_path(a), {true, terminal_progress()});
  if (!m.tokenizer) throw std::invalid_argument("eval needs a model with a tokenizer");
  const ModelConfig& c = m.config;
  // Dense first, then each plan of --plan (several separated by '|').
  std::vector<ShardPlan> plans;
  for (const auto& spec : split(a.str("plan", "dense"), '|')) plans.push_back(plan_from_spec(spec, c));
  if (plans.empty()) throw std::invalid_argument("--plan is empty");
  plans.insert(plans.begin(), dense_plan(c.n_layers, c.n_kv_heads, plans[0].block_size()));
  const int32_t window = static_cast<int32_t>(std::min<int64_t>(a.integer("window", 4096), c.context_length - 1));
  const int64_t ppl_tokens = a.integer("ppl-tokens", 20000);
  std::vector<int64_t> contexts;
  for (const auto& s : split(a.str("passkey-contexts", std::to_string(c.context_length)), ','))
    contexts.push_back(std::min<int64_t>(std::stoll(s), c.context_length));
  std::vector<double> depths;
  for (const auto& s : split(a.str("passkey-depths", "0.1,0.3,0.5,0.7,0.9"), ',')) depths.push_back(std::stod(s));
  const int trials = static_cast<int>(a.integer("passkey-trials", 1));
  const uint64_t seed = static_cast<uint64_t>(a.integer("seed", 1));

  struct Row {
    std::string name;
    Perplexity ppl;
    std::vector<std::pair<int, int>> keys;
  };
  std::vector<Row> rows;
  const int32_t bos = m.tokenizer->add_bos_default() ? m.tokenizer->bos_id() : -1;
  std::vector<int32_t> ids;
  if (!a.has("no-perplexity")) ids = eval_tokens(*m.tokenizer, a.str("text", kDefaultTexts), ppl_tokens);
  for (size_t i = 0; i < plans.size(); ++i) {
    const ShardPlan* p = &plans[i];
    if (i > 0 && p->all_dense()) continue;  // dense is the first row already
    Row r{i == 0 ? "dense" : p->name(), {}, {}};
    if (!ids.empty()) {
      r.ppl = perplexity(m, *p, ids, window, bos);
      spdlog::info("{}: perplexity {:.4f} over {} tokens ({:.0f} s)", r.name, r.ppl.ppl, r.ppl.tokens, r.ppl.seconds);
    }
    if (!a.has("no-passkey")) {
      for (int64_t ctx : contexts) {
        r.keys.push_back(passkey(m, *p, ctx, depths, trials, seed));
        spdlog::info("{}: passkey at {} tokens: {}/{}", r.name, ctx, r.keys.back().first, r.keys.back().second);
      }
    }
    rows.push_back(std::move(r));
  }

  std::printf("\nmodel %s; perplexity over %lld tokens in windows of %d; passkey depths %s, %d trial(s) each\n\n",
              m.source.c_str(), static_cast<long long>(ids.size()), window, a.str("passkey-depths", "0.1,0.3,0.5,0.7,0.9").c_str(),
              trials);
  std::printf("%-44s %12s %10s", "plan", "perplexity", "vs dense");
  for (int64_t ctx : contexts)
    if (!a.has("no-passkey")) std::printf(" %14s", ("passkey@" + std::to_string(ctx)).c_str());
  std::printf("\n");
  for (const Row& r : rows) {
    std::printf("%-44s %12.4f %9.2f%%", r.name.c_str(), r.ppl.ppl,
                rows[0].ppl.ppl > 0 ? 100.0 * (r.ppl.ppl / rows[0].ppl.ppl - 1.0) : 0.0);
    for (const auto& [ok, n] : r.keys) std::printf(" %14s", (std::to_string(ok) + "/" + std::to_string(n)).c_str());
    std::printf("\n");
  }
  return 0;
}

}  // namespace hs::cli
