// Sampling against hand-computed distributions and penalties.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/sampling.h"

namespace hs {
namespace {

std::map<int32_t, double> frequencies(SamplingParams p, const std::vector<float>& logits, int n,
                                      std::vector<int32_t> history = {}, size_t n_prompt = 0) {
  p.seed = 1234;
  Sampler s(p);
  std::map<int32_t, double> f;
  for (int i = 0; i < n; ++i) f[s.sample(logits.data(), static_cast<int>(logits.size()), history, n_prompt)] += 1.0 / n;
  return f;
}

TEST(Sampling, GreedyPicksTheLargestLogitAndTheLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.sample(l.data(), 4, {}, 0), 1);
  EXPECT_EQ(argmax(l.data(), 4), 1);
}

TEST(Sampling, TemperatureOneFollowsTheSoftmax) {
  // logits log(0.5), log(0.3), log(0.2): probabilities 0.5, 0.3, 0.2.
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.temperature = 1.0f;
  auto f = frequencies(p, l, 20000);
  EXPECT_NEAR(f[0], 0.5, 0.015);
  EXPECT_NEAR(f[1], 0.3, 0.015);
  EXPECT_NEAR(f[2], 0.2, 0.015);
}

TEST(Sampling, TemperatureSharpens) {
  // At T = 0.5 the probabilities go as p^2: 0.25, 0.09, 0.04 over 0.38.
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.temperature = 0.5f;
  auto f = frequencies(p, l, 20000);
  EXPECT_NEAR(f[0], 0.25 / 0.38, 0.015);
  EXPECT_NEAR(f[2], 0.04 / 0.38, 0.01);
}

TEST(Sampling, TopKTopPAndMinPTruncate) {
  std::vector<float> l = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplingParams k2;
  k2.top_k = 2;  // 0.4 and 0.3 renormalized: 4/7, 3/7
  auto f = frequencies(k2, l, 20000);
  EXPECT_EQ(f.count(2) + f.count(3), 0u);
  EXPECT_NEAR(f[0], 4.0 / 7, 0.015);

  SamplingParams tp;
  tp.top_p = 0.75f;  // 0.4 + 0.3 = 0.7 < 0.75, so 0.2 is kept too: 0.4/0.9, 0.3/0.9, 0.2/0.9
  f = frequencies(tp, l, 20000);
  EXPECT_EQ(f.count(3), 0u);
  EXPECT_NEAR(f[2], 0.2 / 0.9, 0.015);

  SamplingParams mp;
  mp.min_p = 0.6f;  // keep p >= 0.24: only 0.4 and 0.3
  f = frequencies(mp, l, 20000);
  EXPECT_EQ(f.count(2) + f.count(3), 0u);
  EXPECT_NEAR(f[1], 3.0 / 7, 0.015);
}

TEST(Sampling, PenaltiesAsDefined) {
  // repetition 2: logit 2 -> 1 (seen), logit -1 -> -2 (seen); presence 0.5 and frequency 0.25
  // on output tokens only.
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> l = {2.0f, 1.5f, -1.0f};
  EXPECT_EQ(s.sample(l.data(), 3, {0, 2}, 2), 1);  // 1.0 < 1.5
  EXPECT_FLOAT_EQ(s.last_logits()[0], 1.0f);
  EXPECT_FLOAT_EQ(s.last_logits()[2], -2.0f);

  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 0.5f;
  q.frequency_penalty = 0.25f;
  Sampler t(q);
  std::vector<float> m = {2.0f, 1.5f, 0.0f};
  // Token 0 appears twice in the output: 2 - 0.5 - 0.5 = 1.0; token 1 once in the prompt only.
  EXPECT_EQ(t.sample(m.data(), 3, {1, 0, 0}, 1), 1);
  EXPECT_FLOAT_EQ(t.last_logits()[0], 1.0f);
  EXPECT_FLOAT_EQ(t.last_logits()[1], 1.5f);
}

TEST(Sampling, LogitBiasAndSeedReproducibility) {
  SamplingParams p;
  p.temperature = 0;
  p.logit_bias = {{2, 10.0f}};
  Sampler s(p);
  std::vector<float> l = {3.0f, 1.0f, 0.0f};
  EXPECT_EQ(s.sample(l.data(), 3, {}, 0), 2);

  std::vector<float> flat(50, 0.0f);
  SamplingParams r;
  r.seed = 99;
  Sampler a(r), b(r);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(flat.data(), 50, {}, 0), b.sample(flat.data(), 50, {}, 0));
}

