// Running a backend over explicit token chunks, with the paged KV cache's bookkeeping but no
// sampling or scheduling: for evaluation (perplexity, teacher forcing), benchmarks and tests.
#pragma once
#include <cstdint>
#include <memory>

#include "backend/backend.h"
#include "kv/paged_kv_cache.h"

namespace hs {

// One step for chunks whose pages are already reserved: builds the step metadata, runs the
// backend and commits the tokens (freeing pages no head needs any more). in_flight: the backend
// only launches the step (Backend::launch; the caller collects it later).
void run_step(Backend& backend, PagedKvCache& kv, const Batch& batch, KvStepMeta& meta, Logits& out,
              bool in_flight = false);

class ForwardRunner {
 public:
  // Configures the backend's KV storage for `plan` with as many pages as kv_bytes holds.
  ForwardRunner(Backend& backend, ShardPlan plan, int64_t kv_bytes);

  // Reserves pages for every chunk (chunks continue their sequences: pos0 must equal the
  // sequence's cached length) and runs the step. Throws std::runtime_error when the pool is
  // too small, std::invalid_argument for a chunk that does not continue its sequence.
  const Logits& forward(const Batch& batch);
  void release(int64_t seq) { kv_->release(seq); }
  const PagedKvCache& kv() const { return *kv_; }

 private:
  Backend& backend_;
  std::unique_ptr<PagedKvCache> kv_;
  KvStepMeta meta_;
  Logits logits_;
};

}  // namespace hs
