// The CUDA backend's linear layers (Gemm::linear: the streaming kernel of gemv.h for one row,
// cuBLAS otherwise) against a host reference. Inputs are multiples of 1/16 and small,
// so every product and partial sum is exact in float32: the GPU must match to the bit, whatever
// its summation order. Skips cleanly without a GPU or a CUDA build.
#include <gtest/gtest.h>

#ifdef HEADSHARD_WITH_CUDA

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "cuda/gpu_test.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/gemv.h"
#include "sharded_attention.h"

namespace hs {
namespace {

using test::check_cuda;

uint16_t encode(float v, cuda::GemmType t) {
  if (t == cuda::GemmType::FP16) return __half_as_ushort(__float2half_rn(v));
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return static_cast<uint16_t>(u >> 16);  // exact: the values need few mantissa bits
}

struct Shape {
  int m, k, n;
  float beta;
};

// Runs Y = X W^T on the device: through Gemm::linear, or straight through gemv() in the given
// configuration with X of type xt (the weights' type t unless given).
void expect_exact(const Shape& sh, cuda::GemmType t, const cuda::GemvConfig* config = nullptr,
                  std::optional<cuda::GemmType> xt = std::nullopt) {
  const auto [m, k, n, beta] = sh;
  const int ldx = k + 8;  // a padded row stride, as the backend's buffers may have
  std::mt19937 rng(m * 31 + k * 7 + n);
  auto value = [&] { return static_cast<float>(static_cast<int>(rng() % 17) - 8) / 16.0f; };
  std::vector<float> x(static_cast<size_t>(n) * ldx, 0.0f), w(static_cast<size_t>(m) * k), y0(static_cast<size_t>(n) * m);
  for (int r = 0; r < n; ++r)
    for (int i = 0; i < k; ++i) x[static_cast<size_t>(r) * ldx + i] = value();
  for (float& v : w) v = value();
  for (float& v : y0) v = value();
  std::vector<uint16_t> xh(x.size()), wh(w.size());
  for (size_t i = 0; i < x.size(); ++i) xh[i] = encode(x[i], xt.value_or(t));
  for (size_t i = 0; i < w.size(); ++i) wh[i] = encode(w[i], t);

  uint16_t *dx, *dw;
  float* dy;
  check_cuda(cudaMalloc(&dx, xh.size() * 2));
  check_cuda(cudaMalloc(&dw, wh.size() * 2));
  check_cuda(cudaMalloc(&dy, y0.size() * 4));
  check_cuda(cudaMemcpy(dx, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  check_cuda(cudaMemcpy(dw, wh.data(), wh.size() * 2, cudaMemcpyHostToDevice));
  check_cuda(cudaMemcpy(dy, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
  if (config) {
    cuda::gemv(dx, xt.value_or(t), dw, t, m, k, dy, beta, nullptr, *config);
  } else {
    cuda::Gemm gemm(nullptr);
    gemm.linear(dx, ldx, dw, t, m, k, n, dy, m, beta);
  }
  std::vector<float> y(y0.size());
  check_cuda(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);

  int bad = 0;
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < m; ++c) {
      double want = beta * y0[static_cast<size_t>(r) * m + c];
      for (int i = 0; i < k; ++i) want += static_cast<double>(x[static_cast<size_t>(r) * ldx + i]) * w[static_cast<size_t>(c) * k + i];
      const float got = y[static_cast<size_t>(r) * m + c];
      if (got != static_cast<float>(want) && ++bad <= 5)
        ADD_FAILURE() << "m " << m << " k " << k << " n " << n << " beta " << beta << ": Y[" << r << "][" << c
                      << "] = " << got << ", want " << want;
    }
  EXPECT_EQ(bad, 0);
}

TEST(Gemm, SmallBatchesAndCublasAreExactOnExactInputs) {
  REQUIRE_GPU();
  for (cuda::GemmType t : {cuda::GemmType::FP16, cuda::GemmType::BF16})
    for (const Shape& sh : {Shape{1000, 4104, 1, 0.0f}, Shape{16401, 1032, 1, 1.0f},  // one row: both widths
                            Shape{37, 256, 1, 1.0f}, Shape{515, 1032, 3, 1.0f},       // cuBLAS
                            Shape{300, 100, 1, 1.0f}})                                // k % 8 != 0: cuBLAS
      expect_exact(sh, t);
}

TEST(Gemm, EveryStreamingConfigurationIsExact) {
  REQUIRE_GPU();
  // k = 4104 leaves a partial round of loads for every U; m = 1001 a partial block and warp.
  // As the backend launches them: each scheduled while the one before it runs.
  kernels::set_programmatic_launch(true);
  for (const cuda::GemvConfig c : {cuda::GemvConfig{1, 2}, cuda::GemvConfig{1, 4}, cuda::GemvConfig{1, 8},
                                   cuda::GemvConfig{1, 16}, cuda::GemvConfig{2, 2}, cuda::GemvConfig{2, 4},
                                   cuda::GemvConfig{2, 8}, cuda::GemvConfig{1, 2, 2}, cuda::GemvConfig{1, 4, 2},
                                   cuda::GemvConfig{1, 2, 4}}) {
    SCOPED_TRACE(testing::Message() << c.rows_per_warp << " rows per warp, " << c.loads_per_lane << " loads, "
                                    << c.k_splits << " parts of k");
    expect_exact(Shape{1001, 4104, 1, 1.0f}, cuda::GemmType::FP16, &c);
    expect_exact(Shape{64, 1032, 1, 0.0f}, cuda::GemmType::BF16, &c);
    // k = 576 (72 vectors): with 4 parts of 32, the last part is empty.
    expect_exact(Shape{577, 576, 1, 1.0f}, cuda::GemmType::FP16, &c);
    // A bf16 row with fp16 weights (the attention output into the output projection).
    expect_exact(Shape{1001, 4104, 1, 1.0f}, cuda::GemmType::FP16, &c, cuda::GemmType::BF16);
  }
  kernels::set_programmatic_launch(false);
  EXPECT_THROW(cuda::gemv(nullptr, nullptr, cuda::GemmType::FP16, 8, 8, nullptr, 0.0f, nullptr, {2, 16}),
               std::invalid_argument);
}

TEST(Gemm, BlockKernelIsExact) {
  REQUIRE_GPU();
  kernels::set_programmatic_launch(true);
  for (int g : {2, 4, 8}) {
    SCOPED_TRACE(testing::Message() << g << " rows a group");
    const cuda::GemvConfig c{0, 0, 1, g};
    // m = 8191: more groups than one wave of blocks, a partial last group.
    expect_exact(Shape{8191, 4096, 1, 1.0f}, cuda::GemmType::FP16, &c);
    expect_exact(Shape{1001, 4096, 1, 0.0f}, cuda::GemmType::BF16, &c);
    expect_exact(Shape{1001, 4096, 1, 1.0f}, cuda::GemmType::FP16, &c, cuda::GemmType::BF16);
    // Fewer rows than a group; k of 72 vectors, most threads without one.
    expect_exact(Shape{1, 576, 1, 1.0f}, cuda::GemmType::FP16, &c);
    expect_exact(Shape{577, 576, 1, 0.0f}, cuda::GemmType::BF16, &c);
    if (g <= 4) expect_exact(Shape{1001, 4104, 1, 1.0f}, cuda::GemmType::FP16, &c);  // 3 of 4 vectors a thread
    if (g == 2) expect_exact(Shape{67, 14336, 1, 1.0f}, cuda::GemmType::BF16, &c);   // 7 of 8
  }
  kernels::set_programmatic_launch(false);
  // Eight rows of 4 vectors a thread would be 32 loads a thread in flight: no such kernel.
  EXPECT_THROW(cuda::gemv(nullptr, nullptr, cuda::GemmType::FP16, 8, 8192, nullptr, 0.0f, nullptr, {0, 0, 1, 8}),
               std::invalid_argument);
  EXPECT_EQ(cuda::gemv_config(4096, 4, 8).block_rows, 8);
  EXPECT_EQ(cuda::gemv_config(8192, 4, 8).block_rows, 0);  // the per-warp kernel instead
  EXPECT_EQ(cuda::gemv_config(14336, 4, 2).block_rows, 2);
  EXPECT_EQ(cuda::gemv_config(16392, 4, 2).block_rows, 0);
}

constexpr float kEps = 1e-5f;

// 1 / sqrt(mean(x^2) + kEps) in double: the RMS norm's scale.
double inv_rms(const std::vector<float>& x) {
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  return 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + kEps);
}

// gemv() of a normed float32 row (GemvInput::rms_normed) against the same in double: the inputs
// are multiples of 1/16, so the products, the sums and the sum of squares are exact in float32,
// and only the scale's few float32 operations round (a few units in float32's last place).
void expect_normed(const Shape& sh, cuda::GemmType t, const cuda::GemvConfig& c) {
  const auto [m, k, n, beta] = sh;
  SCOPED_TRACE(testing::Message() << "m " << m << " k " << k << " beta " << beta);
  std::mt19937 rng(m * 17 + k);
  auto value = [&] { return static_cast<float>(static_cast<int>(rng() % 17) - 8) / 16.0f; };
  std::vector<float> x(k), w(static_cast<size_t>(m) * k), y0(m);
  for (float& v : x) v = value();
  for (float& v : w) v = value();
  for (float& v : y0) v = value();
  std::vector<uint16_t> wh(w.size());
  for (size_t i = 0; i < w.size(); ++i) wh[i] = encode(w[i], t);
  float *dx, *dy;
  uint16_t* dw;
  check_cuda(cudaMalloc(&dx, x.size() * 4));
  check_cuda(cudaMalloc(&dw, wh.size() * 2));
  check_cuda(cudaMalloc(&dy, y0.size() * 4));
  check_cuda(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  check_cuda(cudaMemcpy(dw, wh.data(), wh.size() * 2, cudaMemcpyHostToDevice));
  check_cuda(cudaMemcpy(dy, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
  cuda::gemv(cuda::GemvInput::rms_normed(dx, kEps), dw, t, m, k, dy, beta, nullptr, c);
  std::vector<float> y(m);
  check_cuda(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  const double scale = inv_rms(x);
  int bad = 0;
  for (int r = 0; r < m; ++r) {
    double dot = 0;
    for (int i = 0; i < k; ++i) dot += double(x[i]) * w[static_cast<size_t>(r) * k + i];
    const double want = dot * scale + beta * y0[r];
    if (!(std::abs(y[r] - want) <= 1e-6 * (std::abs(dot * scale) + std::abs(beta * y0[r])) + 1e-30) && ++bad <= 5)
      ADD_FAILURE() << "y[" << r << "] = " << y[r] << ", want " << want;
  }
  EXPECT_EQ(bad, 0);
}

float decode(uint16_t h, cuda::GemmType t) {
  if (t == cuda::GemmType::FP16) return __half2float(__ushort_as_half(h));
  const uint32_t u = uint32_t{h} << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

// gemv_gated against gemv() into float32 followed by gated_activation() (bit for bit), and against
// the activation of the exact sums computed here in double (within one unit in the last place of
// the 16-bit output). normed: x is a float32 row under the RMS norm (GemvInput::rms_normed), and
// the sums are scaled by its 1 / rms, computed here in double too.
void expect_gated(int d_ff, int k, cuda::GemmType t, bool gelu, const cuda::GemvConfig& c, bool normed = false) {
  SCOPED_TRACE(testing::Message() << "d_ff " << d_ff << " k " << k << (gelu ? " gelu" : " silu")
                                  << (t == cuda::GemmType::FP16 ? " fp16" : " bf16") << (normed ? " normed" : ""));
  const int m = 2 * d_ff;
  std::mt19937 rng(d_ff * 13 + k);
  auto value = [&] { return static_cast<float>(static_cast<int>(rng() % 17) - 8) / 16.0f; };
  std::vector<float> x(k), w(static_cast<size_t>(m) * k);
  for (float& v : x) v = value();
  for (float& v : w) v = value();
  std::vector<uint16_t> xh(k), wh(w.size());
  for (int i = 0; i < k; ++i) xh[i] = encode(x[i], t);
  for (size_t i = 0; i < w.size(); ++i) wh[i] = encode(w[i], t);
  uint16_t *dx, *dw, *fused, *apart;
  float *dy, *dxf;
  check_cuda(cudaMalloc(&dx, xh.size() * 2));
  check_cuda(cudaMalloc(&dxf, x.size() * 4));
  check_cuda(cudaMalloc(&dw, wh.size() * 2));
  check_cuda(cudaMalloc(&fused, d_ff * 2));
  check_cuda(cudaMalloc(&apart, d_ff * 2));
  check_cuda(cudaMalloc(&dy, m * 4));
  check_cuda(cudaMemcpy(dx, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
  check_cuda(cudaMemcpy(dxf, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
  check_cuda(cudaMemcpy(dw, wh.data(), wh.size() * 2, cudaMemcpyHostToDevice));
  check_cuda(cudaMemset(fused, 0xff, d_ff * 2));  // NaN in both types: a row left unwritten shows
  const cuda::GemvInput in = normed ? cuda::GemvInput::rms_normed(dxf, kEps) : cuda::GemvInput{dx, t};
  cuda::gemv_gated(in, dw, t, d_ff, k, fused, gelu, nullptr, c);
  cuda::gemv(in, dw, t, m, k, dy, 0.0f, nullptr, c);
  cuda::gated_activation(dy, 1, d_ff, gelu, apart, t, nullptr);
  std::vector<uint16_t> got(d_ff), want(d_ff);
  check_cuda(cudaMemcpy(got.data(), fused, d_ff * 2, cudaMemcpyDeviceToHost));
  check_cuda(cudaMemcpy(want.data(), apart, d_ff * 2, cudaMemcpyDeviceToHost));
  for (void* p : {static_cast<void*>(dx), static_cast<void*>(dxf), static_cast<void*>(dw), static_cast<void*>(fused),
                  static_cast<void*>(apart), static_cast<void*>(dy)})
    cudaFree(p);
  const double ulp = t == cuda::GemmType::FP16 ? 1.0 / 1024 : 1.0 / 128;
  const double scale = normed ? inv_rms(x) : 1.0;
  int bad = 0;
  for (int j = 0; j < d_ff; ++j) {
    double g = 0, u = 0;
    for (int i = 0; i < k; ++i) {
      g += double(x[i]) * w[static_cast<size_t>(2 * j) * k + i];  // gate and up rows interleaved
      u += double(x[i]) * w[static_cast<size_t>(2 * j + 1) * k + i];
    }
    g *= scale;
    u *= scale;
    const double a = gelu ? 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) : g / (1 + std::exp(-g));
    const double host = a * u, dev = decode(got[j], t);
    if ((got[j] != want[j] || !(std::abs(dev - host) <= ulp * std::abs(host) + 1e-5)) && ++bad <= 5)
      ADD_FAILURE() << "act[" << j << "] = " << dev << ", apart " << decode(want[j], t) << ", host " << host;
  }
  EXPECT_EQ(bad, 0);
}

TEST(Gemm, GatedKernelIsTheProjectionThenTheActivation) {
  REQUIRE_GPU();
  kernels::set_programmatic_launch(true);
  for (const cuda::GemvConfig c : {cuda::GemvConfig{1, 2}, cuda::GemvConfig{1, 4}, cuda::GemvConfig{1, 8},
                                   cuda::GemvConfig{1, 16}, cuda::GemvConfig{1, 2, 2}, cuda::GemvConfig{1, 4, 2},
                                   cuda::GemvConfig{1, 2, 4}}) {
    SCOPED_TRACE(testing::Message() << c.loads_per_lane << " loads, " << c.k_splits << " parts of k");
    ASSERT_TRUE(cuda::gemv_gated_supports(c));
    // 1001 pairs: a partial last block; k = 4104 a partial round of loads; k = 576 (SmolLM2's), an
    // empty last part at 4 parts; 3 pairs, fewer than a block's.
    for (bool gelu : {false, true}) {
      expect_gated(1001, 4104, cuda::GemmType::FP16, gelu, c);
      expect_gated(1001, 4104, cuda::GemmType::BF16, gelu, c);
      expect_gated(3, 576, gelu ? cuda::GemmType::BF16 : cuda::GemmType::FP16, gelu, c);
    }
  }
  kernels::set_programmatic_launch(false);
  // Two rows a warp, and the block kernel: no gated kernel.
  EXPECT_FALSE(cuda::gemv_gated_supports({2, 2}));
  EXPECT_FALSE(cuda::gemv_gated_supports({0, 0, 1, 4}));
  EXPECT_THROW(cuda::gemv_gated(nullptr, nullptr, cuda::GemmType::FP16, 8, 4096, nullptr, false, nullptr, {2, 2}),
               std::invalid_argument);
  // The backend's configuration at Llama-3.1-8B's gate/up (28,672 x 4,096) and SmolLM2's (3,072 x 576).
  EXPECT_TRUE(cuda::gemv_gated_supports(cuda::gemv_config(4096, cuda::kMaxGemvSplits,
                                                          cuda::gemv_block_rows(28672, 4096))));
  EXPECT_TRUE(cuda::gemv_gated_supports(cuda::gemv_config(576, cuda::kMaxGemvSplits, cuda::gemv_block_rows(3072, 576))));
}

TEST(Gemm, NormedInputIsTheNormThenTheProjection) {
  REQUIRE_GPU();
  kernels::set_programmatic_launch(true);
  for (const cuda::GemvConfig c : {cuda::GemvConfig{1, 2}, cuda::GemvConfig{1, 8}, cuda::GemvConfig{2, 4},
                                   cuda::GemvConfig{1, 2, 2}, cuda::GemvConfig{1, 2, 4}}) {
    SCOPED_TRACE(testing::Message() << c.rows_per_warp << " rows per warp, " << c.loads_per_lane << " loads, "
                                    << c.k_splits << " parts of k");
    expect_normed(Shape{1001, 4104, 1, 0.0f}, cuda::GemmType::FP16, c);
    expect_normed(Shape{64, 1032, 1, 1.0f}, cuda::GemmType::BF16, c);
    expect_normed(Shape{577, 576, 1, 0.0f}, cuda::GemmType::FP16, c);  // an empty last part at 4 parts
  }
  for (int g : {2, 4, 8}) {
    SCOPED_TRACE(testing::Message() << g << " rows a group");
    const cuda::GemvConfig c{0, 0, 1, g};
    expect_normed(Shape{8191, 4096, 1, 0.0f}, cuda::GemmType::FP16, c);  // more groups than a wave
    expect_normed(Shape{1001, 4096, 1, 1.0f}, cuda::GemmType::BF16, c);
    expect_normed(Shape{577, 576, 1, 0.0f}, cuda::GemmType::FP16, c);  // most threads without a vector
    if (g <= 4) expect_normed(Shape{1001, 4104, 1, 0.0f}, cuda::GemmType::BF16, c);
  }
  // The gated kernel on a normed row, against gemv() on it then the activation, and in double.
  for (const cuda::GemvConfig c : {cuda::GemvConfig{1, 2}, cuda::GemvConfig{1, 4, 2}, cuda::GemvConfig{1, 2, 4}}) {
    expect_gated(1001, 4104, cuda::GemmType::FP16, false, c, true);
    expect_gated(3, 576, cuda::GemmType::BF16, true, c, true);
  }
  kernels::set_programmatic_launch(false);
}

TEST(Gemm, BlockKernelOnlyOnSmallMatricesWithLongRows) {
  // Llama-3.1-8B: QKV (48 MiB) and the output projection (32 MiB) on it, gate/up (224 MiB), down
  // (112 MiB) and the LM head (1002 MiB) not.
  EXPECT_EQ(cuda::gemv_block_rows(6144, 4096), cuda::kGemvBlockRows);
  EXPECT_EQ(cuda::gemv_block_rows(4096, 4096), cuda::kGemvBlockRows);
  EXPECT_EQ(cuda::gemv_block_rows(28672, 4096), 0);
  EXPECT_EQ(cuda::gemv_block_rows(4096, 14336), 0);
  EXPECT_EQ(cuda::gemv_block_rows(128256, 4096), 0);
  EXPECT_EQ(cuda::gemv_block_rows(8192, 4096), cuda::kGemvBlockRows);  // 64 MiB exactly
  EXPECT_EQ(cuda::gemv_block_rows(8193, 4096), 0);
  // Rows shorter than a piece for each of a block's 256 threads: SmolLM2 (k = 576) keeps the
  // per-warp kernel.
  EXPECT_EQ(cuda::gemv_block_rows(1536, 576), 0);
  EXPECT_EQ(cuda::gemv_block_rows(1024, 2040), 0);
  EXPECT_EQ(cuda::gemv_block_rows(1024, 2048), cuda::kGemvBlockRows);
  EXPECT_EQ(cuda::gemv_block_rows(6144, 4096, 2, int64_t{32} << 20), 0);
  EXPECT_EQ(cuda::gemv_block_rows(6144, 4096, 2, int64_t{48} << 20), 2);
}

TEST(Gemm, RowsSharedByWarpsOnlyWhereEachKeepsTwoRoundsOfLoads) {
  // kGemvConfig's 2 loads a lane: a part needs 128 vectors of 8 elements.
  EXPECT_EQ(cuda::gemv_config(4096, 4).k_splits, 4);   // Llama-3.1-8B's QKV, output, gate/up, LM head
  EXPECT_EQ(cuda::gemv_config(14336, 4).k_splits, 4);  // its down projection
  EXPECT_EQ(cuda::gemv_config(4088, 4).k_splits, 2);
  EXPECT_EQ(cuda::gemv_config(2048, 4).k_splits, 2);
  EXPECT_EQ(cuda::gemv_config(2040, 4).k_splits, 1);
  EXPECT_EQ(cuda::gemv_config(576, 4).k_splits, 1);    // SmolLM2
  EXPECT_EQ(cuda::gemv_config(4096, 2).k_splits, 2);   // no more than asked
  EXPECT_EQ(cuda::gemv_config(4096, 1).k_splits, 1);   // shared rows off
  const cuda::GemvConfig c = cuda::gemv_config(4096, 4);
  EXPECT_EQ(c.rows_per_warp, cuda::kGemvConfig.rows_per_warp);
  EXPECT_EQ(c.loads_per_lane, cuda::kGemvConfig.loads_per_lane);
}

TEST(Gemm, StreamingKernelTakesOnlyAlignedSingleRows) {
  alignas(16) static uint16_t buf[64];
  EXPECT_TRUE(cuda::gemv_supports(buf, buf, 16, 1));
  EXPECT_FALSE(cuda::gemv_supports(buf, buf, 16, 2));
  EXPECT_FALSE(cuda::gemv_supports(buf, buf, 12, 1));      // k not a multiple of 8
  EXPECT_FALSE(cuda::gemv_supports(buf + 1, buf, 16, 1));  // misaligned x
  EXPECT_FALSE(cuda::gemv_supports(buf, buf + 4, 16, 1));  // misaligned W
}

}  // namespace
}  // namespace hs

#else  // built without CUDA

TEST(Gemm, NotBuilt) { GTEST_SKIP() << "headshard was built without the CUDA backend"; }

#endif
