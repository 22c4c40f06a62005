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

#include "engine/sampling.h"
#include "kv/paged_kv_cache.h"
#include "model/config.h"
#include "shard/shard_plan.h"

namespace hs {

struct ModelWeights;

// What a backend that samples (Backend::samples_tokens()) needs to choose a chunk's next token.
struct SampleSpec {
  const SamplingParams* params = nullptr;
  uint64_t random = 0;                           // fresh bits from the sequence's random stream
  const std::vector<int32_t>* tokens = nullptr;  // prompt then output, for penalties (may be null without)
  size_t n_prompt = 0;
};

struct SeqChunk {
  int64_t seq_id = 0;
  int32_t pos0 = 0;             // position of tokens[0]; earlier positions are in the KV cache
  std::vector<int32_t> tokens;  // at least one
  bool all_logits = false;      // logits for every token, not only the last
  // Set (and valid for the call) when the backend samples: it picks the token after the chunk's
  // last and returns it in Logits::sampled instead of the logits of that row.
  const SampleSpec* sample = nullptr;
  bool skip_logits = false;     // the caller reads no logits of this chunk (a prompt not finished)
};

struct Batch {
  std::vector<SeqChunk> chunks;
  int64_t total_tokens() const;
};

// Row-major logits: per chunk, one row (its last token) or one per token when all_logits. The rows
// of chunks with skip_logits or a SampleSpec may be left unfilled.
struct Logits {
  int vocab = 0;
  std::vector<float> data;
  std::vector<int64_t> first_row;  // per chunk: its first row
  std::vector<int32_t> sampled;    // per chunk: the token the backend sampled, or -1
  const float* row(int64_t r) const { return data.data() + r * vocab; }
  int64_t last_row(size_t chunk, const Batch& b) const;  // index of the chunk's last row
  const float* last_row_of(size_t chunk, const Batch& b) const { return row(last_row(chunk, b)); }
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
  // True when forward() samples the chunks that carry a SampleSpec (otherwise it ignores them).
  virtual bool samples_tokens() const { return false; }
  // Runs one step: `meta` (built by PagedKvCache::build_step for this batch, chunks in the same
  // order) says where each new token's K/V go and which pages each head attends.
  virtual void forward(const Batch& batch, const KvStepMeta& meta, Logits& out) = 0;

  // Steps in flight. A backend that overlaps steps (overlaps_steps()) runs launch() without
  // waiting for the step to finish, so that the caller prepares the next step meanwhile; collect()
  // then waits for the oldest launched step that was not collected and completes its `out` (the
  // same object launch() got, untouched in between). At most two steps are launched and not
  // collected. In a launched step, a token kFromPreviousStep - j (j >= 0) stands for the token the
  // backend samples for chunk j of the step launched just before (which must carry a SampleSpec).
  // Otherwise launch() is forward() and collect() does nothing.
  static constexpr int32_t kFromPreviousStep = -2;
  virtual bool overlaps_steps() const { return false; }
  virtual void launch(const Batch& batch, const KvStepMeta& meta, Logits& out) { forward(batch, meta, out); }
  virtual void collect(Logits& out) { (void)out; }
};

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights);

}  // namespace hs
