// One step's inputs on the device: the tokens, their positions and chunks, the KV metadata
// (KvStepMeta: page lists and write slots) and which tokens need logits. Staged in pinned host
// memory and copied up asynchronously; the device buffers keep their addresses from step to step
// (they only grow), so CUDA graphs that captured them stay valid until a reallocation, which
// add_copies() reports.
//
// The page lists live on the device in a ListArena's layout: each (sequence, layer, KV head) list
// keeps its place from step to step, and a step uploads only the entries that changed (a scatter
// kernel writes them) and where each of its lists begins and ends: O(lists + changes) bytes a step,
// not O(pages).
//
// A token Backend::kFromPreviousStep - j stands for the token sampled for chunk j of the step
// before: stage() takes where that step's sampler put each chunk's token, and finish_upload()
// copies the tokens into the step's ids on the device.
//
// Padding (decode graphs): a step of n one-token chunks can be padded to P >= n chunks. Padding
// tokens have id 0 and position 0, write no K/V (slot -1), have empty page lists, and their
// logits rows follow the real ones (computed, never copied back).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/model_kernels.h"
#include "kv/list_arena.h"

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
  // previous_rows: per chunk of the step before, the row of its sampled token in that step's
  // sampler output (-1: none), or null when no token may come from the step before.
  StepShape stage(const Batch& batch, const KvStepMeta& meta, const ModelConfig& c, int32_t n_pages,
                  int32_t block_size, int pad_to, Logits& out, const std::vector<int32_t>* previous_rows = nullptr);
  // Sizes the device buffers for steps of up to n_tokens tokens (as many chunks) and n_entries
  // page-list entries ahead of time (the arena gets room for twice that), so that they need not
  // move later (graphs stay valid). Returns true when a buffer was reallocated.
  bool reserve(size_t n_tokens, size_t lists_per_chunk, size_t n_entries);
  // Forgets where the lists are (a new KV cache: its sequence ids and list stamps may repeat the
  // old one's); the next step places every list anew.
  void forget_lists() { arena_.clear(); }
  // Uploads what stage() laid out, in two parts: add_copies() adds the arrays to `copies`, which
  // the caller then launches (copy_from_host, with whatever else the step uploads); finish_upload()
  // enqueues on s what must follow those copies: the tokens that come from the step before, taken
  // from `sampled` (its sampler's device output), and the changed page-list entries. add_copies()
  // returns true when a device buffer was reallocated (its address changed).
  bool add_copies(HostCopies& copies);
  void finish_upload(cudaStream_t s, const int32_t* sampled = nullptr);

  const int32_t* tok_id() const { return d_tok_id_.get(); }
  const int32_t* tok_pos() const { return d_tok_pos_.get(); }
  const int32_t* tok_chunk() const { return d_tok_chunk_.get(); }
  const int32_t* row_tok() const { return d_row_tok_.get(); }  // logits row -> token
  // [(layer * n_kv_heads + kv_head) * n_tokens + token], n_tokens including padding
  const int32_t* write_slots() const { return d_write_slots_.get(); }
  // List l of the step ((chunk * n_layers + layer) * n_kv_heads + kv_head; padding chunks' lists
  // are empty) is entries [list_begin[l], list_end[l]) of blocks and pages.
  const int32_t* list_begin() const { return d_list_begin_.get(); }
  const int32_t* list_end() const { return d_list_end_.get(); }
  const int32_t* blocks() const { return d_blocks_.get(); }
  const int32_t* pages() const { return d_pages_.get(); }
  // Chunk c's tokens are rows [chunk_tok0[c], chunk_tok0[c + 1]) at positions chunk_pos0[c] + i
  // (padding chunks included).
  const int32_t* chunk_pos0() const { return d_chunk_pos0_.get(); }
  const int32_t* chunk_tok0() const { return d_chunk_tok0_.get(); }
  // The staged host copies, for planning the step's attention.
  const int32_t* host_list_begin() const { return list_begin_.host.get(); }
  const int32_t* host_list_end() const { return list_end_.host.get(); }
  const int32_t* host_chunk_pos0() const { return chunk_pos0_.host.get(); }
  const int32_t* host_chunk_tok0() const { return chunk_tok0_.host.get(); }

 private:
  // Places the step's lists in the arena and stages their begins and ends (n_lists, padding
  // included) and the changed entries.
  void place_lists(const Batch& batch, const KvStepMeta& meta, int32_t n_pages, size_t n_lists);

  struct Array {
    PinnedBuffer<int32_t> host;
    size_t n = 0;  // staged elements
    int32_t* fill(size_t count) {
      host.grow_to(count > 0 ? count : 1);
      n = count;
      return host.get();
    }
  };
  Array tok_id_, tok_pos_, tok_chunk_, row_tok_, write_slots_, list_begin_, list_end_, changes_, chunk_pos0_,
      chunk_tok0_, taken_;  // taken_: (token, sampler row) pairs of tokens from the step before
  DeviceBuffer<int32_t> d_tok_id_, d_tok_pos_, d_tok_chunk_, d_row_tok_, d_write_slots_, d_list_begin_, d_list_end_,
      d_changes_, d_blocks_, d_pages_, d_chunk_pos0_, d_chunk_tok0_, d_taken_;
  ListArena arena_;
  ListArena::Placement placed_;
  std::vector<int64_t> seqs_;
  bool staged_ = false;  // a stage() whose changes finish_upload() has not enqueued yet
};

}  // namespace hs::cuda
