// The CUDA backend's sampling of a step: the chunks that carry a SampleSpec get their next token
// picked on the GPU (sampling_kernel.h) from their last logits row, and only the tokens come back.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/model_kernels.h"
#include "backend/cuda/sampling_kernel.h"

namespace hs::cuda {

// Two steps may be in flight (Backend::launch): each staged step takes the next of two slots for
// what comes back, and collect() reads the oldest.
class DeviceSampler {
 public:
  DeviceSampler() = default;
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // Lays out the samples of `batch` (rows from out.first_row, which must be set) in pinned memory.
  // Returns how many there are.
  int stage(const Batch& batch, const Logits& out);
  // Adds the staged rows' upload to `copies`, which must run before the step's kernels (the
  // pinned rows are free again once the copies ran).
  void add_copies(HostCopies& copies);
  // Samples the rows from `logits` (rows of `vocab` floats, edited in place), enqueued on s after
  // the step's kernels, and copies the tokens back on a stream of its own: the next step's
  // kernels, enqueued on s, need not wait for that copy (a copy-engine operation that held s about
  // 6 us; kernels/NOTES.md, session 30).
  void sample(float* logits, int vocab, cudaStream_t s);
  // Once the oldest staged step that was not collected has finished on the device: waits for its
  // tokens' copy, then out.sampled for its chunks (-1 where none was asked).
  void collect(Logits& out);
  // The step staged last: per chunk, the row of its token in device_tokens() (-1: none).
  const std::vector<int32_t>& last_rows() const { return slots_[(staged_ + 1) & 1].row_of_chunk; }
  bool has_staged() const { return staged_ > 0; }
  const int32_t* device_tokens() const { return d_tokens_.get(); }

 private:
  struct Slot {
    std::vector<int32_t> row_of_chunk;  // chunk -> staged row, or -1
    PinnedBuffer<int32_t> h_tokens;
    cudaEvent_t copied = nullptr;  // after the copy of the tokens into h_tokens
  };
  Slot slots_[2];
  int64_t staged_ = 0, collected_ = 0;
  std::vector<SampleRow> rows_;
  std::vector<LogitEdit> edits_, scratch_;
  PinnedBuffer<SampleRow> h_rows_;
  PinnedBuffer<LogitEdit> h_edits_;
  DeviceBuffer<SampleRow> d_rows_;
  DeviceBuffer<LogitEdit> d_edits_;
  DeviceBuffer<int32_t> d_tokens_;
  DeviceBuffer<int32_t> d_scratch_;     // sample_tokens' scratch (made with the stream)
  cudaStream_t copy_stream_ = nullptr;  // the tokens' copies (made at the first sample())
  cudaEvent_t sampled_ = nullptr;       // after a step's sampling kernel
};

}  // namespace hs::cuda
