// Error checking for CUDA runtime and cuBLAS calls: every call is wrapped, and a failure throws
// std::runtime_error naming the call site and the library's own error string, so a user sees
// "cuda_backend.cpp:120: cudaMalloc(...): out of memory" rather than a crash later on.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace hs::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* what, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                           cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* what, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                           cublasGetStatusName(s) + " (" + cublasGetStatusString(s) + ")");
}

}  // namespace hs::cuda

#define HS_CUDA_CHECK(call)                                                                 \
  do {                                                                                      \
    const cudaError_t hs_err_ = (call);                                                     \
    if (hs_err_ != cudaSuccess) ::hs::cuda::throw_cuda_error(hs_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define HS_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                        \
    const cublasStatus_t hs_st_ = (call);                                                     \
    if (hs_st_ != CUBLAS_STATUS_SUCCESS) ::hs::cuda::throw_cublas_error(hs_st_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: catches bad launch configurations at once (errors inside the kernel
// surface at the next synchronizing call, which is checked too).
#define HS_CUDA_CHECK_LAUNCH() HS_CUDA_CHECK(cudaGetLastError())
