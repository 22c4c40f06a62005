#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace hs {

void SamplingParams::validate(int vocab_size) const {
  auto need = [](bool ok, const char* field, const char* range) {
    if (!ok) throw std::invalid_argument(std::string(field) + " must be " + range);
  };
  need(std::isfinite(temperature) && temperature >= 0.0f && temperature <= 100.0f, "temperature", "in [0, 100]");
  need(top_k >= -1, "top_k", "-1, 0 (off) or positive");
  need(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f, "top_p", "in (0, 1]");
  need(std::isfinite(min_p) && min_p >= 0.0f && min_p <= 1.0f, "min_p", "in [0, 1]");
  need(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f && repetition_penalty <= 10.0f,
       "repetition_penalty", "in (0, 10]");
  need(std::isfinite(presence_penalty) && presence_penalty >= -2.0f && presence_penalty <= 2.0f, "presence_penalty",
       "in [-2, 2]");
  need(std::isfinite(frequency_penalty) && frequency_penalty >= -2.0f && frequency_penalty <= 2.0f,
       "frequency_penalty", "in [-2, 2]");
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= vocab_size)
      throw std::invalid_argument("logit_bias: token id " + std::to_string(id) + " is outside the vocabulary");
    need(std::isfinite(bias) && bias >= -100.0f && bias <= 100.0f, "logit_bias values", "in [-100, 100]");
  }
}

int32_t argmax(const float* logits, int vocab) {
  return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
}

Sampler::Sampler(SamplingParams params) : params_(std::move(params)) {
  rng_.seed(params_.seed ? *params_.seed : std::random_device{}());
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::sample(const float* logits, int vocab, const std::vector<int32_t>& tokens, size_t n_prompt) {
  const SamplingParams& p = params_;
  work_.assign(logits, logits + vocab);
  for (const auto& [id, bias] : p.logit_bias) work_[id] += bias;
  if (p.repetition_penalty != 1.0f) {
    // Each seen token once, whether it came from the prompt or the output.
    std::vector<char> seen(vocab, 0);
    for (int32_t t : tokens) {
      if (t < 0 || t >= vocab || seen[t]) continue;
      seen[t] = 1;
      work_[t] = work_[t] > 0 ? work_[t] / p.repetition_penalty : work_[t] * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    counts_.assign(vocab, 0);
    for (size_t i = n_prompt; i < tokens.size(); ++i)
      if (tokens[i] >= 0 && tokens[i] < vocab) ++counts_[tokens[i]];
    for (int t = 0; t < vocab; ++t)
      if (counts_[t] > 0) work_[t] -= p.frequency_penalty * counts_[t] + p.presence_penalty;
  }
  if (p.greedy()) return argmax(work_.data(), vocab);

  // Candidates in descending order of logit; top-k bounds how many need sorting.
  const int k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); };
  std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), by_logit);
  order_.resize(k);

  std::vector<double> prob(k);
  const double mx = work_[order_[0]] / p.temperature;
  double sum = 0.0;
  for (int i = 0; i < k; ++i) sum += (prob[i] = std::exp(work_[order_[i]] / p.temperature - mx));
  for (double& q : prob) q /= sum;

  // top-p: the smallest prefix whose mass reaches top_p; min-p: relative to the most likely.
  int keep = k;
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    for (int i = 0; i < k; ++i) {
      cum += prob[i];
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    const double floor = p.min_p * prob[0];
    int n = 1;
    while (n < keep && prob[n] >= floor) ++n;
    keep = n;
  }
  double mass = 0.0;
  for (int i = 0; i < keep; ++i) mass += prob[i];
  double r = uniform() * mass;
  for (int i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r < 0.0) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace hs
