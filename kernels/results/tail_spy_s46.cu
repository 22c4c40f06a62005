// Session 46: when does each multiprocessor fall idle at the end of a kernel we cannot instrument?
//
// A "spy" grid waits on a low-priority stream while the kernel under test runs on a high-priority one.
// Each spy block takes more shared memory than a multiprocessor has beside one block of the kernel under
// test, so it can start on a multiprocessor only once that multiprocessor holds none of the kernel's blocks,
// and (its stream's priority being lower) only when none of the kernel's blocks wait to start. Its first
// thread writes %globaltimer and %smid and then spins for spin_ns, so that every multiprocessor takes one
// spy block at most: the spy blocks' entry times are the times the multiprocessors fell idle for good.
// `marker` writes %globaltimer (before and after the kernel under test, on its stream).
// Built as a shared library for ctypes (kernels/results/tail_spy_s46.py):
//   nvcc -O2 -shared -Xcompiler -fPIC -gencode arch=compute_90,code=sm_90 -cudart static \
//        kernels/results/tail_spy_s46.cu -o libtail_spy.so
#include <cuda_runtime.h>

#include <cstdint>

namespace {

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void marker(uint64_t* t) { *t = global_ns(); }

__global__ void spy(uint64_t* rec, uint64_t spin_ns) {
  extern __shared__ unsigned char smem[];
  if (threadIdx.x != 0) return;
  const uint64_t t0 = global_ns();
  uint32_t sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  rec[2 * blockIdx.x] = t0;
  rec[2 * blockIdx.x + 1] = sm;
  smem[0] = 1;  // the shared memory is taken at launch either way
  while (global_ns() - t0 < spin_ns) {
  }
}

}  // namespace

extern "C" int spy_setup(int smem_bytes) {
  return cudaFuncSetAttribute(spy, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
}

extern "C" int spy_launch(void* rec, unsigned long long spin_ns, int blocks, int smem_bytes, void* stream) {
  spy<<<blocks, 32, smem_bytes, static_cast<cudaStream_t>(stream)>>>(static_cast<uint64_t*>(rec), spin_ns);
  return cudaGetLastError();
}

extern "C" int marker_launch(void* t, void* stream) {
  marker<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<uint64_t*>(t));
  return cudaGetLastError();
}
