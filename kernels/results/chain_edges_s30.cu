// Session 30 experiment, not part of the build. What one edge of a kernel chain costs: how long
// after kernel i's work kernel i + 1 can do its own, when kernel i + 1 waits by
//   plain  an ordinary launch (the stream orders the kernels),
//   pdl    a programmatic launch and griddepcontrol.wait (what the CUDA backend does: the wait
//          returns once kernel i has completed and its writes are visible),
//   flag   a programmatic launch with no griddepcontrol.wait: each block of kernel i adds 1 to
//          kernel i's counter (red.release.gpu) when its work is done, and each block of kernel
//          i + 1 spins (ld.acquire.gpu) until the counter holds kernel i's block count.
// Each kernel's work is one dependent read and write (block 0 writes buf[i + 1] = buf[i] + 1), so
// the chain's time divided by its length is the cost of an edge. At the end buf[N] must equal N:
// a mode that let a kernel read before its predecessor wrote would be caught there.
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o chain_edges chain_edges_s30.cu
//   ./chain_edges            (prints a table; JSON lines with --json)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

// Every CUDA call's status, checked where it is made: the program stops at the first failure.
void check(cudaError_t e, int line) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "chain_edges_s30.cu:%d: %s\n", line, cudaGetErrorString(e));
  std::exit(1);
}
#define CK(x) check((x), __LINE__)

enum Mode { kPlain = 0, kPdl = 1, kFlag = 2 };
const char* kModeName[] = {"plain", "pdl", "flag"};

__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void red_release_add(unsigned* p, unsigned v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}

// Kernel i of the chain. `need` is kernel i - 1's block count (flag mode).
template <int M>
__global__ void step(int* buf, unsigned* counters, int i, unsigned need) {
  if constexpr (M == kPdl) asm volatile("griddepcontrol.wait;\n" ::: "memory");
  if constexpr (M != kPlain) asm volatile("griddepcontrol.launch_dependents;\n" :::);
  if constexpr (M == kFlag) {
    if (threadIdx.x == 0)
      while (ld_acquire(counters + i) < need) __nanosleep(20);
    __syncthreads();
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    volatile int* b = buf;
    b[i + 1] = b[i] + 1;
  }
  if constexpr (M == kFlag) {
    __syncthreads();
    if (threadIdx.x == 0) red_release_add(counters + i + 1, 1u);
  }
}

template <int M>
void launch_one(int* buf, unsigned* counters, int i, int grid, cudaStream_t s) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(256);
  cfg.stream = s;
  cfg.attrs = &attr;
  cfg.numAttrs = M == kPlain ? 0 : 1;
  const unsigned need = i == 0 ? 0u : unsigned(grid);
  CK(cudaLaunchKernelEx(&cfg, step<M>, buf, counters, i, need));
}

void launch_chain(int mode, int* buf, unsigned* counters, int n, int grid, cudaStream_t s) {
  for (int i = 0; i < n; ++i) {
    if (mode == kPlain) launch_one<kPlain>(buf, counters, i, grid, s);
    if (mode == kPdl) launch_one<kPdl>(buf, counters, i, grid, s);
    if (mode == kFlag) launch_one<kFlag>(buf, counters, i, grid, s);
  }
}

int main(int argc, char** argv) {
  const bool json = argc > 1 && std::strcmp(argv[1], "--json") == 0;
  const int n = 256, reps = 15;
  int* buf;
  unsigned* counters;
  CK(cudaMalloc(&buf, (n + 1) * sizeof(int)));
  CK(cudaMalloc(&counters, (n + 1) * sizeof(unsigned)));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  if (!json) std::printf("%-6s %-7s %6s %12s %12s\n", "mode", "launch", "grid", "us/edge med", "us/edge min");
  bool all_ok = true;
  for (int grid : {1, 56, 132, 1056, 3072}) {
    for (int graph = 0; graph < 2; ++graph) {
      for (int mode = 0; mode < 3; ++mode) {
        cudaGraphExec_t exec = nullptr;
        if (graph) {
          cudaGraph_t g;
          CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
          launch_chain(mode, buf, counters, n, grid, s);
          CK(cudaStreamEndCapture(s, &g));
          CK(cudaGraphInstantiate(&exec, g, 0));
          CK(cudaGraphDestroy(g));
        }
        std::vector<float> t;
        bool ok = true;
        for (int r = 0; r < reps + 2; ++r) {
          CK(cudaMemsetAsync(buf, 0, (n + 1) * sizeof(int), s));
          CK(cudaMemsetAsync(counters, 0, (n + 1) * sizeof(unsigned), s));
          CK(cudaStreamSynchronize(s));
          CK(cudaEventRecord(e0, s));
          if (graph)
            CK(cudaGraphLaunch(exec, s));
          else
            launch_chain(mode, buf, counters, n, grid, s);
          CK(cudaEventRecord(e1, s));
          CK(cudaStreamSynchronize(s));
          float ms;
          CK(cudaEventElapsedTime(&ms, e0, e1));
          int last = -1;
          CK(cudaMemcpy(&last, buf + n, sizeof(int), cudaMemcpyDeviceToHost));
          ok = ok && last == n;
          if (r >= 2) t.push_back(ms * 1000.f / n);
        }
        if (exec) CK(cudaGraphExecDestroy(exec));
        std::sort(t.begin(), t.end());
        all_ok = all_ok && ok;
        if (json)
          std::printf("{\"mode\": \"%s\", \"graph\": %d, \"grid\": %d, \"us_per_edge_median\": %.3f, \"us_per_edge_min\": %.3f, \"chain_ok\": %s}\n",
                      kModeName[mode], graph, grid, t[t.size() / 2], t[0], ok ? "true" : "false");
        else
          std::printf("%-6s %-7s %6d %12.3f %12.3f%s\n", kModeName[mode], graph ? "graph" : "stream", grid,
                      t[t.size() / 2], t[0], ok ? "" : "  CHAIN BROKEN");
      }
    }
  }
  return all_ok ? 0 : 2;
}
