// What the GPU tests on the CUDA backend share: skipping where there is no GPU, and failing on a
// CUDA error. Include only in code built with HEADSHARD_WITH_CUDA.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "backend/cuda/cuda_backend.h"

#define REQUIRE_GPU() \
  if (!::hs::cuda_device_available()) GTEST_SKIP() << "no CUDA device"

namespace hs::test {

// Fails the current test on a CUDA error (a fatal failure: it returns from this function only).
inline void check_cuda(cudaError_t e) { ASSERT_EQ(e, cudaSuccess) << cudaGetErrorString(e); }

}  // namespace hs::test
