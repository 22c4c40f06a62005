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
// from logit_edits, then the arg-max), recording what the engine asked for. With `overlap`, it
// takes steps in flight as the CUDA backend does: launch() runs the step at once, with the tokens
// that stand for the step before's samples replaced by them, and collect() hands it over.
class SamplingCpuBackend final : public Backend {
 public:
  explicit SamplingCpuBackend(std::shared_ptr<const ModelWeights> w, bool overlap = false)
      : inner_(make_cpu_backend(std::move(w))), overlap_(overlap) {}
  bool overlaps_steps() const override { return overlap_; }
  void launch(const Batch& batch, const KvStepMeta& meta, Logits& out) override {
    EXPECT_LT(launched - collected, 2) << "more than two steps in flight";
    overlapped += launched > collected;
    Batch b = batch;
    for (SeqChunk& ch : b.chunks)
      for (int32_t& t : ch.tokens)
        if (t < 0) {
          const size_t j = static_cast<size_t>(kFromPreviousStep - t);
          EXPECT_TRUE(overlap_ && j < last_sampled_.size() && last_sampled_[j] >= 0) << "bad stand-in " << t;
          t = j < last_sampled_.size() ? last_sampled_[j] : 0;
        }
    forward(b, meta, out);
    last_sampled_ = out.sampled;
    ++launched;
  }
  void collect(Logits& out) override {
    EXPECT_LT(collected, launched) << "collect() without a launched step";
    EXPECT_EQ(out.sampled.size(), out.first_row.size());
    ++collected;
  }
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
  int64_t launched = 0, collected = 0;
  int64_t overlapped = 0;  // launches made while another step was in flight

 private:
  std::unique_ptr<Backend> inner_;
  bool overlap_;
  std::vector<int32_t> last_sampled_;
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

// Steps in flight: whatever the overlap, preemption, and requests that force a step at a time
// (penalties, log-probabilities) while they are live, every request's tokens and random bits are
// those of the host-sampling engine; everything is collected and freed at the end.
TEST(Engine, OverlappedStepsEmitWhatOneStepAtATimeEmits) {
  auto reqs = requests(12, 5);
  for (int i = 0; i < 12; ++i) reqs[i].sampling.seed = 200 + i;
  reqs[7].sampling.presence_penalty = 1.0f;  // live from its arrival to its end: steps one at a time
  reqs[9].logprobs = 1;
  EngineOptions opt;
  opt.plan = dense_plan(2, 2, 16);
  opt.max_batch_tokens = 48;
  opt.kv_bytes = 80 * 1024;  // as BatchedAndPreemptedOutputsEqualOutputsAlone: preemption happens
  auto backend = std::make_unique<SamplingCpuBackend>(tiny_model(), /*overlap=*/true);
  SamplingCpuBackend& sb = *backend;
  Engine engine(std::move(backend), nullptr, opt);
  std::vector<std::vector<int32_t>> got(reqs.size());
  std::vector<int64_t> ids;
  // Submitted in two waves, so that the first wave runs overlapped before the penalized request
  // arrives and after the logprobs request ends.
  auto submit = [&](size_t i) {
    ids.push_back(engine.submit(reqs[i], [&got, i](const TokenEvent& ev) {
      if (ev.token >= 0) got[i].push_back(ev.token);
    }));
  };
  for (size_t i = 0; i < 6; ++i) submit(i);
  for (int k = 0; k < 20; ++k) engine.step();
  for (size_t i = 6; i < reqs.size(); ++i) submit(i);
  engine.run_until_idle();

  EXPECT_EQ(got, run_all(reqs, opt));
  EXPECT_GT(engine.preemptions(), 0);
  EXPECT_GT(sb.overlapped, 0);
  EXPECT_EQ(sb.launched, sb.collected);
  EXPECT_EQ(engine.kv().pool().used_pages(), 0);
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (reqs[i].logprobs >= 0) continue;
    std::mt19937_64 stream(*reqs[i].sampling.seed);
    std::vector<uint64_t> want(static_cast<size_t>(reqs[i].max_tokens));
    for (auto& x : want) x = stream();
    EXPECT_EQ(sb.randoms[ids[i]], want) << "request " << i;
  }
}

// A sequence cancelled while a step that computes its next token is in flight: its token is
// dropped, the others go on unchanged, and every page comes back.
TEST(Engine, CancelWhileAStepIsInFlight) {
  const auto reqs = requests(3, 11);
  auto backend = std::make_unique<SamplingCpuBackend>(tiny_model(), /*overlap=*/true);
  SamplingCpuBackend& sb = *backend;
  Engine engine(std::move(backend), nullptr);
  std::vector<std::vector<int32_t>> got(reqs.size());
  std::vector<FinishReason> why(reqs.size(), FinishReason::None);
  std::vector<int64_t> ids;
  for (size_t i = 0; i < reqs.size(); ++i)
    ids.push_back(engine.submit(reqs[i], [&got, &why, i](const TokenEvent& ev) {
      EXPECT_EQ(why[i], FinishReason::None) << "an event after the finish";
      if (ev.token >= 0) got[i].push_back(ev.token);
      why[i] = ev.finish;
    }));
  for (int k = 0; k < 4; ++k) engine.step();
  ASSERT_EQ(sb.launched - sb.collected, 1);
  const size_t before = got[1].size();
  engine.cancel(ids[1]);
  engine.run_until_idle();

  EXPECT_EQ(why[1], FinishReason::Cancelled);
  EXPECT_EQ(got[1].size(), before);
  const auto want = run_all(reqs, EngineOptions{});
  EXPECT_EQ(got[0], want[0]);
  EXPECT_EQ(got[2], want[2]);
  EXPECT_EQ(std::vector<int32_t>(want[1].begin(), want[1].begin() + static_cast<int64_t>(before)), got[1]);
  EXPECT_EQ(sb.launched, sb.collected);
  EXPECT_EQ(engine.kv().pool().used_pages(), 0);
}

}  // namespace
}  // namespace hs
