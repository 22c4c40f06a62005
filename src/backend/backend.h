// The seam between the engine and the hardware: a backend runs the model over one batch step.
//
// A step brings, for each of several sequences, a chunk of new tokens at consecutive positions
// (a prefill chunk of any size or one decode token). The backend writes their keys and values
// into its KV cache and returns logits. The same structure will feed the CUDA backend.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"

namespace hs {

struct ModelWeights;

struct SeqChunk {
  int64_t seq_id = 0;
  int32_t pos0 = 0;             // position of tokens[0]; earlier positions are in the KV cache
  std::vector<int32_t> tokens;  // at least one
  bool all_logits = false;      // logits for every token, not only the last
};

struct Batch {
  std::vector<SeqChunk> chunks;
  int64_t total_tokens() const;
};

// Row-major logits: per chunk, one row (its last token) or one per token when all_logits.
struct Logits {
  int vocab = 0;
  std::vector<float> data;
  std::vector<int64_t> first_row;  // per chunk: its first row
  const float* row(int64_t r) const { return data.data() + r * vocab; }
  const float* last_row_of(size_t chunk, const Batch& b) const;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;
  // Runs one step. Throws std::invalid_argument for positions that do not follow the
  // sequence's cached ones or exceed the context length.
  virtual void forward(const Batch& batch, Logits& out) = 0;
  // Forgets a sequence and frees its KV cache.
  virtual void release(int64_t seq_id) = 0;
  // Number of positions cached for a sequence (0 when unknown).
  virtual int32_t cached_tokens(int64_t seq_id) const = 0;
};

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights);

}  // namespace hs
