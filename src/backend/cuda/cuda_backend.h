// The CUDA backend: the model's forward pass on one GPU, behind the same Backend interface as the
// CPU reference (src/backend/backend.h), which it mirrors operation for operation.
//
// Numerics: weights and GEMM inputs (normed activations, attention output, gated MLP activation)
// in 16-bit floats, fp16 for llama models and bf16 for Gemma 3 (HEADSHARD_CUDA_GEMM=bf16|fp16
// overrides), converted from the float32 ModelWeights at construction; the residual stream, GEMM
// outputs, norms, RoPE and softmax in float32; queries and KV pages in bf16 with the CPU layout
// (page p = K [B][D] then V [B][D]). Logits come back as float32. A single row's linear layers
// run on a streaming kernel, others on cuBLAS (HEADSHARD_CUDA_GEMV=0: cuBLAS throughout).
//
// Attention runs on the sharded kernels of kernels/ (head dims 64, 128, 256; GQA groups up to 16;
// power-of-two blocks of 16 to 128 tokens) and otherwise on a simple exact kernel;
// HEADSHARD_ATTENTION=simple forces the latter.
//
// Decode-only steps (one token per sequence) replay CUDA graphs captured per bucketed batch size
// (1, 2, 4, ..., 256 sequences, padded); HEADSHARD_CUDA_GRAPHS=0 in the environment turns this off.
//
// This header needs no CUDA headers, so plain C++ code (the CLI, tests) can include it; the
// definitions live in the headshard_cuda library, built only when nvcc is found.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace hs {

struct ModelWeights;

// True when the CUDA runtime finds at least one usable device (false, never a throw, otherwise).
bool cuda_device_available();

// Uploads the weights to `device` and returns the backend. Throws std::runtime_error (with the
// CUDA or cuBLAS error and where it happened) when the device or its memory cannot be had, and
// std::invalid_argument for a model shape the kernels do not support (head_dim > 256).
std::unique_ptr<Backend> make_cuda_backend(std::shared_ptr<const ModelWeights> w, int device = 0);

}  // namespace hs