TEST(Sampling, LogitEditsCombineBiasAndPenaltiesPerToken) {
  // Prompt {4, 1}, output {1, 1, 7}; bias +2 on 4 (twice listed: +1 and +1) and -3 on 9.
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.logit_bias = {{4, 1.0f}, {9, -3.0f}, {4, 1.0f}, {20, 1.0f}};  // 20 is outside a vocabulary of 10
  const std::vector<int32_t> tokens = {4, 1, 1, 1, 7};
  std::vector<LogitEdit> e;
  logit_edits(p, &tokens, 2, 10, e);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].token, 1);  // seen; twice in the output: 0.25 * 2 + 0.5
  EXPECT_EQ(e[0].bias, 0.0f);
  EXPECT_EQ(e[0].repetition, 2.0f);
  EXPECT_FLOAT_EQ(e[0].subtract, 1.0f);
  EXPECT_EQ(e[1].token, 4);  // prompt only: bias and repetition, no presence
  EXPECT_EQ(e[1].bias, 2.0f);
  EXPECT_EQ(e[1].repetition, 2.0f);
  EXPECT_EQ(e[1].subtract, 0.0f);
  EXPECT_EQ(e[2].token, 7);  // once in the output
  EXPECT_FLOAT_EQ(e[2].subtract, 0.75f);
  EXPECT_EQ(e[3].token, 9);  // bias only
  EXPECT_EQ(e[3].bias, -3.0f);
  EXPECT_EQ(e[3].repetition, 1.0f);
  // apply: (3 + 2) / 2 = 2.5 for token 4; (-1 + 0) * 2 - 1 = -3 for token 1.
  EXPECT_FLOAT_EQ(e[1].apply(3.0f), 2.5f);
  EXPECT_FLOAT_EQ(e[0].apply(-1.0f), -3.0f);
  // Without penalties the token history is not needed.
  SamplingParams b;
  b.logit_bias = {{3, 1.0f}};
  logit_edits(b, nullptr, 0, 10, e);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].token, 3);
}

TEST(Sampling, CandidatesApplyTopKThenTopPThenMinP) {
  // Probabilities 0.4, 0.3, 0.2, 0.1 (temperature 1).
  const std::vector<float> l = {std::log(0.2f), std::log(0.4f), std::log(0.1f), std::log(0.3f)};
  auto tokens_of = [&](SamplingParams p) {
    Sampler s(p);
    std::vector<int32_t> t;
    for (const auto& [tok, prob] : s.candidates(l.data(), 4, {}, 0)) t.push_back(tok);
    return t;
  };
  SamplingParams p;
  EXPECT_EQ(tokens_of(p), (std::vector<int32_t>{1, 3, 0, 2}));
  p.top_k = 3;  // 0.4, 0.3, 0.2 renormalized over 0.9: 0.444, 0.333, 0.222
  EXPECT_EQ(tokens_of(p), (std::vector<int32_t>{1, 3, 0}));
  p.top_p = 0.75f;  // 0.444 + 0.333 = 0.778 >= 0.75
  EXPECT_EQ(tokens_of(p), (std::vector<int32_t>{1, 3}));
  p.top_p = 1.0f;
  p.min_p = 0.6f;  // keep p >= 0.6 * 0.4 = 0.24
  EXPECT_EQ(tokens_of(p), (std::vector<int32_t>{1, 3}));
  p.temperature = 0.0f;  // greedy: one candidate
  Sampler g(p);
  const auto c = g.candidates(l.data(), 4, {}, 0);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].first, 1);
  EXPECT_EQ(c[0].second, 1.0);
}

TEST(Sampling, ValidateNamesTheField) {
  SamplingParams p;
  p.top_p = 0.0f;
  try {
    p.validate(10);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos);
  }
  SamplingParams b;
  b.logit_bias = {{10, 1.0f}};
  EXPECT_THROW(b.validate(10), std::invalid_argument);
  SamplingParams t;
  t.temperature = -1;
  EXPECT_THROW(t.validate(10), std::invalid_argument);
}

}  // namespace
}  // namespace hs
