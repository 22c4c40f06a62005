// The engine's batching, preemption and cancellation, on a small synthetic model: whatever the
// schedule, each greedy output equals the same request run alone. And its protocol with a backend
// that samples (as the CUDA backend does): what it asks the backend to sample, with which random
// bits, and that the tokens it gets back are the ones it emits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "model/weights.h"

namespace hs {
namespace {

std::shared_ptr<const ModelWeights> tiny_model() {
  static auto w = std::shared_ptr<const ModelWeights>(synthetic_weights(
      config_from_preset({{"arch", "llama"}, {"n_layers", 2}, {"d_model", 32}, {"n_heads", 4}, {"n_kv_heads", 2},
                          {"head_dim", 8}, {"d_ff", 64}, {"vocab_size", 64}, {"context_length", 512}}),
      3));
  return w;
}

struct Outputs {
  std::map<int64_t, std::vector<int32_t>> tokens;
  std::map<int64_t, FinishReason> finish;
};

std::vector<GenerationRequest> requests(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<GenerationRequest> out(n);
  for (auto& r : out) {
    r.prompt.resize(5 + rng() % 60);
    for (auto& t : r.prompt) t = static_cast<int32_t>(rng() % 64);
    r.max_tokens = 10 + static_cast<int>(rng() % 30);
    r.sampling.temperature = 0;
  }
  return out;
}

std::vector<std::vector<int32_t>> run_all(const std::vector<GenerationRequest>& reqs, EngineOptions opt,
                                          int64_t* preemptions = nullptr, bool one_at_a_time = false) {
  Engine engine(make_cpu_backend(tiny_model()), nullptr, std::move(opt));
  std::vector<std::vector<int32_t>> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    engine.submit(reqs[i], [&out, i](const TokenEvent& ev) {
      if (ev.token >= 0) out[i].push_back(ev.token);
    });
    if (one_at_a_time) engine.run_until_idle();
  }
  engine.run_until_idle();
  EXPECT_EQ(engine.kv().pool().used_pages(), 0);
  if (preemptions) *preemptions = engine.preemptions();
  return out;
}

TEST(Engine, BatchedAndPreemptedOutputsEqualOutputsAlone) {
  const auto reqs = requests(12, 5);
  EngineOptions alone;
  alone.plan = dense_plan(2, 2, 16);
  const auto want = run_all(reqs, alone, nullptr, /*one_at_a_time=*/true);

  EngineOptions tight = alone;
  tight.max_batch_tokens = 48;
  // 80 pages of 1 KiB (K and V of 16 tokens x head dim 8 in float32): room for two or three
  // sequences (4 heads x up to 7 blocks each), so the rest wait or are preempted and recomputed.
  tight.kv_bytes = 80 * 1024;
  int64_t preempted = 0;
  const auto got = run_all(reqs, tight, &preempted);
  EXPECT_GT(preempted, 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(got[i].size(), static_cast<size_t>(reqs[i].max_tokens)) << "request " << i;
    EXPECT_EQ(got[i], want[i]) << "request " << i;
  }
}

TEST(Engine, ShardedPlansRunAndFreeEverything) {
  const auto reqs = requests(6, 9);
  for (const ShardPlan& plan : {streaming_plan(2, 2, 1, 2, 16), s2_plan(2, 2, S2Options{4, 2, 1, 0, 0, 16})}) {
    EngineOptions opt;
    opt.plan = plan;
    const auto out = run_all(reqs, opt);
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(out[i].size(), static_cast<size_t>(reqs[i].max_tokens));
  }
}

TEST(Engine, CancelFreesPagesAndRejectsBadRequests) {
  Engine engine(make_cpu_backend(tiny_model()), nullptr);
  GenerationRequest r = requests(1, 1)[0];
  r.max_tokens = 100;
  FinishReason reason = FinishReason::None;
  const int64_t id = engine.submit(r, [&](const TokenEvent& ev) {
    if (ev.finish != FinishReason::None) reason = ev.finish;
  });
  engine.step();
  EXPECT_GT(engine.kv().pool().used_pages(), 0);
  engine.cancel(id);
  EXPECT_EQ(reason, FinishReason::Cancelled);
  EXPECT_EQ(engine.kv().pool().used_pages(), 0);
  EXPECT_FALSE(engine.step());

  GenerationRequest empty;
  EXPECT_THROW(engine.submit(empty, {}), std::invalid_argument);
  GenerationRequest too_long = r;
  too_long.max_tokens = 512;
  EXPECT_THROW(engine.submit(too_long, {}), std::invalid_argument);
  GenerationRequest bad_token = r;
  bad_token.prompt[0] = 64;
  EXPECT_THROW(engine.submit(bad_token, {}), std::invalid_argument);
}

// The CPU backend plus greedy sampling of the chunks that carry a SampleSpec (bias and penalties
// from logit_edits, then the arg-max), recording what the engine asked for.
class SamplingCpuBackend final : public Backend {
 public:
  explicit SamplingCpuBackend(std::shared_ptr<const ModelWeights> w) : inner_(make_cpu_backend(std::move(w))) {}
  std::string name() const override { return "sampling-cpu"; }
  const ModelConfig& config() const override { return inner_->config(); }
  int64_t page_bytes(int32_t block_size) const override { return inner_->page_bytes(block_size); }
  void configure_kv(const ShardPlan& plan, int32_t n_pages) override { inner_->configure_kv(plan, n_pages); }
  bool samples_tokens() const override { return true; }
  void forward(const Batch& batch, const KvStepMeta& meta, Logits& out) override {
    inner_->forward(batch, meta, out);
    std::vector<LogitEdit> edits;
    for (size_t c = 0; c < batch.chunks.size(); ++c) {
      const SeqChunk& ch = batch.chunks[c];
      EXPECT_FALSE(ch.sample && ch.skip_logits);
      skipped += ch.skip_logits;
      if (!ch.sample) continue;
      EXPECT_TRUE(ch.sample->params->greedy()) << "this test backend samples greedily only";
      randoms[ch.seq_id].push_back(ch.sample->random);
      const int64_t r = out.last_row(c, batch);
      std::vector<float> row(out.row(r), out.row(r) + out.vocab);
      logit_edits(*ch.sample->params, ch.sample->tokens, ch.sample->n_prompt, out.vocab, edits);
      for (const LogitEdit& e : edits) row[e.token] = e.apply(row[e.token]);
      out.sampled[c] = argmax(row.data(), out.vocab);
      std::fill(out.data.begin() + r * out.vocab, out.data.begin() + (r + 1) * out.vocab,
                std::nanf(""));  // the engine must not read a sampled row
    }
  }
  std::map<int64_t, std::vector<uint64_t>> randoms;  // per sequence, the random bits of each sample
  int skipped = 0;                                    // chunks whose logits the engine skipped

