// Packed weights (matrices kept in the file's form, one of simd::kReadable: F16, BF16, Q4_0 to Q8_0,
// Q2_K to Q6_K) against the same matrices dequantized to float32 first: the CPU backend's products,
// and its logits on both real models, must be equal bit for bit, as the packed kernels claim (the
// float32 path is the one test_cpu_forward checks against a float64 reference).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "engine/forward_runner.h"
#include "model/dequant.h"
#include "model/dequant_simd.h"
#include "shard/shard_plan.h"
#include "packed_matrix.h"
#include "test_util.h"

namespace hs {
namespace {

Matrix float32_of(const Matrix& p) {
  Matrix f;
  f.rows = p.rows;
  f.cols = p.cols;
  f.data.resize(p.rows * p.cols);
  dequantize_portable(p.type, p.blocks.data(), f.data.data(), p.rows * p.cols);
  return f;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(PackedWeights, MatmulEqualsFloat32BitForBit) {
  using Shapes = std::vector<std::pair<int64_t, int64_t>>;
  const Shapes small_blocks = {{37, 64}, {64, 576}, {203, 1536}}, super_blocks = {{37, 256}, {64, 1024}, {203, 2048}};
  for (GgmlType type : simd::kReadable)
    for (auto [rows, cols] : ggml_type_info(static_cast<uint32_t>(type))->block_elems == 256 ? super_blocks : small_blocks)
      for (int64_t n : {1, 2, 3, 5, 16}) {
        SCOPED_TRACE(ggml_type_name(type) + " " + std::to_string(rows) + "x" + std::to_string(cols) + ", " +
                     std::to_string(n) + " input rows");
        const Matrix packed = test::random_packed(type, rows, cols, rows * 31 + n);
        const Matrix f32 = float32_of(packed);
        std::mt19937 rng(static_cast<uint32_t>(n));
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        std::vector<float> x(n * cols);
        for (float& v : x) v = u(rng);
        std::vector<float> want(n * rows), got(n * rows, -1.0f);
        cpu::matmul(x.data(), n, f32, want.data());
        cpu::matmul(x.data(), n, packed, got.data());
        EXPECT_TRUE(same_bits(got, want));
        // One input row (a decode step) takes the fused kernel: each result a float32 dot product.
        if (n == 1)
          for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(got[r], cpu::dot(x.data(), f32.row(r), cols)) << "row " << r;
      }
}

TEST(PackedWeights, RowsAsFloat32) {
  const Matrix packed = test::random_packed(GgmlType::Q4_1, 9, 64, 5);
  const Matrix f32 = float32_of(packed);
  std::vector<float> got(3 * 64);
  packed.rows_f32(4, 3, got.data());
  EXPECT_EQ(0, std::memcmp(got.data(), f32.row(4), got.size() * sizeof(float)));
  f32.rows_f32(4, 3, got.data());
  EXPECT_EQ(0, std::memcmp(got.data(), f32.row(4), got.size() * sizeof(float)));
}

// The real models' files: which matrices stay packed, and that the backend's logits are the
// float32 weights' logits.
void expect_packed_equals_float32(const Model& m) {
  const std::shared_ptr<const ModelWeights> f32 = m.weights->unpacked();
  EXPECT_FALSE(f32->token_embd.packed());
  EXPECT_LT(m.weights->bytes() * 3, f32->bytes());

  // A prefill chunk with every position's logits, then two sequences decoding together.
  auto packed_be = make_cpu_backend(m.weights), f32_be = make_cpu_backend(f32);
  const ShardPlan plan = dense_plan(m.config.n_layers, m.config.n_kv_heads, 16);
  ForwardRunner a(*packed_be, plan, 64 << 20), b(*f32_be, plan, 64 << 20);
  std::mt19937 rng(3);
  auto tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % m.config.vocab_size);
    return t;
  };
  std::vector<Batch> steps(3);
  steps[0].chunks.push_back({1, 0, tokens(21), true});
  steps[1].chunks.push_back({1, 21, tokens(1), false});
  steps[1].chunks.push_back({2, 0, tokens(5), false});
  steps[2].chunks.push_back({1, 22, tokens(1), false});
  for (size_t s = 0; s < steps.size(); ++s) {
    const Logits& want = b.forward(steps[s]);
    const Logits& got = a.forward(steps[s]);
    EXPECT_TRUE(same_bits(got.data, want.data)) << "step " << s;
  }
}

TEST(PackedWeights, SmolLM2RunsAsFloat32) {
  HS_MODEL_OR_SKIP(path, test::kSmolLM2File);
  const Model& m = test::cached_model(path);
  // Every layer matrix is Q4_1, the (tied) embedding Q8_0: all packed where the CPU has AVX2.
  if (!simd::have_avx2()) GTEST_SKIP() << "no AVX2: nothing is packed";
  EXPECT_EQ(m.weights->token_embd.type, GgmlType::Q8_0);
  for (const LayerWeights& l : m.weights->layers)
    for (const Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) ASSERT_EQ(w->type, GgmlType::Q4_1);
  expect_packed_equals_float32(m);
}

TEST(PackedWeights, Gemma3RunsAsFloat32) {
  HS_MODEL_OR_SKIP(path, test::kGemma3File);
  const Model& m = test::cached_model(path);
  if (!simd::have_avx2()) GTEST_SKIP() << "no AVX2: nothing is packed";
  // Its Q4_K_M file mixes Q5_0, Q8_0, Q4_K and Q6_K matrices: each kind packed at least once.
  std::set<GgmlType> kinds;
  for (const LayerWeights& l : m.weights->layers)
    for (const Matrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) kinds.insert(w->type);
  kinds.insert(m.weights->token_embd.type);
  EXPECT_EQ(kinds, (std::set<GgmlType>{GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K}));
  expect_packed_equals_float32(m);
}

}  // namespace
}  // namespace hs
