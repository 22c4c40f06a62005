#include "backend/cpu/ops.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/dequant_simd.h"
#include "util/thread_pool.h"

namespace hs::cpu {

namespace {

bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

// Two input rows against four weight rows: eight dot products sharing their loads.
__attribute__((target("avx2,fma"))) void tile_2x4_avx2(const float* x0, const float* x1, const float* const w[4],
                                                       int64_t n, float y0[4], float y1[4]) {
  __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 b[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 u = _mm256_loadu_ps(x0 + i), v = _mm256_loadu_ps(x1 + i);
    for (int r = 0; r < 4; ++r) {
      const __m256 wr = _mm256_loadu_ps(w[r] + i);
      a[r] = _mm256_fmadd_ps(u, wr, a[r]);
      b[r] = _mm256_fmadd_ps(v, wr, b[r]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    y0[r] = hsum(a[r]);
    y1[r] = hsum(b[r]);
    for (int64_t k = i; k < n; ++k) {
      y0[r] += x0[k] * w[r][k];
      y1[r] += x1[k] * w[r][k];
    }
  }
}

// One input row against four packed weight rows, dequantized in registers (dequant_simd.h): each
// result equal, bit for bit, to dot_avx2 on the rows dequantize() makes (the same values, then the
// same multiply-adds in the same order: elements 16i..16i+7 into one sum, 16i+8..16i+15 into the
// other).
template <class Reader>
__attribute__((target("avx2,fma,f16c"))) void dot_1x4_packed(const float* x, const uint8_t* const w[4],
                                                             int64_t n_chunks, float y[4]) {
  __m256 s0[4], s1[4];
  for (int r = 0; r < 4; ++r) s0[r] = s1[r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < n_chunks; ++k, x += 32) {
    const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8), x2 = _mm256_loadu_ps(x + 16),
                 x3 = _mm256_loadu_ps(x + 24);
    const int64_t block = k / Reader::kChunks;
    const int chunk = static_cast<int>(k % Reader::kChunks);
    for (int r = 0; r < 4; ++r) {
      __m256 v[4];
      Reader::unpack(w[r] + block * Reader::kBytes, chunk, v);
      s0[r] = _mm256_fmadd_ps(x0, v[0], s0[r]);
      s1[r] = _mm256_fmadd_ps(x1, v[1], s1[r]);
      s0[r] = _mm256_fmadd_ps(x2, v[2], s0[r]);
      s1[r] = _mm256_fmadd_ps(x3, v[3], s1[r]);
    }
  }
  for (int r = 0; r < 4; ++r) y[r] = hsum(_mm256_add_ps(s0[r], s1[r]));
}

// Y[r] = x . W[r] for rows [r0, r1) of a packed W; false (nothing done) where there is no fused
// kernel for W's type or this CPU.
bool matvec_packed(const float* x, const Matrix& W, int64_t r0, int64_t r1, float* Y) {
  if (!have_avx2() || !simd::have_avx2()) return false;
  return simd::with_reader(W.type, [&](auto reader) {
    const size_t row_bytes = W.row_bytes();
    for (int64_t r = r0; r < r1; r += 4) {
      const uint8_t* w[4];  // past r1, the last row again (its results are not kept)
      for (int k = 0; k < 4; ++k) w[k] = W.blocks.data() + std::min(r + k, r1 - 1) * row_bytes;
      float y[4];
      dot_1x4_packed<decltype(reader)>(x, w, W.cols / 32, y);
      for (int k = 0; k < 4 && r + k < r1; ++k) Y[r + k] = y[k];
    }
    return true;
  });
}

}  // namespace

float dot(const float* a, const float* b, int64_t n) { return have_avx2() ? dot_avx2(a, b, n) : dot_scalar(a, b, n); }

void matmul(const float* X, int64_t n_rows, const Matrix& W, float* Y) {
  const int64_t R = W.rows, C = W.cols;
  // Blocks of weight rows small enough to stay in cache while every input row passes by. A packed
  // matrix's block is dequantized first, into a buffer of the thread's (or, for one input row, in
  // registers): the same float32 rows, so the same results, from a half to an eighth of the bytes
  // in memory.
  const int64_t block = 16;
  const int64_t n_blocks = (R + block - 1) / block;
  ThreadPool::global().parallel_for(n_blocks, std::max<int64_t>(1, n_blocks / 64), [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> unpacked;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * block, r1 = std::min(R, r0 + block);
      if (n_rows == 1 && W.packed() && matvec_packed(X, W, r0, r1, Y)) continue;
      const float* rows;  // row r is rows + (r - r0) * C
      if (W.packed()) {
        unpacked.resize(static_cast<size_t>(block * C));
        W.rows_f32(r0, r1 - r0, unpacked.data());
        rows = unpacked.data();
      } else {
        rows = W.row(r0);
      }
      auto w_row = [&](int64_t r) { return rows + (r - r0) * C; };
      int64_t r = r0;
      if (have_avx2()) {
        for (; r + 4 <= r1; r += 4) {
          const float* w[4] = {w_row(r), w_row(r + 1), w_row(r + 2), w_row(r + 3)};
          int64_t t = 0;
          for (; t + 2 <= n_rows; t += 2) {
            float y0[4], y1[4];
            tile_2x4_avx2(X + t * C, X + (t + 1) * C, w, C, y0, y1);
            for (int k = 0; k < 4; ++k) {
              Y[t * R + r + k] = y0[k];
              Y[(t + 1) * R + r + k] = y1[k];
            }
          }
          for (; t < n_rows; ++t)
            for (int k = 0; k < 4; ++k) Y[t * R + r + k] = dot_avx2(X + t * C, w[k], C);
        }
      }
      for (; r < r1; ++r)
        for (int64_t t = 0; t < n_rows; ++t) Y[t * R + r] = dot(X + t * C, w_row(r), C);
    }
  });
}

void rms_norm(const float* x, const float* w, float eps, int64_t n, float* y) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

void rope(float* x, int32_t pos, const RopeTable& table, bool neox) {
  const int half = static_cast<int>(table.inv_freq.size());
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * table.inv_freq[i];
    const float c = std::cos(angle) * table.mscale, s = std::sin(angle) * table.mscale;
    const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
  }
}

float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}

}  // namespace hs::cpu
