// CUDA graphs for decode steps: the step's whole kernel sequence (embedding, every layer, the LM
// head) is captured once per bucketed batch size and replayed, so that a decode step costs one
// launch instead of a few hundred. Buckets are powers of two up to 256 sequences; a step is
// padded to its bucket (see StepInputs).
//
// A captured graph bakes in device addresses, sizes and grid shapes: it stays valid while the
// buffers it reads keep their addresses. The caller passes a generation number that changes
// whenever one of them is reallocated; a graph of an older generation is captured again.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>

namespace hs::cuda {

class DecodeGraphs {
 public:
  static constexpr int kMaxBucket = 256;
  // The bucket for n sequences: the smallest power of two >= n; 0 when n > kMaxBucket.
  static int bucket_for(int n);

  DecodeGraphs() = default;
  ~DecodeGraphs();
  DecodeGraphs(const DecodeGraphs&) = delete;
  DecodeGraphs& operator=(const DecodeGraphs&) = delete;

  // Runs the step of shape `key` (the bucket, and whatever else fixes the launches' shapes) on
  // s: the first time eagerly (record() enqueues the work directly), then by launching its graph,
  // captured from `record` (which enqueues the step's work on s and must not synchronize or
  // allocate) when there is none of this generation.
  // Throws std::runtime_error on a CUDA error; a failed capture leaves s usable.
  void run(int key, uint64_t generation, cudaStream_t s, const std::function<void()>& record);
  void clear();

 private:
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    uint64_t generation = 0;
    bool warmed = false;  // ran once eagerly
  };
  std::map<int, Entry> graphs_;
};

}  // namespace hs::cuda
