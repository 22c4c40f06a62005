// Float32 building blocks of the CPU reference backend. Plain loops, vectorized where it pays;
// these are also the oracles the CUDA kernels are tested against.
#pragma once
#include <cstdint>

#include "model/rope.h"
#include "model/weights.h"

namespace hs::cpu {

float dot(const float* a, const float* b, int64_t n);

// Y[t][r] = sum_c X[t][c] * W[r][c] for t < n_rows; multithreaded over W's rows.
void matmul(const float* X, int64_t n_rows, const Matrix& W, float* Y);

// y = x / rms(x) * w  (w may be nullptr for no weight), over n elements.
void rms_norm(const float* x, const float* w, float eps, int64_t n, float* y);

// Rotates the first rope_dims elements of one head vector in place for position pos, with the
// table's angle per position for each pair: neox rotates (i, i + rope_dims/2), otherwise
// (2i, 2i+1).
void rope(float* x, int32_t pos, const RopeTable& table, bool neox);

inline float silu(float x) { return x / (1.0f + __builtin_expf(-x)); }
float gelu_tanh(float x);

}  // namespace hs::cpu
