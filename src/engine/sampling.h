// Turning logits into the next token: penalties, temperature, top-k, top-p, min-p, seeded RNG.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace hs {

struct SamplingParams {
  float temperature = 1.0f;          // 0 means greedy (arg-max)
  int top_k = 0;                     // 0 or less: off
  float top_p = 1.0f;                // nucleus mass, (0, 1]
  float min_p = 0.0f;                // keep tokens with p >= min_p * p_max, [0, 1]
  float repetition_penalty = 1.0f;   // > 0; divides positive logits of seen tokens (prompt and output)
  float presence_penalty = 0.0f;     // [-2, 2]; subtracted once from every token in the output
  float frequency_penalty = 0.0f;    // [-2, 2]; subtracted per occurrence in the output
  std::optional<uint64_t> seed;      // none: drawn from the system
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits before anything else

  bool greedy() const { return temperature <= 0.0f || top_k == 1; }
  // Throws std::invalid_argument naming the field that is out of range.
  void validate(int vocab_size) const;
};

// One sampler per sequence: it owns the sequence's random stream.
class Sampler {
 public:
  explicit Sampler(SamplingParams params);

  // Picks the next token. `tokens` holds the prompt followed by the output so far; the first
  // n_prompt of them are the prompt. `logits` (vocab floats) is not modified.
  int32_t sample(const float* logits, int vocab, const std::vector<int32_t>& tokens, size_t n_prompt);

  // The logits the sampler last chose from (after bias and penalties, before temperature).
  const std::vector<float>& last_logits() const { return work_; }

  const SamplingParams& params() const { return params_; }

 private:
  double uniform();  // in [0, 1)
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> order_;
  std::vector<int32_t> counts_;
};

// Index of the largest logit (the lowest index among equals).
int32_t argmax(const float* logits, int vocab);

}  // namespace hs
