// Prompt-processing and generation speed of a backend on a model (a GGUF file or
// synthetic:<preset>, e.g. synthetic:llama-3.1-8b on a GPU).
//   bench_generate [--model PATH] [--device cpu|cuda|auto] [--plan SPEC[|SPEC...]] [--prompt N[,N...]]
//                  [--gen N] [--batch B[,B...]] [--context N[,N...]] [--reps R] [--json FILE]
//                  [--attention sharded[,simple]] [--gemv on[,off]] [--pdl on[,off]]
//                  [--decode tma[,cp.async][,tma-shared][,tma-unstaggered][,tma-nolone][,tma-notwostage]
//                            [,tma-shortsplits][,tma-notiles][,tma-wholewaves]]
//                  [--fuse on[,off]] [--fuse-act on[,off]] [--overlap on[,off]]
//                  [--driver runner[,engine]] [--weights packed[,f32]]
// Every combination runs in one process, side by side (the weights are made or loaded once):
// for each form of the host's weights (`packed` as loaded, matrices kept in their ggml blocks where
// the CPU backend reads them; `f32` every matrix dequantized to float32 first), each attention
// kernel (CUDA: `simple` is HEADSHARD_ATTENTION=simple), each choice of the single-row GEMM kernel
// (CUDA: `off` is HEADSHARD_CUDA_GEMV=0, cuBLAS only), of programmatic dependent launch (CUDA:
// `off` is HEADSHARD_CUDA_PDL=0), of the sharded decode kernel (CUDA:
// `cp.async` is HEADSHARD_CUDA_DECODE=cp.async, `tma-shared` the copy engine two blocks per
// multiprocessor for every grid, `tma-unstaggered` its plans without the stagger, `tma-nolone`
// without lone plans of long lists, `tma-notwostage` without two-stage plans of long items,
// `tma-shortsplits` with short splits in plans of more than one wave, `tma-notiles` the copy
// engine where the 128-token-tile kernel runs otherwise, `tma-wholewaves` plans of more than four
// waves estimated in whole waves), of the
// single-row kernel converting the attention output itself (CUDA: `off` is HEADSHARD_CUDA_FUSE=0),
// of the single-row gate/up projection applying the activation itself (CUDA: `off` is
// HEADSHARD_CUDA_FUSE_ACT=0),
// of steps in flight in the engine (CUDA: `off` is HEADSHARD_CUDA_OVERLAP=0; only the engine driver
// uses them) and each plan, prompt processing of each --prompt length, then decoding: each of
// `batch` sequences starts from --context tokens of random prompt (default 64), then all decode
// --gen tokens together, greedily (sampled on the backend when it can, as the engine does). That is
// the `runner` driver (a ForwardRunner, one step at a time). The `engine` driver submits the batch's
// requests (prompts of --context tokens, --gen + 1 tokens each) to an Engine (prefill chunks of up
// to 2048 tokens beside the decodes) and counts the tokens from the moment every sequence has its
// first one.
// Prints a table of medians over R repetitions and writes the raw numbers as JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "backend/backend.h"
#include "cli/args.h"
#include "cli/common.h"
#include "cli/device.h"
#include "engine/engine.h"
#include "engine/forward_runner.h"
#include "engine/sampling.h"
#include "kv/paged_kv_cache.h"
#include "model/model.h"
#include "shard/shard_plan.h"
#include "util/thread_pool.h"

namespace {

constexpr int kPrefillChunk = 2048;  // tokens a prefill forward takes at a time (the runner's)

using hs::bench::int_list;
using hs::bench::median;
using hs::bench::split;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Another owner's backend, for an Engine (which owns its backend) over the benchmark's.
class Borrowed final : public hs::Backend {
 public:
  explicit Borrowed(hs::Backend& b) : b_(b) {}
  std::string name() const override { return b_.name(); }
  const hs::ModelConfig& config() const override { return b_.config(); }
  int64_t page_bytes(int32_t block_size) const override { return b_.page_bytes(block_size); }
  void configure_kv(const hs::ShardPlan& plan, int32_t n_pages) override { b_.configure_kv(plan, n_pages); }
  bool samples_tokens() const override { return b_.samples_tokens(); }
  void forward(const hs::Batch& batch, const hs::KvStepMeta& meta, hs::Logits& out) override {
    b_.forward(batch, meta, out);
  }
  bool overlaps_steps() const override { return b_.overlaps_steps(); }
  void launch(const hs::Batch& batch, const hs::KvStepMeta& meta, hs::Logits& out) override {
    b_.launch(batch, meta, out);
  }
  void collect(hs::Logits& out) override { b_.collect(out); }

