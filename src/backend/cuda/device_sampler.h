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

class DeviceSampler {
 public:
  // Lays out the samples of `batch` (rows from out.first_row, which must be set) in pinned memory.
  // Returns how many there are.
  int stage(const Batch& batch, const Logits& out);
  // Uploads the staged rows, samples them from `logits` (rows of `vocab` floats, edited in place)
  // and copies the tokens back, all enqueued on s.
  void run(float* logits, int vocab, cudaStream_t s);
  // After s has synchronized: out.sampled for every chunk (-1 where none was asked).
  void collect(const Batch& batch, Logits& out) const;

 private:
  std::vector<int32_t> chunk_of_;  // staged row -> chunk
  std::vector<SampleRow> rows_;
  std::vector<LogitEdit> edits_, scratch_;
  PinnedBuffer<SampleRow> h_rows_;
  PinnedBuffer<LogitEdit> h_edits_;
  PinnedBuffer<int32_t> h_tokens_;
  DeviceBuffer<SampleRow> d_rows_;
  DeviceBuffer<LogitEdit> d_edits_;
  DeviceBuffer<int32_t> d_tokens_;
};

}  // namespace hs::cuda
