#include "backend/cuda/device_sampler.h"

#include <algorithm>
#include <stdexcept>

#include "backend/cuda/cuda_check.h"

namespace hs::cuda {

int DeviceSampler::stage(const Batch& batch, const Logits& out) {
  Slot& slot = slots_[staged_ & 1];
  slot.row_of_chunk.assign(batch.chunks.size(), -1);
  rows_.clear();
  edits_.clear();
  for (size_t c = 0; c < batch.chunks.size(); ++c) {
    const SeqChunk& ch = batch.chunks[c];
    if (!ch.sample) continue;
    const SampleSpec& sp = *ch.sample;
    const SamplingParams& p = *sp.params;
    SampleRow r;
    r.logits_row = out.last_row(c, batch);
    r.seed = sp.random;
    r.temperature = p.greedy() ? 0.0f : p.temperature;
    r.top_k = p.top_k;
    r.top_p = p.top_p;
    r.min_p = p.min_p;
    logit_edits(p, sp.tokens, sp.n_prompt, out.vocab, scratch_);
    r.edit_begin = static_cast<int32_t>(edits_.size());
    edits_.insert(edits_.end(), scratch_.begin(), scratch_.end());
    r.edit_end = static_cast<int32_t>(edits_.size());
    slot.row_of_chunk[c] = static_cast<int32_t>(rows_.size());
    rows_.push_back(r);
  }
  ++staged_;
  return static_cast<int>(rows_.size());
}

void DeviceSampler::upload(cudaStream_t s) {
  const size_t n = rows_.size(), n_edits = edits_.size();
  if (n == 0) return;
  h_rows_.grow_to(n);
  d_rows_.grow_to(n);
  std::copy(rows_.begin(), rows_.end(), h_rows_.get());
  HS_CUDA_CHECK(cudaMemcpyAsync(d_rows_.get(), h_rows_.get(), n * sizeof(SampleRow), cudaMemcpyHostToDevice, s));
  if (n_edits > 0) {
    h_edits_.grow_to(n_edits);
    d_edits_.grow_to(n_edits);
    std::copy(edits_.begin(), edits_.end(), h_edits_.get());
    HS_CUDA_CHECK(
        cudaMemcpyAsync(d_edits_.get(), h_edits_.get(), n_edits * sizeof(LogitEdit), cudaMemcpyHostToDevice, s));
  }
}

void DeviceSampler::sample(float* logits, int vocab, cudaStream_t s) {
  const size_t n = rows_.size();
  if (n == 0) return;
  Slot& slot = slots_[(staged_ - 1) & 1];
  slot.h_tokens.grow_to(n);
  d_tokens_.grow_to(n);
  sample_tokens(logits, vocab, vocab, d_rows_.get(), static_cast<int>(n), d_edits_.get(), d_tokens_.get(), nullptr, s);
  HS_CUDA_CHECK(cudaMemcpyAsync(slot.h_tokens.get(), d_tokens_.get(), n * sizeof(int32_t), cudaMemcpyDeviceToHost, s));
}

void DeviceSampler::collect(Logits& out) {
  if (collected_ == staged_) throw std::logic_error("DeviceSampler: collect() without a staged step");
  const Slot& slot = slots_[collected_++ & 1];
  out.sampled.resize(slot.row_of_chunk.size());
  for (size_t c = 0; c < slot.row_of_chunk.size(); ++c) {
    const int32_t r = slot.row_of_chunk[c];
    out.sampled[c] = r >= 0 ? slot.h_tokens.get()[r] : -1;
  }
}

}  // namespace hs::cuda
