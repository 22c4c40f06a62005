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

DeviceSampler::~DeviceSampler() {
  if (!copy_stream_) return;
  cudaStreamSynchronize(copy_stream_);  // no copy may still write the pinned tokens freed after this
  cudaStreamDestroy(copy_stream_);
  cudaEventDestroy(sampled_);
  for (Slot& slot : slots_) cudaEventDestroy(slot.copied);
}

void DeviceSampler::add_copies(HostCopies& copies) {
  const size_t n = rows_.size(), n_edits = edits_.size();
  if (n == 0) return;
  h_rows_.grow_to(n);
  d_rows_.grow_to(n);
  std::copy(rows_.begin(), rows_.end(), h_rows_.get());
  copies.add_records(h_rows_.get(), d_rows_.get(), n);
  if (n_edits > 0) {
    h_edits_.grow_to(n_edits);
    d_edits_.grow_to(n_edits);
    std::copy(edits_.begin(), edits_.end(), h_edits_.get());
    copies.add_records(h_edits_.get(), d_edits_.get(), n_edits);
  }
}

void DeviceSampler::sample(float* logits, int vocab, cudaStream_t s) {
  const size_t n = rows_.size();
  if (n == 0) return;
  if (!copy_stream_) {
    HS_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    HS_CUDA_CHECK(cudaEventCreateWithFlags(&sampled_, cudaEventDisableTiming));
    for (Slot& slot : slots_) HS_CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
    d_scratch_.allocate(sample_scratch_words());
    HS_CUDA_CHECK(cudaMemsetAsync(d_scratch_.get(), 0, sample_scratch_words() * sizeof(int32_t), s));
  }
  Slot& slot = slots_[(staged_ - 1) & 1];
  slot.h_tokens.grow_to(n);
  d_tokens_.grow_to(n);
  // The step before's copy reads d_tokens_, which this step's kernel writes. (An event never
  // recorded counts as complete.)
  HS_CUDA_CHECK(cudaStreamWaitEvent(s, slots_[staged_ & 1].copied, 0));
  sample_tokens(logits, vocab, vocab, d_rows_.get(), static_cast<int>(n), d_edits_.get(), d_tokens_.get(), nullptr,
                d_scratch_.get(), s);
  HS_CUDA_CHECK(cudaEventRecord(sampled_, s));
  HS_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, sampled_, 0));
  HS_CUDA_CHECK(
      cudaMemcpyAsync(slot.h_tokens.get(), d_tokens_.get(), n * sizeof(int32_t), cudaMemcpyDeviceToHost, copy_stream_));
  HS_CUDA_CHECK(cudaEventRecord(slot.copied, copy_stream_));
}

void DeviceSampler::collect(Logits& out) {
  if (collected_ == staged_) throw std::logic_error("DeviceSampler: collect() without a staged step");
  const Slot& slot = slots_[collected_++ & 1];
  if (slot.copied) HS_CUDA_CHECK(cudaEventSynchronize(slot.copied));
  out.sampled.resize(slot.row_of_chunk.size());
  for (size_t c = 0; c < slot.row_of_chunk.size(); ++c) {
    const int32_t r = slot.row_of_chunk[c];
    out.sampled[c] = r >= 0 ? slot.h_tokens.get()[r] : -1;
  }
}

}  // namespace hs::cuda
