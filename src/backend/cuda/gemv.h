// The linear layer of a single row (decode of one sequence): y = W x as a streaming kernel that
// reads each weight once with 16-byte loads, float32 accumulation. cuBLAS serves every other
// shape (Gemm::linear picks). Same layouts as Gemm::linear.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/model_kernels.h"

namespace hs::cuda {

// True when gemv() takes these operands: one row (n == 1), k a multiple of 8 elements and both
// pointers aligned to 16 bytes.
bool gemv_supports(const void* X, const half16* W, int k, int n);

// The single-row kernels' input row x: k 16-bit floats of `type`, or, when `normed`, the residual
// stream itself (k float32) under an RMS norm that the kernel applies as it reads it: it sums x^2
// along with the products and scales each output by 1 / sqrt(mean(x^2) + eps). The norm's weight
// is not applied: it must be folded into W's columns (upload_weights' fold_norms), so that the
// kernel computes what rms_norm(x) * weight followed by the projection computes, without the norm's
// kernel and its 16-bit row in between.
struct GemvInput {
  const void* x;
  GemmType type;  // of 16-bit x
  bool normed = false;
  float eps = 0.0f;
  static GemvInput rms_normed(const float* x, float eps) { return {x, GemmType::BF16, true, eps}; }
};

// How the kernel cuts the work: weight rows per warp (1 or 2), 16-byte loads each lane has in
// flight per row (2, 4, 8, or 16 with one row), and warps sharing each row, each a contiguous part
// of k (1; 2 or 4 with one row and 2 loads, 2 with 4 loads).
struct GemvConfig {
  int rows_per_warp;
  int loads_per_lane;
  int k_splits = 1;
  // Above 0: the block kernel instead (2, 4 or 8 rows at a time, each row shared by a block's 256
  // threads; k up to 16,384), and the fields above unused (gemv_config() sets them to 0, 0, 1).
  int block_rows = 0;

  bool operator==(const GemvConfig& o) const {
    return rows_per_warp == o.rows_per_warp && loads_per_lane == o.loads_per_lane && k_splits == o.k_splits &&
           block_rows == o.block_rows;
  }
};

// The rows and loads Gemm uses, for every shape (bench_gemv compares the others). On an H200 at
// Llama-3.1-8B's shapes, over two runs, it had the least time per layer (114.7 and 110.3 us for
// QKV, output, gate/up and down, against 116.4 and 119.9 us for the earlier choice) and the
// fastest gate/up and LM head in both; the 4096-row matrices varied by up to 18% between runs.
inline constexpr GemvConfig kGemvConfig{1, 2};

// kGemvConfig with each row shared by up to max_splits warps (1, 2 or 4), as many as leave every
// warp at least two rounds of loads (1,024 elements of k). On an H200 at Llama-3.1-8B's shapes
// four warps a row took 3-18% less time than one, whether the grid is one wave of blocks or many
// (kernels/NOTES.md, session 20); at k = 576 (SmolLM2) they slowed the LM head 1.9x.
// block_rows > 0: the block kernel with that many rows a group, where k allows it.
GemvConfig gemv_config(int k, int max_splits, int block_rows = 0);
// The most warps that share a row: Gemm's default and the largest gemv_config() gives.
inline constexpr int kMaxGemvSplits = 4;

// Where Gemm puts the block kernel: on weight matrices of at most block_max_bytes whose k gives
// each of a block's threads a 16-byte piece of every row (k >= 2,048), block_rows rows a group;
// gemv_block_rows() gives block_rows there and 0 (the per-warp kernel) elsewhere. At Llama-3.1-8B's
// shapes that is QKV and the output projection: on an H200 at its 700 W cap, batch-1 decode at 4k
// through the Engine ran at 250.9 tok/s with them on the block kernel (4 rows a group) against 246.3
// with every matrix on the per-warp kernel, and 247.8 with 2 rows (kernels/NOTES.md, session 35).
// On every matrix the block kernel was slower (session 32).
inline constexpr int kGemvBlockRows = 4;
inline constexpr int64_t kGemvBlockMaxBytes = int64_t{64} << 20;
int gemv_block_rows(int m, int k, int block_rows = kGemvBlockRows, int64_t block_max_bytes = kGemvBlockMaxBytes);

// y[c] = sum_i x[i] * W[c][i] (+ y[c] when beta is 1), c < m, i < k, enqueued on s. x is of
// type xt (bf16 x with fp16 weights: the attention output, converted as it is read). Throws
// std::invalid_argument for a configuration that has no kernel.
void gemv(const GemvInput& x, const half16* W, GemmType t, int m, int k, float* y, float beta, cudaStream_t s,
          const GemvConfig& config);
inline void gemv(const half16* x, GemmType xt, const half16* W, GemmType t, int m, int k, float* y, float beta,
                 cudaStream_t s, const GemvConfig& config) {
  gemv(GemvInput{x, xt}, W, t, m, k, y, beta, s, config);
}
inline void gemv(const half16* x, const half16* W, GemmType t, int m, int k, float* y, float beta, cudaStream_t s,
                 const GemvConfig& config) {
  gemv(x, t, W, t, m, k, y, beta, s, config);
}

// A gated MLP's gate/up projection and activation in one kernel: W is d_ff gate rows and d_ff up
// rows interleaved (gate j at row 2j, up j at 2j + 1; k columns), x of W's type (or normed), and act[j] =
// t(act(gate_j x) * (up_j x)) for j < d_ff, act GELU (tanh) when gelu, else SiLU: the bits of gemv()
// into float32 followed by gated_activation(). Only for per-warp configurations of one row a warp
// (gemv_gated_supports; else std::invalid_argument).
bool gemv_gated_supports(const GemvConfig& config);
void gemv_gated(const GemvInput& x, const half16* W, GemmType t, int d_ff, int k, half16* act, bool gelu, cudaStream_t s,
                const GemvConfig& config);
inline void gemv_gated(const half16* x, const half16* W, GemmType t, int d_ff, int k, half16* act, bool gelu,
                       cudaStream_t s, const GemvConfig& config) {
  gemv_gated(GemvInput{x, t}, W, t, d_ff, k, act, gelu, s, config);
}

}  // namespace hs::cuda