 private:
  std::unique_ptr<Backend> inner_;
};

TEST(Engine, ABackendThatSamplesGetsSpecsAndItsTokensAreEmitted) {
  auto reqs = requests(6, 21);
  reqs[1].sampling.repetition_penalty = 1.5f;  // penalties travel with the spec
  reqs[2].sampling.frequency_penalty = 1.0f;
  reqs[2].sampling.logit_bias = {{7, 3.0f}};
  reqs[3].logprobs = 2;  // log-probabilities need the logits: sampled on the host
  for (int i = 0; i < 6; ++i) reqs[i].sampling.seed = 100 + i;
  EngineOptions opt;
  opt.max_batch_tokens = 24;  // prompts of up to 64 tokens prefill in several chunks
  auto backend = std::make_unique<SamplingCpuBackend>(tiny_model());
  SamplingCpuBackend& sb = *backend;
  Engine engine(std::move(backend), nullptr, opt);
  std::vector<std::vector<int32_t>> got(reqs.size());
  std::vector<int64_t> ids;
  for (size_t i = 0; i < reqs.size(); ++i)
    ids.push_back(engine.submit(reqs[i], [&got, i](const TokenEvent& ev) {
      if (ev.token >= 0) got[i].push_back(ev.token);
    }));
  engine.run_until_idle();

  EXPECT_EQ(got, run_all(reqs, opt));  // the host-sampling engine on the plain CPU backend
  EXPECT_GT(sb.skipped, 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (reqs[i].logprobs >= 0) {
      EXPECT_EQ(sb.randoms.count(ids[i]), 0u) << "a logprobs request was sampled on the backend";
      continue;
    }
    // One sample per output token, each with the next 64 bits of the request's seeded stream.
    std::mt19937_64 stream(*reqs[i].sampling.seed);
    std::vector<uint64_t> want(static_cast<size_t>(reqs[i].max_tokens));
    for (auto& x : want) x = stream();
    EXPECT_EQ(sb.randoms[ids[i]], want) << "request " << i;
  }
}

}  // namespace
}  // namespace hs
