// Owning buffers of device memory and of pinned host memory, sized in elements.
//
// grow_to(n) keeps the buffer when it already holds n elements and otherwise reallocates
// (contents are not kept: these hold per-step scratch) with headroom, so that a slowly growing
// demand reallocates only a logarithmic number of times. It returns true when it reallocated:
// device addresses baked into captured CUDA graphs are then stale.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "backend/cuda/cuda_check.h"

namespace hs::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { allocate(n); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Exactly n elements (n == 0 frees). Throws std::runtime_error when the device is out of memory.
  void allocate(size_t n) {
    release();
    if (n == 0) return;
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T));
    if (e != cudaSuccess) {
      p_ = nullptr;
      (void)cudaGetLastError();  // clear it, so that the next checked call does not report it again
      throw std::runtime_error("CUDA backend: cannot allocate " + std::to_string(n * sizeof(T) >> 20) +
                               " MiB of device memory: " + cudaGetErrorString(e));
    }
    n_ = n;
  }
  bool grow_to(size_t n) {
    if (n <= n_) return false;
    allocate(n + n / 2);
    return true;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  void release() {
    if (p_) cudaFree(p_);  // no throw from a destructor path; a failing free has nothing to undo
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Page-locked host memory: the source of asynchronous uploads (pageable memory would make
// cudaMemcpyAsync synchronous and slow).
template <typename T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void grow_to(size_t n) {
    if (n <= n_) return;
    release();
    n += n / 2;
    HS_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    n_ = n;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  void release() {
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace hs::cuda
