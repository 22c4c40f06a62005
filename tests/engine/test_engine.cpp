// The engine's batching, preemption and cancellation, on a small synthetic model: whatever the
// schedule, each greedy output equals the same request run alone.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace hs
