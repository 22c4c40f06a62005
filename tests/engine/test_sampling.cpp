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
