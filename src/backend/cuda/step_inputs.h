// One step's inputs on the device: the tokens, their positions and chunks, the KV metadata
// (KvStepMeta: page lists and write slots) and which tokens need logits. Staged in pinned host
// memory and copied up asynchronously; the device buffers keep their addresses from step to step
// (they only grow), so CUDA graphs that captured them stay valid until a reallocation, which
// upload() reports.
//
// Padding (decode graphs): a step of n one-token chunks can be padded to P >= n chunks. Padding
// tokens have id 0 and position 0, write no K/V (slot -1), have empty page lists, and their
// logits rows follow the real ones (computed, never copied back).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/device_buffer.h"

namespace hs::cuda {

struct StepShape {
  int n_tokens = 0;   // including padding
  int n_chunks = 0;   // including padding
  int n_rows = 0;     // logits rows computed (including padding)
  int real_rows = 0;  // logits rows returned
};

class StepInputs {
 public:
  // Checks the batch (token ids, positions, chunk sizes; std::invalid_argument as the CPU
  // backend does) and its metadata (shape, and every page and write slot inside the pool of
  // n_pages pages of block_size: a bad one would corrupt device memory), lays the step out in
  // pinned memory, and sets out.vocab and out.first_row. pad_to = 0 means no padding.
  StepShape stage(const Batch& batch, const KvStepMeta& meta, const ModelConfig& c, int32_t n_pages,
                  int32_t block_size, int pad_to, Logits& out);
  // Sizes the device buffers for steps of up to n_tokens tokens (as many chunks) and n_entries
  // page-list entries ahead of time, so that they need not move later (graphs stay valid).
  // Returns true when a buffer was reallocated.
  bool reserve(size_t n_tokens, size_t lists_per_chunk, size_t n_entries);
  // Copies what stage() laid out to the device, in stream order on s. Returns true when a device
  // buffer was reallocated (its address changed).
  bool upload(cudaStream_t s);

  const int32_t* tok_id() const { return d_tok_id_.get(); }
  const int32_t* tok_pos() const { return d_tok_pos_.get(); }
  const int32_t* tok_chunk() const { return d_tok_chunk_.get(); }
  const int32_t* row_tok() const { return d_row_tok_.get(); }  // logits row -> token
  // [(layer * n_kv_heads + kv_head) * n_tokens + token], n_tokens including padding
  const int32_t* write_slots() const { return d_write_slots_.get(); }
  const int32_t* indptr() const { return d_indptr_.get(); }
  const int32_t* blocks() const { return d_blocks_.get(); }
  const int32_t* pages() const { return d_pages_.get(); }
  // Chunk c's tokens are rows [chunk_tok0[c], chunk_tok0[c + 1]) at positions chunk_pos0[c] + i
  // (padding chunks included).
  const int32_t* chunk_pos0() const { return d_chunk_pos0_.get(); }
  const int32_t* chunk_tok0() const { return d_chunk_tok0_.get(); }
  // The staged host copies, for planning the step's attention.
  const int32_t* host_indptr() const { return indptr_.host.get(); }
  const int32_t* host_chunk_pos0() const { return chunk_pos0_.host.get(); }
  const int32_t* host_chunk_tok0() const { return chunk_tok0_.host.get(); }

 private:
  struct Array {
    PinnedBuffer<int32_t> host;
    size_t n = 0;  // staged elements
    int32_t* fill(size_t count) {
      host.grow_to(count > 0 ? count : 1);
      n = count;
      return host.get();
    }
  };
  Array tok_id_, tok_pos_, tok_chunk_, row_tok_, write_slots_, indptr_, blocks_, pages_, chunk_pos0_, chunk_tok0_;
  DeviceBuffer<int32_t> d_tok_id_, d_tok_pos_, d_tok_chunk_, d_row_tok_, d_write_slots_, d_indptr_, d_blocks_,
      d_pages_, d_chunk_pos0_, d_chunk_tok0_;
};

}  // namespace hs::cuda
