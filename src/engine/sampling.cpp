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

void logit_edits(const SamplingParams& p, const std::vector<int32_t>* tokens, size_t n_prompt, int vocab,
                 std::vector<LogitEdit>& out) {
  out.clear();
  const bool repetition = p.repetition_penalty != 1.0f;
  const bool counted = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  auto valid = [&](int32_t t) { return t >= 0 && t < vocab; };
  for (const auto& [id, bias] : p.logit_bias)
    if (valid(id)) out.push_back({id});
  if (tokens && (repetition || counted)) {
    for (size_t i = repetition ? 0 : n_prompt; i < tokens->size(); ++i)
      if (valid((*tokens)[i])) out.push_back({(*tokens)[i]});
  }
  std::sort(out.begin(), out.end(), [](const LogitEdit& a, const LogitEdit& b) { return a.token < b.token; });
  out.erase(std::unique(out.begin(), out.end(), [](const LogitEdit& a, const LogitEdit& b) { return a.token == b.token; }),
            out.end());
  auto edit = [&](int32_t t) -> LogitEdit& {
    return *std::lower_bound(out.begin(), out.end(), t, [](const LogitEdit& e, int32_t x) { return e.token < x; });
  };
  for (const auto& [id, bias] : p.logit_bias)
    if (valid(id)) edit(id).bias += bias;
  if (!tokens) return;
  if (repetition)
    for (int32_t t : *tokens)
      if (valid(t)) edit(t).repetition = p.repetition_penalty;
  if (counted) {
    // Presence once per token that occurs in the output, frequency per occurrence.
    std::vector<int32_t> count(out.size(), 0);
    for (size_t i = n_prompt; i < tokens->size(); ++i)
      if (valid((*tokens)[i])) ++count[&edit((*tokens)[i]) - out.data()];
    for (size_t k = 0; k < out.size(); ++k)
      if (count[k] > 0) out[k].subtract = p.frequency_penalty * count[k] + p.presence_penalty;
  }
}

void Sampler::penalize(const float* logits, int vocab, const std::vector<int32_t>& tokens, size_t n_prompt) {
  work_.assign(logits, logits + vocab);
  logit_edits(params_, &tokens, n_prompt, vocab, edits_);
  for (const LogitEdit& e : edits_) work_[e.token] = e.apply(work_[e.token]);
}

int Sampler::filter(int vocab) {
  const SamplingParams& p = params_;
  // Candidates in descending order of logit; top-k bounds how many need sorting.
  const int k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); };
  std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), by_logit);
  order_.resize(k);

  prob_.resize(k);
  const double mx = work_[order_[0]] / p.temperature;
  double sum = 0.0;
  for (int i = 0; i < k; ++i) sum += (prob_[i] = std::exp(work_[order_[i]] / p.temperature - mx));
  for (double& q : prob_) q /= sum;

  // top-p: the smallest prefix whose mass reaches top_p; min-p: relative to the most likely.
  int keep = k;
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    for (int i = 0; i < k; ++i) {
      cum += prob_[i];
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    const double floor = p.min_p * prob_[0];
    int n = 1;
    while (n < keep && prob_[n] >= floor) ++n;
    keep = n;
  }
  kept_mass_ = 0.0;
  for (int i = 0; i < keep; ++i) kept_mass_ += prob_[i];
  return keep;
}

int32_t Sampler::sample(const float* logits, int vocab, const std::vector<int32_t>& tokens, size_t n_prompt) {
  penalize(logits, vocab, tokens, n_prompt);
  if (params_.greedy()) return argmax(work_.data(), vocab);
  const int keep = filter(vocab);
  double r = uniform() * kept_mass_;
  for (int i = 0; i < keep; ++i) {
    r -= prob_[i];
    if (r < 0.0) return order_[i];
  }
  return order_[keep - 1];
}

std::vector<std::pair<int32_t, double>> Sampler::candidates(const float* logits, int vocab,
                                                            const std::vector<int32_t>& tokens, size_t n_prompt) {
  penalize(logits, vocab, tokens, n_prompt);
  if (params_.greedy()) return {{argmax(work_.data(), vocab), 1.0}};
  const int keep = filter(vocab);
  std::vector<std::pair<int32_t, double>> out;
  for (int i = 0; i < keep; ++i) out.emplace_back(order_[i], prob_[i] / kept_mass_);
  return out;
}

}  // namespace hs
