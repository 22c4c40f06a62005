// The seam between the engine and the hardware: a backend runs the model over one batch step.
//
// A step brings, for each of several sequences, a chunk of new tokens at consecutive positions
// (a prefill chunk of any size or one decode token). The engine owns the KV cache's bookkeeping
// (PagedKvCache: which page holds which block of which head) and hands the backend the step's
// flat metadata (KvStepMeta); the backend owns the page storage, writes the new tokens' keys and
// values into their pages, attends through each head's page list, and returns logits.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv/paged_kv_cache.h"
#include "model/config.h"
#include "shard/shard_plan.h"

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
  // Bytes of one page (K and V of one block for one KV head) in this backend's storage.
  virtual int64_t page_bytes(int32_t block_size) const = 0;
  // Allocates storage for n_pages pages and remembers the plan its attention follows.
  // Throws std::runtime_error when the memory cannot be had.
  virtual void configure_kv(const ShardPlan& plan, int32_t n_pages) = 0;
  // Runs one step: `meta` (built by PagedKvCache::build_step for this batch, chunks in the same
  // order) says where each new token's K/V go and which pages each head attends.
  virtual void forward(const Batch& batch, const KvStepMeta& meta, Logits& out) = 0;
};

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights);

}  // namespace hs
