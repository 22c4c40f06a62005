#include "engine/forward_runner.h"

#include <stdexcept>
#include <string>

namespace hs {

void run_step(Backend& backend, PagedKvCache& kv, const Batch& batch, KvStepMeta& meta, Logits& out,
              bool in_flight) {
  std::vector<std::pair<int64_t, int32_t>> chunks;
  chunks.reserve(batch.chunks.size());
  for (const SeqChunk& c : batch.chunks) chunks.emplace_back(c.seq_id, static_cast<int32_t>(c.tokens.size()));
  kv.build_step(chunks, meta);
  if (in_flight) backend.launch(batch, meta, out);
  else backend.forward(batch, meta, out);
  for (const auto& [seq, n] : chunks) kv.commit(seq, n);
}

ForwardRunner::ForwardRunner(Backend& backend, ShardPlan plan, int64_t kv_bytes) : backend_(backend) {
  const ModelConfig& c = backend.config();
  plan.validate_for(c);
  const int64_t n_pages = std::min<int64_t>(kv_bytes / backend.page_bytes(plan.block_size()), INT32_MAX);
  backend.configure_kv(plan, static_cast<int32_t>(n_pages));
  kv_ = std::make_unique<PagedKvCache>(c, std::move(plan), static_cast<int32_t>(n_pages));
}

const Logits& ForwardRunner::forward(const Batch& batch) {
  for (const SeqChunk& c : batch.chunks) {
    if (c.pos0 != kv_->length(c.seq_id))
      throw std::invalid_argument("sequence " + std::to_string(c.seq_id) + ": chunk starts at " +
                                  std::to_string(c.pos0) + " but " + std::to_string(kv_->length(c.seq_id)) +
                                  " tokens are cached");
    if (!kv_->reserve(c.seq_id, static_cast<int32_t>(c.tokens.size())))
      throw std::runtime_error("KV cache full: " + std::to_string(kv_->pages_needed(c.seq_id, static_cast<int32_t>(c.tokens.size()))) +
                               " pages needed, " + std::to_string(kv_->pool().free_pages()) + " free");
  }
  run_step(backend_, *kv_, batch, meta_, logits_);
  return logits_;
}

}  // namespace hs