 private:
  hs::Backend& b_;
};

}  // namespace

int main(int argc, char** argv) try {
  hs::cli::Args a(argc, argv, 1,
                  {"model", "device", "plan", "prompt", "gen", "batch", "context", "reps", "json", "attention", "gemv",
                   "pdl", "decode", "fuse", "fuse-act", "overlap", "driver", "weights"},
                  {});
  const std::string path = a.str("model", hs::cli::kDefaultModelPath);
  const auto prompts = a.str("prompt", "128,512") == "0" ? std::vector<int>{} : int_list(a.str("prompt", "128,512"));
  const auto batches = int_list(a.str("batch", "1,4"));
  const auto contexts = int_list(a.str("context", "64"));
  const int gen = static_cast<int>(a.integer("gen", 32));
  const int reps = static_cast<int>(a.integer("reps", 3));
  const std::string json_path = a.str("json", "bench_generate.json");
  const auto plan_specs = split(a.str("plan", "dense"), '|');
  // The variant options, each a comma list of its values (the first by default), and the
  // environment variable the CUDA backend reads for it (on/off as 1/0, else the value itself;
  // none for the weights' form, which is chosen here).
  struct Switch {
    std::string name, env;
    std::vector<std::string> values, chosen;
  };
  std::vector<Switch> switches = {{"weights", "", {"packed", "f32"}},
                                  {"attention", "HEADSHARD_ATTENTION", {"sharded", "simple"}},
                                  {"gemv", "HEADSHARD_CUDA_GEMV", {"on", "off"}},
                                  {"pdl", "HEADSHARD_CUDA_PDL", {"on", "off"}},
                                  {"decode", "HEADSHARD_CUDA_DECODE",
                                   {"tma", "cp.async", "tma-shared", "tma-unstaggered", "tma-nolone", "tma-notwostage",
                                    "tma-shortsplits", "tma-notiles", "tma-wholewaves"}},
                                  {"fuse", "HEADSHARD_CUDA_FUSE", {"on", "off"}},
                                  {"fuse-act", "HEADSHARD_CUDA_FUSE_ACT", {"on", "off"}},
                                  {"overlap", "HEADSHARD_CUDA_OVERLAP", {"on", "off"}}};
  const auto drivers = split(a.str("driver", "runner"), ',');
  for (const std::string& d : drivers)
    if (d != "runner" && d != "engine") throw std::invalid_argument("--driver takes runner, engine");
  for (Switch& w : switches) {
    w.chosen = split(a.str(w.name, w.values[0]), ',');
    for (const std::string& item : w.chosen)
      if (std::find(w.values.begin(), w.values.end(), item) == w.values.end()) {
        std::string known;
        for (const std::string& v : w.values) known += (known.empty() ? "" : ", ") + v;
        throw std::invalid_argument("--" + w.name + " takes " + known);
      }
  }

  const std::string device = hs::cli::resolve_device(a.str("device", "auto"));  // fail before loading
  hs::Model m = hs::load_model(path);
  std::shared_ptr<const hs::ModelWeights> f32_weights;  // made when first asked for
  std::mt19937 rng(42);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % m.config.vocab_size);
    return t;
  };
  nlohmann::json out = {{"model", path}, {"device", device}, {"threads", hs::ThreadPool::global().size()},
                        {"reps", reps}, {"new_tokens", gen}, {"prefill", nlohmann::json::array()},
                        {"decode", nlohmann::json::array()}};
  std::printf("model %s on %s, %d CPU threads, median of %d runs\n\n", path.c_str(), device.c_str(),
              hs::ThreadPool::global().size(), reps);
  for (const Switch& w : switches) std::printf("%-9s ", w.name.c_str());
  std::printf("%-34s %-30s %12s %12s\n", "plan", "test", "tokens/s", "ms/step");
  int64_t seq = 1;
  // Every combination of the switches' values, one per variant.
  std::vector<std::vector<std::string>> variants = {{}};
  for (const Switch& w : switches) {
    std::vector<std::vector<std::string>> longer;
    for (const auto& v : variants)
      for (const std::string& item : w.chosen) {
        longer.push_back(v);
        longer.back().push_back(item);
      }
    variants = std::move(longer);
  }
  for (const auto& variant : variants) {
    nlohmann::json tags;  // the variant, as each result's JSON records it
    for (size_t i = 0; i < switches.size(); ++i) {
      const std::string& v = variant[i];
      if (!switches[i].env.empty())  // read by CUDA builds
        setenv(switches[i].env.c_str(), v == "on" ? "1" : v == "off" ? "0" : v.c_str(), 1);
      tags[switches[i].name] = v;
    }
    if (variant[0] == "f32" && !f32_weights) f32_weights = m.weights->unpacked();
    auto be = hs::cli::make_backend(device, variant[0] == "f32" ? f32_weights : m.weights);
    // Decoding picks tokens greedily where the engine would: on the backend when it samples.
    const bool sample_on_backend = be->samples_tokens();
    const hs::SamplingParams greedy_params{0.0f};
    const hs::SampleSpec greedy{&greedy_params};
    for (const std::string& spec : plan_specs) {
      const hs::ShardPlan plan = hs::plan_from_spec(spec, m.config);
      // Room for the largest decode batch at its longest length (and a page in flight for each
      // head), plus the pages of one prefill chunk, which every head holds until the chunk is
      // written: sequences are prefilled one at a time.
      const int64_t heads = int64_t{m.config.n_layers} * m.config.n_kv_heads;
      const int64_t chunk = heads * (kPrefillChunk / plan.block_size() + 1);
      int64_t pages = 0;
      for (int c : contexts)
        for (int b : batches)
          pages = std::max(pages, (hs::PagedKvCache::pages_for_length(m.config, plan, c + gen + 1) + heads) * b + chunk);
      for (int n : prompts) pages = std::max(pages, hs::PagedKvCache::pages_for_length(m.config, plan, n) + chunk);
      const int64_t kv_bytes = std::max<int64_t>(pages * be->page_bytes(plan.block_size()), int64_t{1} << 30);
      hs::ForwardRunner run(*be, plan, kv_bytes);
      // Prefills a sequence's prompt in chunks of kPrefillChunk tokens; returns the greedy next token.
      auto prefill = [&](int64_t id, const std::vector<int32_t>& prompt) {
        const int n = static_cast<int>(prompt.size());
        int32_t next = 0;
        for (int p0 = 0; p0 < n; p0 += kPrefillChunk) {
          hs::Batch b;
          b.chunks.push_back({id, p0, {prompt.begin() + p0, prompt.begin() + std::min(n, p0 + kPrefillChunk)}, false});
          const hs::Logits& lg = run.forward(b);
          next = hs::argmax(lg.last_row_of(0, b), lg.vocab);
        }
        return next;
      };
      auto row = [&](const std::string& test, double tps, double ms) {
        const bool cpu = be->name() == "cpu";
        for (size_t i = 0; i < variant.size(); ++i)  // the CUDA backend's switches mean nothing to the CPU's
          std::printf("%-9s ", cpu && !switches[i].env.empty() ? "-" : variant[i].c_str());
        std::printf("%-34s %-30s %12.1f %12.2f\n", plan.name().c_str(), test.c_str(), tps, ms);
        std::fflush(stdout);
      };
      for (int n : prompts) {
        std::vector<double> tps;
        for (int r = 0; r < reps; ++r) {
          const auto prompt = random_tokens(n);
          const auto t0 = std::chrono::steady_clock::now();
          prefill(seq, prompt);
          tps.push_back(n / seconds_since(t0));
          run.release(seq++);
        }
        const double med = median(tps);
        row("prompt processing pp" + std::to_string(n), med, 1000.0 * n / med);
        nlohmann::json r = tags;
        r.update({{"plan", plan.name()}, {"prompt_tokens", n}, {"tokens_per_s", tps}, {"median_tokens_per_s", med}});
        out["prefill"].push_back(r);
      }
      const bool by_runner = std::find(drivers.begin(), drivers.end(), "runner") != drivers.end();
      for (int context : by_runner ? contexts : std::vector<int>{})
        for (int bsz : batches) {
          std::vector<double> tps;
          for (int r = 0; r < reps; ++r) {
            // Each sequence's prompt is prefilled alone; then all decode together, greedily.
            std::vector<int64_t> ids;
            std::vector<int32_t> last(bsz);
            for (int i = 0; i < bsz; ++i) {
              ids.push_back(seq++);
              last[i] = prefill(ids.back(), random_tokens(context));
            }
            const auto t0 = std::chrono::steady_clock::now();
            for (int s = 0; s < gen; ++s) {
              hs::Batch b;
              for (int i = 0; i < bsz; ++i)
                b.chunks.push_back({ids[i], context + s, {last[i]}, false, sample_on_backend ? &greedy : nullptr});
              const hs::Logits& lg = run.forward(b);
              if (sample_on_backend) {
                std::copy(lg.sampled.begin(), lg.sampled.end(), last.begin());
                continue;
              }
              hs::ThreadPool::global().parallel_for(bsz, 4, [&](int64_t i0, int64_t i1) {
                for (int64_t i = i0; i < i1; ++i) last[i] = hs::argmax(lg.last_row_of(i, b), lg.vocab);
              });
            }
            tps.push_back(static_cast<double>(gen) * bsz / seconds_since(t0));
            for (int64_t id : ids) run.release(id);
          }
          const double med = median(tps);
          row("tg" + std::to_string(gen) + " @" + std::to_string(context) + " batch " + std::to_string(bsz), med,
              1000.0 * bsz / med);
          nlohmann::json r = tags;
          r.update({{"plan", plan.name()}, {"context", context}, {"batch", bsz}, {"driver", "runner"},
                    {"sampling", sample_on_backend ? "backend" : "host"}, {"tokens_per_s", tps},
                    {"median_tokens_per_s", med}});
          out["decode"].push_back(r);
        }
      // The engine (it configures the backend's KV anew: the runner is not used after this).
      const bool by_engine = std::find(drivers.begin(), drivers.end(), "engine") != drivers.end();
      for (int context : by_engine ? contexts : std::vector<int>{})
        for (int bsz : batches) {
          std::vector<double> tps;
          int64_t preemptions = 0;  // recomputed sequences would make the row measure something else
          for (int r = 0; r < reps; ++r) {
            hs::EngineOptions eo;
            eo.plan = plan;
            eo.max_seqs = bsz;
            eo.max_batch_tokens = 2048 + bsz;
            eo.kv_bytes = kv_bytes;
            hs::Engine engine(std::make_unique<Borrowed>(*be), nullptr, eo);
            int started = 0;
            int64_t counted = 0;
            std::vector<int> got(bsz, 0);
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < bsz; ++i) {
              hs::GenerationRequest req;
              req.prompt = random_tokens(context);
              req.max_tokens = gen + 1;
              req.sampling.temperature = 0.0f;
              engine.submit(std::move(req), [&, i](const hs::TokenEvent& ev) {
                if (ev.token < 0) return;
                if (started == bsz) ++counted;
                if (++got[i] == 1 && ++started == bsz) t0 = std::chrono::steady_clock::now();
              });
            }
            engine.run_until_idle();
            tps.push_back(static_cast<double>(counted) / seconds_since(t0));
            preemptions += engine.preemptions();
          }
          const double med = median(tps);
          row("tg" + std::to_string(gen) + " @" + std::to_string(context) + " batch " + std::to_string(bsz) + " engine",
              med, 1000.0 * bsz / med);
          nlohmann::json r = tags;
          r.update({{"plan", plan.name()}, {"context", context}, {"batch", bsz}, {"driver", "engine"},
                    {"tokens_per_s", tps}, {"median_tokens_per_s", med}, {"preemptions", preemptions}});
          if (preemptions > 0)
            std::fprintf(stderr, "bench_generate: the engine preempted %lld sequences in that row (KV pool too small)\n",
                         static_cast<long long>(preemptions));
          out["decode"].push_back(r);
        }
    }
  }
  hs::bench::write_json(json_path, out);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_generate: %s\n", e.what());
  return 1;
}
