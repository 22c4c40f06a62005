// The linear layers: Y = X W^T with row-major X [n][k] and W [m][k] (a Matrix's layout: one row
// per output feature), both 16-bit floats of one GemmType, and Y [n][m] in float32, float32
// accumulation. cuBLAS computes them, except for a single row of X (decode of one sequence), which
// a streaming kernel (gemv.h) serves unless the constructor says otherwise.
// beta = 1 adds into Y (the residual add of the output projections, for free).
// Owns the cuBLAS handle, bound to one stream, with a fixed workspace so that calls can be
// captured into CUDA graphs (no allocation inside a capture).
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/gemv.h"
#include "backend/cuda/model_kernels.h"

namespace hs::cuda {

class Gemm {
 public:
  // max_k_splits: how many warps may share a row of the streaming kernel (gemv_config());
  // block_rows and block_max_bytes: where the block kernel serves instead (gemv_block_rows(); 0
  // rows: nowhere).
  explicit Gemm(cudaStream_t stream, bool single_row_kernel = true, int max_k_splits = kMaxGemvSplits,
                int block_rows = kGemvBlockRows, int64_t block_max_bytes = kGemvBlockMaxBytes);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Y[r][c] = sum_i X[r][i] * W[c][i] (+ Y[r][c] when beta is 1), r < n, c < m, i < k; row
  // strides ldx, ldy (elements). Throws std::runtime_error on a cuBLAS error.
  void linear(const half16* X, int64_t ldx, const half16* W, GemmType t, int m, int k, int n, float* Y, int64_t ldy,
              float beta = 0.0f);
  // The same for one row x (16-bit, bf16 with fp16 weights too, or a normed float32 row:
  // GemvInput), on the streaming kernel: only when single_row_kernel() and gemv_supports().
  void linear_row(const GemvInput& x, const half16* W, GemmType t, int m, int k, float* Y, float beta = 0.0f);
  // act = the gated activation of one row's gate/up projection (W: gate and up rows interleaved,
  // x of W's type or normed), in one streaming kernel (gemv_gated): only when
  // linear_row_gated_supported().
  void linear_row_gated(const GemvInput& x, const half16* W, GemmType t, int d_ff, int k, half16* act, bool gelu);
  bool linear_row_gated_supported(int d_ff, int k) const {
    return gemv_ && gemv_gated_supports(gemv_config_for(2 * d_ff, k));
  }
  bool single_row_kernel() const { return gemv_; }
  // The streaming kernel's configuration for an m x k weight matrix.
  GemvConfig gemv_config_for(int m, int k) const {
    return gemv_config(k, max_k_splits_, gemv_block_rows(m, k, block_rows_, block_max_bytes_));
  }

 private:
  cudaStream_t stream_;
  bool gemv_;  // single rows on the streaming kernel
  int max_k_splits_;
  int block_rows_;
  int64_t block_max_bytes_;
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer<uint8_t> workspace_;
};

}  // namespace hs::cuda
