// Sampling on the GPU: one thread block per logits row (a greedy row of a small batch: several,
// each over a slice) applies the row's logit edits (bias and penalties, engine/sampling.h), then
// picks a token the way the CPU Sampler does:
//   - greedy (temperature 0): the arg-max, the lowest index among equals;
//   - otherwise over z = logit / temperature: top-k, then top-p on the top-k tokens' renormalized
//     probabilities, then min-p (p >= min_p * p_max), each keeping a prefix of the tokens in
//     descending order (ties by ascending index), exactly as the CPU sorts them; then one draw
//     from the kept tokens' renormalized softmax by the Gumbel-max trick (arg-max of z + Gumbel
//     noise hashed from the row's seed and the token id: the same seed, the same token).
// Thresholds are found by bisection over the floats' ordered bit patterns with deterministic
// block sums, so no sort: a row costs a few dozen passes over its logits when top-k or top-p is
// on, one pass otherwise.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/sampling.h"

namespace hs::cuda {

struct SampleRow {
  int64_t logits_row = 0;
  uint64_t seed = 0;
  float temperature = 0.0f;  // <= 0: greedy
  float top_p = 1.0f, min_p = 0.0f;
  int32_t top_k = 0;                      // <= 0: off
  int32_t edit_begin = 0, edit_end = 0;   // the row's LogitEdits
};

// Samples rows[i] into tokens[i] for i < n_rows (device pointers). The logits rows (ld floats
// apart) are edited in place. kept (optional, [n_rows][vocab]) receives 1 for each token the draw
// could have chosen: for tests. scratch (optional: sample_scratch_words() words, zero before the
// first call, which the kernel leaves so) lets the greedy rows of a launch of few rows split their
// arg-max over several blocks; without it each row is one block.
size_t sample_scratch_words();
void sample_tokens(float* logits, int64_t ld, int vocab, const SampleRow* rows, int n_rows, const LogitEdit* edits,
                   int32_t* tokens, uint8_t* kept, int32_t* scratch, cudaStream_t s);

}  // namespace hs::cuda
