#include "backend/cuda/decode_graphs.h"

#include "backend/cuda/cuda_check.h"

namespace hs::cuda {

int DecodeGraphs::bucket_for(int n) {
  if (n <= 0 || n > kMaxBucket) return 0;
  int b = 1;
  while (b < n) b *= 2;
  return b;
}

DecodeGraphs::~DecodeGraphs() { clear(); }

void DecodeGraphs::clear() {
  for (auto& [key, e] : graphs_)
    if (e.exec) cudaGraphExecDestroy(e.exec);
  graphs_.clear();
}

void DecodeGraphs::run(int key, uint64_t generation, cudaStream_t s, const std::function<void()>& record) {
  Entry& e = graphs_[key];
  if (!e.exec || e.generation != generation) {
    if (!e.warmed) {
      // The first step of a bucket runs eagerly: it loads every kernel it uses (CUDA loads
      // modules lazily, and cuBLAS picks kernels by shape) before any capture sees them.
      record();
      e.warmed = true;
      return;
    }
    if (e.exec) {
      HS_CUDA_CHECK(cudaGraphExecDestroy(e.exec));
      e.exec = nullptr;
    }
    // Thread-local mode: only this thread's work is captured, and other threads' CUDA calls are
    // not forbidden meanwhile.
    HS_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      record();
    } catch (...) {
      cudaStreamEndCapture(s, &graph);  // ends the (invalidated) capture so s can be used again
      if (graph) cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      throw;
    }
    HS_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    const cudaError_t inst = cudaGraphInstantiate(&e.exec, graph, 0);
    cudaGraphDestroy(graph);
    if (inst != cudaSuccess) {
      e.exec = nullptr;
      throw_cuda_error(inst, "cudaGraphInstantiate", __FILE__, __LINE__);
    }
    e.generation = generation;
  }
  HS_CUDA_CHECK(cudaGraphLaunch(e.exec, s));
}

}  // namespace hs::cuda
