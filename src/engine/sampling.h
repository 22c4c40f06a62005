// Turning logits into the next token: penalties, temperature, top-k, top-p, min-p, seeded RNG.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <utility>
#include <vector>

// LogitEdit::apply runs in GPU kernels too.
#ifdef __CUDACC__
#define HS_HOST_DEVICE __host__ __device__
#else
#define HS_HOST_DEVICE
#endif

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

// What bias and penalties do to one token's logit, in this order: logit_bias added, then the
// repetition penalty (a positive logit divided by it, a negative one multiplied), then presence
// and frequency penalties subtracted. The same edits run on the CPU (Sampler) and on a GPU.
struct LogitEdit {
  int32_t token = 0;
  float bias = 0.0f;
  float repetition = 1.0f;  // 1: the token was not seen, or no penalty
  float subtract = 0.0f;
  HS_HOST_DEVICE float apply(float v) const {
    v += bias;
    if (repetition != 1.0f) v = v > 0 ? v / repetition : v * repetition;
    return v - subtract;
  }
};

// The edits `p` makes for a sequence holding `tokens` (prompt, then output from n_prompt on):
// one per touched token, ascending by token; tokens outside [0, vocab) are ignored. `tokens`
// may be null when p has no penalties.
void logit_edits(const SamplingParams& p, const std::vector<int32_t>* tokens, size_t n_prompt, int vocab,
                 std::vector<LogitEdit>& out);

// One sampler per sequence: it owns the sequence's random stream.
class Sampler {
 public:
  explicit Sampler(SamplingParams params);

  // Picks the next token. `tokens` holds the prompt followed by the output so far; the first
  // n_prompt of them are the prompt. `logits` (vocab floats) is not modified.
  int32_t sample(const float* logits, int vocab, const std::vector<int32_t>& tokens, size_t n_prompt);

  // The tokens sample() may return for these inputs, most likely first, with their probabilities
  // (summing to 1); one token for greedy parameters. Draws no random number.
  std::vector<std::pair<int32_t, double>> candidates(const float* logits, int vocab, const std::vector<int32_t>& tokens,
                                                     size_t n_prompt);

  // 64 bits from the sequence's random stream, for a sampler that runs elsewhere (a GPU).
  uint64_t next_random() { return rng_(); }

  // The logits the sampler last chose from (after bias and penalties, before temperature).
  const std::vector<float>& last_logits() const { return work_; }

  const SamplingParams& params() const { return params_; }

 private:
  double uniform();  // in [0, 1)
  void penalize(const float* logits, int vocab, const std::vector<int32_t>& tokens, size_t n_prompt);  // into work_
  // order_ and prob_ after temperature, top-k, top-p, min-p; returns how many are kept, and sets
  // kept_mass_ to their probability.
  int filter(int vocab);
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> order_;
  std::vector<double> prob_;
  double kept_mass_ = 0.0;
  std::vector<LogitEdit> edits_;
};

// Index of the largest logit (the lowest index among equals).
int32_t argmax(const float* logits, int vocab);

}  // namespace hs
