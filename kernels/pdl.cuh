// Programmatic dependent launch (Hopper): a kernel launched through launch() may be scheduled
// while the kernel before it in the stream still runs, so that its blocks are resident and its
// launch latency is hidden by the time the earlier kernel ends. Such a kernel must call
// pdl_wait() before it touches memory that earlier work writes or reads (the wait returns once the
// earlier grids have finished and their writes are visible). pdl_launch_dependents() then lets
// the next kernel be scheduled. Both are no-ops below sm_90 and in a kernel launched the ordinary
// way. (Scheduling the next kernel before the wait, so that whole chains are scheduled ahead,
// measured slower: kernels/NOTES.md, session 4. The CUDA backend's qkv_prep does it alone, so
// that the decode attention streams its older pages during the QKV projection's end: session 21.)
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "sharded_attention.h"

namespace hs::kernels {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" :::);
#endif
}

// What a kernel does first: wait for its inputs, and let the next kernel get ready.
__device__ __forceinline__ void pdl_begin() {
  pdl_wait();
  pdl_launch_dependents();
}

// kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent launch when
// set_programmatic_launch(true) was called.
template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = programmatic_launch() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace hs::kernels
