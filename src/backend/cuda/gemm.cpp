#include "backend/cuda/gemm.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemv.h"

namespace hs::cuda {

namespace {
constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLAS's recommendation for Hopper
}

Gemm::Gemm(cudaStream_t stream, bool single_row_kernel, int max_k_splits, int block_rows, int64_t block_max_bytes)
    : stream_(stream),
      gemv_(single_row_kernel),
      max_k_splits_(max_k_splits),
      block_rows_(block_rows),
      block_max_bytes_(block_max_bytes) {
  HS_CUBLAS_CHECK(cublasCreate(&handle_));
  try {
    HS_CUBLAS_CHECK(cublasSetStream(handle_, stream));
    workspace_.allocate(kWorkspaceBytes);
    HS_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.get(), kWorkspaceBytes));
  } catch (...) {
    cublasDestroy(handle_);
    throw;
  }
}

Gemm::~Gemm() {
  if (handle_) cublasDestroy(handle_);
}

void Gemm::linear(const half16* X, int64_t ldx, const half16* W, GemmType t, int m, int k, int n, float* Y, int64_t ldy,
                  float beta) {
  if (n == 0) return;
  if (gemv_ && (beta == 0.0f || beta == 1.0f) && gemv_supports(X, W, k, n))
    return gemv(X, W, t, m, k, Y, beta, stream_, gemv_config_for(m, k));
  const float alpha = 1.0f;
  const cudaDataType_t type = t == GemmType::FP16 ? CUDA_R_16F : CUDA_R_16BF;
  // cuBLAS is column-major: row-major Y [n][m] is column-major Y^T (m x n), and
  // Y^T = W X^T where row-major W [m][k] read column-major is W^T (k x m): op(A) = T.
  HS_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, W, type, k, X, type,
                               static_cast<int>(ldx), &beta, Y, CUDA_R_32F, static_cast<int>(ldy),
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void Gemm::linear_row(const GemvInput& x, const half16* W, GemmType t, int m, int k, float* Y, float beta) {
  gemv(x, W, t, m, k, Y, beta, stream_, gemv_config_for(m, k));
}

void Gemm::linear_row_gated(const GemvInput& x, const half16* W, GemmType t, int d_ff, int k, half16* act,
                            bool gelu) {
  gemv_gated(x, W, t, d_ff, k, act, gelu, stream_, gemv_config_for(2 * d_ff, k));
}

}  // namespace hs::cuda
