// The CUDA backend's sampling of a step: the chunks that carry a SampleSpec get their next token
// picked on the GPU (sampling_kernel.h) from their last logits row, and only the tokens come back.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/sampling_kernel.h"

namespace hs::cuda {

// Two steps may be in flight (Backend::launch): each staged step takes the next of two slots for
// what comes back, and collect() reads the oldest.
class DeviceSampler {
 public:
  // Lays out the samples of `batch` (rows from out.first_row, which must be set) in pinned memory.
  // Returns how many there are.
  int stage(const Batch& batch, const Logits& out);
  // Uploads the staged rows, enqueued on s (before the step's kernels: the pinned rows are free
  // again once the copies ran).
  void upload(cudaStream_t s);
  // Samples the rows from `logits` (rows of `vocab` floats, edited in place) and copies the tokens
  // back, enqueued on s after the step's kernels.
  void sample(float* logits, int vocab, cudaStream_t s);
  // Once the oldest staged step that was not collected has finished on the device: out.sampled
  // for its chunks (-1 where none was asked).
  void collect(Logits& out);
  // The step staged last: per chunk, the row of its token in device_tokens() (-1: none).
  const std::vector<int32_t>& last_rows() const { return slots_[(staged_ + 1) & 1].row_of_chunk; }
  bool has_staged() const { return staged_ > 0; }
  const int32_t* device_tokens() const { return d_tokens_.get(); }

 private:
  struct Slot {
    std::vector<int32_t> row_of_chunk;  // chunk -> staged row, or -1
    PinnedBuffer<int32_t> h_tokens;
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
};

}  // namespace hs::cuda
