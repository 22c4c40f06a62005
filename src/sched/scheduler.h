// Continuous-batching policy: which sequences run this step with how many tokens, and which are
// preempted when the KV pool runs short. It decides and reserves pages; the engine executes the
// step and recomputes preempted sequences later.
//
// Policy: first-come first-served over the first max_seqs live sequences. Decode tokens go
// first (one per decoding sequence), then prefill chunks in arrival order, all within
// max_batch_tokens. Each chunk reserves its pages under the plan; when the pool is short, the
// newest sequence that holds pages (and arrived after the one asking) is preempted: its pages
// are freed, and it is recomputed from its tokens when its turn comes again.
#pragma once
#include <cstdint>
#include <vector>

#include "kv/paged_kv_cache.h"

namespace hs {

struct SchedulerOptions {
  int max_batch_tokens = 512;  // tokens per step, prefill chunks and decodes together
  int max_seqs = 64;           // sequences considered per step
};

// One live sequence, as the scheduler sees it. Entries are in arrival order.
struct SchedEntry {
  int64_t id = 0;
  int32_t pending = 0;    // tokens not yet in the KV cache (>= 1)
  bool decoding = false;  // pending is one generated token, not a prompt chunk
  bool holds_kv = false;  // has pages reserved or committed
};

struct SchedDecision {
  struct Chunk {
    size_t entry;  // index into the entries
    int32_t n;     // tokens to compute this step (pages reserved)
  };
  std::vector<Chunk> chunks;     // in batch order
  std::vector<size_t> preempted; // entries whose pages were released
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options) : options_(options) {}
  const SchedulerOptions& options() const { return options_; }

  // Chooses the step and reserves its pages in `kv` (releasing those of preempted entries).
  SchedDecision schedule(const std::vector<SchedEntry>& entries, PagedKvCache& kv) const;

 private:
  SchedulerOptions options_;
};

}  // namespace hs
