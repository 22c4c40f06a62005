// The linear layer of a single row (decode of one sequence): y = W x as a streaming kernel that
// reads each weight once with 16-byte loads, float32 accumulation. cuBLAS serves every other
// shape (Gemm::linear picks). Same layouts as Gemm::linear.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/model_kernels.h"

namespace hs::cuda {

// True when gemv() takes these operands: one row (n == 1), k and both pointers aligned to 8
// elements (16 bytes).
bool gemv_supports(const half16* X, const half16* W, int k, int n);

// y[c] = sum_i x[i] * W[c][i] (+ y[c] when beta is 1), c < m, i < k. Enqueued on s.
void gemv(const half16* x, const half16* W, GemmType t, int m, int k, float* y, float beta, cudaStream_t s);

}  // namespace hs::cuda
