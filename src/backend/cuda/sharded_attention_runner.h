// The CUDA backend's attention through the optimized sharded kernels (kernels/sharded_attention.h):
// plans a step once on the host (decode work items split and balanced by pages, prefill tiles),
// uploads the plan, and launches each layer's decode and prefill kernels.
//
// One-token chunks go to the decode kernel, longer chunks to the prefill kernel. The decode
// launch reads its layer's item range from the device and has a fixed grid (`capacity()`, a power
// of two at least the largest layer's item count, or the decode_lone_slots() grid when that is
// smaller and holds the items), so a decode step captured in a CUDA graph
// stays valid as contexts grow: only the uploaded plan changes, and the graph is captured again
// only when the capacity class changes (use it in the graph key).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/model_kernels.h"
#include "backend/cuda/step_inputs.h"
#include "model/config.h"
#include "sharded_attention.h"

namespace hs::cuda {

class ShardedAttentionRunner {
 public:
  // Empty when the kernels handle this model and block size; otherwise why not (the backend
  // then keeps its simple kernel).
  static std::string unsupported(const ModelConfig& c, int32_t block_size);

  // For the current device; call again after the plan or block size changes.
  void configure(const ModelConfig& c, int32_t block_size);
  // Plans the staged step and adds its upload to `copies` (only what the device does not hold
  // already). Returns true when a device buffer moved.
  bool plan(const StepShape& shape, const StepInputs& in, HostCopies& copies);
  int32_t capacity() const { return capacity_; }
  // The decode grids' kernel instance, which a graph bakes in (so it goes in the graph key with the
  // capacity): 0 by the grid's size, 1 one block per multiprocessor (kernels::DecodePlan::lone), 2
  // two-stage (DecodePlan::two_stage).
  int decode_instance() const { return decode_.lone ? 1 : decode_.two_stage ? 2 : 0; }

  // Enqueues what a step needs before its first layer, outside any graph: the decode's merge
  // counters zeroed where they have not been. Then run() for each layer, which decode graphs
  // capture: no synchronization, no allocation.
  void zero_counters(cudaStream_t s);
  // Enqueues the layer's attention: q and out bf16 [token][n_heads * D], pool the page pool of
  // n_pages pages, shards this layer's {sink, local, stride, offset} per KV head.
  void run(int layer, const __nv_bfloat16* q, __nv_bfloat16* out, const __nv_bfloat16* pool, int64_t n_pages,
           const int4* shards, const StepInputs& in, cudaStream_t s) const;

 private:
  ModelConfig c_;
  int32_t block_size_ = 0;
  kernels::DecodePlanOptions options_;

  kernels::DecodePlan decode_;
  std::vector<kernels::PrefillWorkItem> prefill_;
  std::vector<int32_t> decode_chunks_, prefill_chunks_;
  int32_t capacity_ = 0, n_groups_ = 0;

  PinnedBuffer<kernels::DecodeWorkItem> h_items_;
  PinnedBuffer<int32_t> h_layer_begin_;
  PinnedBuffer<kernels::PrefillWorkItem> h_prefill_;
  DeviceBuffer<kernels::DecodeWorkItem> d_items_;
  DeviceBuffer<int32_t> d_layer_begin_;
  DeviceBuffer<kernels::PrefillWorkItem> d_prefill_;
  DeviceBuffer<unsigned char> workspace_;  // partial outputs and LSEs, then merge counters

  // What the device holds: the decode plan last uploaded, whose items and layer begins
  // (uploaded_items_ and uploaded_begins_ of them; no plan while uploaded_items_ is 0) h_items_
  // and h_layer_begin_ still hold; and the capacity and group count whose counters are zero.
  size_t uploaded_items_ = 0, uploaded_begins_ = 0;
  struct Zeroed {
    int32_t capacity = 0, groups = 0;
  } zeroed_;
};

}  // namespace hs::cuda
