// The fused single-row GEMVs (gemv.h's gemv_fused) against the unfused kernels they replace, run
// on the same random inputs: residual_norm then gemv (the pre-norm folded in), gemv then
// gated_activation (the activation folded in), convert_bf16 then gemv (the bf16 attention output
// read as it is). Every fused form is designed to give the same bits, so outputs are compared bit
// for bit, at Llama-3.1-8B's shapes and at small odd ones (k not a multiple of 256, a partial
// block of rows). A float64 host reference checks that the oracle itself computes the layer.
// Skips cleanly without a GPU or a CUDA build.
#include <gtest/gtest.h>

#ifdef HEADSHARD_WITH_CUDA

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/gemv.h"
#include "backend/cuda/model_kernels.h"
#include "cuda/bf16_host.h"
#include "cuda/gpu_test.h"
#include "sharded_attention.h"

namespace hs {
namespace {

using cuda::FusedGemv;
using cuda::GemmType;
using Input = FusedGemv::Input;

uint16_t encode(float v, GemmType t) {
  return t == GemmType::FP16 ? __half_as_ushort(__float2half_rn(v)) : test::to_bf16(v);
}
double decode(uint16_t v, GemmType t) {
  return t == GemmType::FP16 ? static_cast<double>(__half2float(__ushort_as_half(v))) : test::from_bf16(v);
}

// A device copy of a host vector, freed at scope end.
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& h) : n(h.size()) {
    test::check_cuda(cudaMalloc(&p, n * sizeof(T)));
    test::check_cuda(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  explicit Dev(size_t count) : n(count) {
    test::check_cuda(cudaMalloc(&p, n * sizeof(T)));
    test::check_cuda(cudaMemset(p, 0, n * sizeof(T)));
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<T> host() const {
    std::vector<T> h(n);
    test::check_cuda(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

// Bits of two equal-length arrays; reports the first few differences.
template <typename T>
void expect_same_bits(const std::vector<T>& fused, const std::vector<T>& unfused, const std::string& what) {
  ASSERT_EQ(fused.size(), unfused.size());
  int bad = 0;
  for (size_t i = 0; i < fused.size(); ++i)
    if (std::memcmp(&fused[i], &unfused[i], sizeof(T)) != 0 && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " differs (fused " << +fused[i] << ", unfused " << +unfused[i]
                    << ")";
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << fused.size() << " elements differ";
}

struct Case {
  Input input;
  bool gated;  // act output over a gate/up W (else y, with beta)
  int m, k;
  GemmType t;
  float beta = 0.0f;
  bool gelu = false;
};

std::string name(const Case& c) {
  const char* in = c.input == Input::Norm ? "norm" : c.input == Input::Bf16 ? "bf16" : "half16";
  return std::string(in) + (c.gated ? (c.gelu ? "->gelu" : "->silu") : "->y") + " m " + std::to_string(c.m) + " k " +
         std::to_string(c.k) + (c.t == GemmType::FP16 ? " fp16" : " bf16") + " beta " + std::to_string(c.beta);
}

// Runs the case fused and unfused on the same random inputs and compares the bits; checks the
// unfused result against a float64 host reference of the layer (relative error of the output
// vector, bounded by the 16-bit roundings of the inputs and of act's output).
void run_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(name(c));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int m = c.m, k = c.k;
  // Weights ~ N(0, 1/k) so outputs stay O(1); the residual row at the scale of a real one (~0.5).
  std::vector<uint16_t> w(static_cast<size_t>(m) * k);
  for (auto& v : w) v = encode(normal(rng) / std::sqrt(static_cast<float>(k)), c.t);
  std::vector<float> x_float(k), norm_w(k), y0(m);
  for (auto& v : x_float) v = 0.5f * normal(rng);
  for (auto& v : norm_w) v = 1.0f + 0.2f * normal(rng);
  for (auto& v : y0) v = normal(rng);
  // bf16 attention outputs: mostly O(0.1), with some tiny ones (below fp16's normal range, where
  // rounding to fp16 is not exact) to show the fused path rounds them as convert_bf16 does.
  std::vector<uint16_t> x_bf16(k), x_half(k);
  for (int i = 0; i < k; ++i) {
    const float v = i % 97 == 5 ? 1e-6f * normal(rng) : 0.1f * normal(rng);
    x_bf16[i] = test::to_bf16(v);
    x_half[i] = encode(0.3f * normal(rng), c.t);
  }
  const float eps = 1e-5f;
  const int ff = m / 2;

  Dev<uint16_t> dw(w), dx_bf16(x_bf16), dx_half(x_half), h(static_cast<size_t>(k)), act_unfused(ff), act_fused(ff);
  Dev<float> dx_float(x_float), dnorm(norm_w), y_unfused(y0), y_fused(y0), gu(static_cast<size_t>(m));

  kernels::set_programmatic_launch(true);  // as the backend launches them
  // Unfused: the input step, the GEMV, the output step.
  const uint16_t* gemv_in = dx_half.p;
  if (c.input == Input::Norm) {
    cuda::residual_norm(dx_float.p, nullptr, nullptr, dnorm.p, h.p, c.t, 1, k, eps, nullptr);
    gemv_in = h.p;
  } else if (c.input == Input::Bf16) {
    cuda::convert_bf16(reinterpret_cast<const cuda::bf16*>(dx_bf16.p), h.p, c.t, k, nullptr);
    gemv_in = h.p;
  }
  if (c.gated) {
    cuda::gemv(gemv_in, dw.p, c.t, m, k, gu.p, 0.0f, nullptr, cuda::kGemvConfig);
    cuda::gated_activation(gu.p, 1, ff, c.gelu, act_unfused.p, c.t, nullptr);
  } else {
    cuda::gemv(gemv_in, dw.p, c.t, m, k, y_unfused.p, c.beta, nullptr, cuda::kGemvConfig);
  }
  // Fused.
  FusedGemv f;
  f.input = c.input;
  f.x = c.input == Input::Norm ? static_cast<const void*>(dx_float.p)
        : c.input == Input::Bf16 ? static_cast<const void*>(dx_bf16.p)
                                 : static_cast<const void*>(dx_half.p);
  f.norm_weight = c.input == Input::Norm ? dnorm.p : nullptr;
  f.eps = eps;
  if (c.gated) f.act = act_fused.p, f.gelu = c.gelu;
  else f.y = y_fused.p, f.beta = c.beta;
  ASSERT_TRUE(cuda::gemv_fused_supports(f, dw.p, m, k));
  cuda::gemv_fused(f, dw.p, c.t, m, k, nullptr);
  kernels::set_programmatic_launch(false);
  test::check_cuda(cudaDeviceSynchronize());

  if (c.gated) expect_same_bits(act_fused.host(), act_unfused.host(), "act");
  else expect_same_bits(y_fused.host(), y_unfused.host(), "y");

  // The oracle against float64: the layer's input as the 16-bit type, then the products.
  std::vector<double> in(k);
  if (c.input == Input::Norm) {
    double ss = 0;
    for (float v : x_float) ss += static_cast<double>(v) * v;
    const double s = 1.0 / std::sqrt(ss / k + eps);
    for (int i = 0; i < k; ++i) in[i] = x_float[i] * s * norm_w[i];
  } else if (c.input == Input::Bf16) {
    for (int i = 0; i < k; ++i) in[i] = test::from_bf16(x_bf16[i]);
  } else {
    for (int i = 0; i < k; ++i) in[i] = decode(x_half[i], c.t);
  }
  std::vector<double> proj(m);
  for (int r = 0; r < m; ++r) {
    double acc = 0;
    for (int i = 0; i < k; ++i) acc += decode(w[static_cast<size_t>(r) * k + i], c.t) * in[i];
    proj[r] = acc;
  }
  std::vector<double> want;
  std::vector<double> got;
  if (c.gated) {
    const auto a = act_unfused.host();
    for (int i = 0; i < ff; ++i) {
      const double g = proj[i], u = proj[ff + i];
      const double act = c.gelu ? 0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)))
                                : g / (1.0 + std::exp(-g));
      want.push_back(act * u);
      got.push_back(decode(a[i], c.t));
    }
  } else {
    const auto y = y_unfused.host();
    for (int r = 0; r < m; ++r) {
      want.push_back(proj[r] + c.beta * y0[r]);
      got.push_back(y[r]);
    }
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  // The 16-bit input (the normed h is rounded on the GPU, not in the reference) and act's output
  // rounding: about 2^-8 relative for bf16, 2^-11 for fp16; float32 sums add far less.
  const double bound = c.t == GemmType::FP16 ? 2e-3 : 1.5e-2;
  EXPECT_LT(std::sqrt(num / den), bound) << "the unfused kernels strayed from the float64 reference";
}

TEST(FusedGemv, EqualsTheUnfusedKernelsBitForBitAtLlama8bShapes) {
  REQUIRE_GPU();
  const GemmType h = GemmType::FP16;
  run_case({Input::Norm, false, 6144, 4096, h}, 1);          // pre-norm + QKV
  run_case({Input::Norm, true, 28672, 4096, h}, 2);          // pre-norm + gate/up + SiLU
  run_case({Input::Half16, true, 28672, 4096, h}, 3);        // gate/up + SiLU (norm fusion off)
  run_case({Input::Norm, false, 28672, 4096, h}, 4);         // pre-norm + gate/up (act fusion off)
  run_case({Input::Bf16, false, 4096, 4096, h, 1.0f}, 5);    // wo from bf16, residual add
}

TEST(FusedGemv, EqualsTheUnfusedKernelsBitForBitAtSmallOddShapes) {
  REQUIRE_GPU();
  int seed = 10;
  for (GemmType t : {GemmType::FP16, GemmType::BF16}) {
    // k = 136 and 4104: not multiples of 256 (a partial round of loads); m = 70: a partial block
    // of rows (and of gate/up pairs); k = 8192: the largest width the norm fusion takes.
    for (int k : {136, 4104})
      for (Input in : {Input::Norm, Input::Bf16, Input::Half16}) {
        run_case({in, false, 70, k, t, 0.0f}, ++seed);
        run_case({in, false, 37, k, t, 1.0f}, ++seed);
        run_case({in, true, 70, k, t, 0.0f, false}, ++seed);
        run_case({in, true, 70, k, t, 0.0f, true}, ++seed);
      }
    run_case({Input::Norm, true, 2 * 1040, 8192, t}, ++seed);
  }
}

TEST(FusedGemv, SupportsOnlyWhatItCanDoExactly) {
  alignas(16) static uint16_t buf[64];
  alignas(16) static float y[64];
  FusedGemv f;
  f.x = buf;
  f.y = y;
  EXPECT_TRUE(cuda::gemv_fused_supports(f, buf, 10, 16));
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf, 10, 12));      // k not a multiple of 8
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf + 1, 10, 16));  // misaligned W
  f.beta = 0.5f;
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf, 10, 16));  // beta other than 0 or 1
  f.beta = 1.0f;
  f.act = buf;
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf, 10, 16));  // two outputs
  f.y = nullptr;
  EXPECT_TRUE(cuda::gemv_fused_supports(f, buf, 10, 16));
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf, 11, 16));  // gate/up rows must pair up
  f.input = Input::Norm;
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf, 10, 16));  // no norm weight
  f.norm_weight = y;
  EXPECT_TRUE(cuda::gemv_fused_supports(f, buf, 10, 16));
  EXPECT_TRUE(cuda::gemv_fused_supports(f, buf, 10, 8192));
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf, 10, 8200));  // residual_norm's wide kernel sums otherwise
  f.input = Input::Half16;
  EXPECT_FALSE(cuda::gemv_fused_supports(f, buf, 10, 32768));  // x over 48 KiB of shared memory
  EXPECT_THROW(cuda::gemv_fused(f, buf, GemmType::FP16, 11, 16, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace hs

#else  // built without CUDA

TEST(FusedGemv, NotBuilt) { GTEST_SKIP() << "headshard was built without the CUDA backend"; }

#endif
