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

// How the kernel cuts the work: weight rows per warp (1 or 2) and 16-byte loads each lane has in
// flight per row (2, 4, 8, or 16 with one row).
struct GemvConfig {
  int rows_per_warp;
  int loads_per_lane;
};

// The configuration Gemm uses, for every shape (bench_gemv compares the others). On an H200 at
// Llama-3.1-8B's shapes, over two runs, it had the least time per layer (114.7 and 110.3 us for
// QKV, output, gate/up and down, against 116.4 and 119.9 us for the earlier choice) and the
// fastest gate/up and LM head in both; the 4096-row matrices varied by up to 18% between runs.
inline constexpr GemvConfig kGemvConfig{1, 2};

// y[c] = sum_i x[i] * W[c][i] (+ y[c] when beta is 1), c < m, i < k, enqueued on s. Throws
// std::invalid_argument for a configuration that has no kernel.
void gemv(const half16* x, const half16* W, GemmType t, int m, int k, float* y, float beta, cudaStream_t s,
          const GemvConfig& config);

// A single-row GEMV with the elementwise step before or after it folded in (batch-1 decode):
// each form gives, bit for bit, what the unfused kernels give (gemv() in kGemvConfig, after or
// before the step it replaces), in one launch instead of two.
struct FusedGemv {
  enum class Input {
    Half16,  // x: [k] of the GEMM type, as gemv() takes it
    Bf16,    // x: [k] bf16, rounded to the GEMM type on the way in as convert_bf16 rounds it
    Norm,    // x: [k] float, the residual row; the GEMV takes residual_norm's h of it:
             //    T(rms_norm(x) * norm_weight), rms_norm(v) = v / sqrt(mean(v^2) + eps)
  };
  Input input = Input::Half16;
  const void* x = nullptr;
  const float* norm_weight = nullptr;  // Norm: [k]
  float eps = 0.0f;                    // Norm
  // Exactly one output:
  float* y = nullptr;  // y[c] = (W x)[c] (+ y[c] when beta is 1), as gemv()
  float beta = 0.0f;
  // or the gated MLP activation over a fused gate/up W (gate rows [0, m/2), up rows [m/2, m)):
  // act[i] = T(act(gate_i . x) * (up_i . x)), i < m/2, as gated_activation computes it from the
  // projection (act = gelu_tanh when gelu, else silu); the projection itself is not stored.
  half16* act = nullptr;
  bool gelu = false;
};

// True when gemv_fused() takes these operands: k a multiple of 8 with x and W 16-byte aligned, one
// output (m even for act, beta 0 or 1 for y), Norm with a weight and k <= 8192 (residual_norm's
// one-pass kernel), and x staged in at most 48 KiB of shared memory.
bool gemv_fused_supports(const FusedGemv& f, const half16* W, int m, int k);

// The fused GEMV over W [m][k] of type t, enqueued on s. Throws std::invalid_argument for operands
// gemv_fused_supports() rejects.
void gemv_fused(const FusedGemv& f, const half16* W, GemmType t, int m, int k, cudaStream_t s);

}  // namespace hs::cuda
