// The CPU backend against a naive float64 transformer written here from the model definitions,
// on small synthetic llama and Gemma 3 models; and the batch contract: chunked prefill, decode
// and batching give the same logits as one pass.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "engine/forward_runner.h"
#include "model/config.h"
#include "model/weights.h"

namespace hs {
namespace {

using Vec = std::vector<double>;

// y = W x for a Matrix of rows x cols.
Vec linear(const Matrix& W, const Vec& x) {
  Vec y(W.rows, 0.0);
  for (int64_t r = 0; r < W.rows; ++r)
    for (int64_t c = 0; c < W.cols; ++c) y[r] += static_cast<double>(W.row(r)[c]) * x[c];
  return y;
}

Vec rmsnorm(const Vec& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
  return y;
}

void rotate(double* v, int dims, int pos, double base, bool neox) {
  for (int i = 0; i < dims / 2; ++i) {
    const double theta = pos * std::pow(base, -2.0 * i / dims);
    const int a = neox ? i : 2 * i, b = neox ? i + dims / 2 : 2 * i + 1;
    const double x0 = v[a], x1 = v[b];
    v[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
    v[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
  }
}

// Logits for every position of one sequence, computed token by token with a plain KV list.
std::vector<Vec> reference_logits(const ModelWeights& w, const std::vector<int32_t>& tokens) {
  const ModelConfig& c = w.config;
  const bool gemma = c.arch == Arch::Gemma3;
  const int hd = c.head_dim, group = c.n_heads / c.n_kv_heads;
  std::vector<std::vector<Vec>> K(c.n_layers), V(c.n_layers);
  std::vector<Vec> out;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    Vec x(c.d_model);
    for (int i = 0; i < c.d_model; ++i) x[i] = w.token_embd.row(tokens[pos])[i] * static_cast<double>(c.embed_scale);
    for (int l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = w.layers[l];
      Vec h = rmsnorm(x, L.attn_norm, c.norm_eps);
      Vec q = linear(L.wq, h), k = linear(L.wk, h), v = linear(L.wv, h);
      const double base = c.is_local(l) ? c.rope_base_local : c.rope_base;
      for (int hh = 0; hh < c.n_heads; ++hh) {
        if (gemma) {
          Vec part(q.begin() + hh * hd, q.begin() + (hh + 1) * hd);
          part = rmsnorm(part, L.q_norm, c.norm_eps);
          std::copy(part.begin(), part.end(), q.begin() + hh * hd);
        }
        rotate(&q[hh * hd], c.rope_dims, static_cast<int>(pos), base, c.rope_neox);
      }
      for (int hh = 0; hh < c.n_kv_heads; ++hh) {
        if (gemma) {
          Vec part(k.begin() + hh * hd, k.begin() + (hh + 1) * hd);
          part = rmsnorm(part, L.k_norm, c.norm_eps);
          std::copy(part.begin(), part.end(), k.begin() + hh * hd);
        }
        rotate(&k[hh * hd], c.rope_dims, static_cast<int>(pos), base, c.rope_neox);
      }
      K[l].push_back(k);
      V[l].push_back(v);
      Vec att(c.q_dim(), 0.0);
      for (int hh = 0; hh < c.n_heads; ++hh) {
        const int kvh = hh / group;
        std::vector<double> s;
        std::vector<size_t> keys;
        for (size_t j = 0; j <= pos; ++j) {
          if (c.is_local(l) && pos - j >= static_cast<size_t>(c.sliding_window)) continue;
          double d = 0;
          for (int i = 0; i < hd; ++i) d += q[hh * hd + i] * K[l][j][kvh * hd + i];
          s.push_back(d * c.softmax_scale());
          keys.push_back(j);
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (size_t n = 0; n < keys.size(); ++n)
          for (int i = 0; i < hd; ++i) att[hh * hd + i] += s[n] / sum * V[l][keys[n]][kvh * hd + i];
      }
      Vec o = linear(L.wo, att);
      if (gemma) o = rmsnorm(o, L.post_attn_norm, c.norm_eps);
      for (int i = 0; i < c.d_model; ++i) x[i] += o[i];
      h = rmsnorm(x, L.ffn_norm, c.norm_eps);
      Vec g = linear(L.w_gate, h), u = linear(L.w_up, h);
      for (size_t i = 0; i < g.size(); ++i) {
        const double a = gemma ? 0.5 * g[i] * (1 + std::tanh(std::sqrt(2 / M_PI) * (g[i] + 0.044715 * g[i] * g[i] * g[i])))
                               : g[i] / (1 + std::exp(-g[i]));
        g[i] = a * u[i];
      }
      o = linear(L.w_down, g);
      if (gemma) o = rmsnorm(o, L.post_ffw_norm, c.norm_eps);
      for (int i = 0; i < c.d_model; ++i) x[i] += o[i];
    }
    out.push_back(linear(w.lm_head(), rmsnorm(x, w.output_norm, c.norm_eps)));
  }
  return out;
}

ModelConfig tiny_config(Arch arch) {
  nlohmann::json j = {{"arch", arch == Arch::Gemma3 ? "gemma3" : "llama"},
                      {"n_layers", arch == Arch::Gemma3 ? 6 : 2},
                      {"d_model", 64}, {"n_heads", 4}, {"n_kv_heads", 2}, {"head_dim", 16}, {"d_ff", 96},
                      {"vocab_size", 97}, {"context_length", 256}, {"rope_base", 10000.0}};
  if (arch == Arch::Gemma3) {
    j["sliding_window"] = 7;  // short, so the test crosses it
    j["rope_base"] = 1e6;
    j["tied_embeddings"] = true;
  }
  return config_from_preset(j);
}

std::vector<int32_t> random_tokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

double max_rel_err(const float* got, const Vec& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num = std::max(num, std::abs(got[i] - want[i]));
    den = std::max(den, std::abs(want[i]));
  }
  return num / den;
}

class CpuForward : public ::testing::TestWithParam<Arch> {};

TEST_P(CpuForward, MatchesNaiveReferenceForEveryPosition) {
  const ModelConfig c = tiny_config(GetParam());
  auto w = std::shared_ptr<ModelWeights>(synthetic_weights(c, 7));
  const auto tokens = random_tokens(20, c.vocab_size, 1);
  const auto want = reference_logits(*w, tokens);
  auto be = make_cpu_backend(w);
  ForwardRunner run(*be, dense_plan(c.n_layers, c.n_kv_heads, 16), 64 << 20);
  Batch b;
  b.chunks.push_back({1, 0, tokens, true});
  const Logits& lg = run.forward(b);
  ASSERT_EQ(lg.data.size(), tokens.size() * c.vocab_size);
  for (size_t p = 0; p < tokens.size(); ++p) EXPECT_LT(max_rel_err(lg.row(p), want[p]), 1e-4) << "position " << p;
}

TEST_P(CpuForward, ChunkedPrefillDecodeAndBatchingAgree) {
  const ModelConfig c = tiny_config(GetParam());
  auto w = std::shared_ptr<ModelWeights>(synthetic_weights(c, 11));
  const auto a = random_tokens(23, c.vocab_size, 2), b = random_tokens(9, c.vocab_size, 3);
  const auto want_a = reference_logits(*w, a), want_b = reference_logits(*w, b);
  auto be = make_cpu_backend(w);
  ForwardRunner run(*be, dense_plan(c.n_layers, c.n_kv_heads, 16), 64 << 20);
  // Sequence 1 in chunks of 5, 1, 10 then single tokens; sequence 2 joins the same steps.
  std::vector<int> cuts = {0, 5, 6, 16, 17, 18, 19, 20, 21, 22, 23};
  for (size_t s = 0; s + 1 < cuts.size(); ++s) {
    Batch batch;
    batch.chunks.push_back({1, cuts[s], {a.begin() + cuts[s], a.begin() + cuts[s + 1]}, false});
    if (s < b.size()) batch.chunks.push_back({2, static_cast<int32_t>(s), {b[s]}, false});
    const Logits& lg = run.forward(batch);
    EXPECT_LT(max_rel_err(lg.last_row_of(0, batch), want_a[cuts[s + 1] - 1]), 1e-4) << "step " << s;
    if (s < b.size()) EXPECT_LT(max_rel_err(lg.last_row_of(1, batch), want_b[s]), 1e-4) << "step " << s;
  }
  EXPECT_EQ(run.kv().length(1), 23);
  run.release(1);
  EXPECT_EQ(run.kv().length(1), 0);
  run.release(2);
  EXPECT_EQ(run.kv().pool().used_pages(), 0);
}

TEST_P(CpuForward, RejectsBadBatches) {
  const ModelConfig c = tiny_config(GetParam());
  auto be = make_cpu_backend(std::shared_ptr<ModelWeights>(synthetic_weights(c, 1)));
  ForwardRunner run(*be, dense_plan(c.n_layers, c.n_kv_heads, 16), 64 << 20);
  Batch gap;
  gap.chunks.push_back({1, 3, {1, 2}, false});  // nothing cached yet
  EXPECT_THROW(run.forward(gap), std::invalid_argument);
  Batch bad_token;
  bad_token.chunks.push_back({2, 0, {c.vocab_size}, false});
  EXPECT_THROW(run.forward(bad_token), std::invalid_argument);
  Batch too_long;
  too_long.chunks.push_back({3, 0, std::vector<int32_t>(c.context_length + 1, 1), false});
  EXPECT_THROW(run.forward(too_long), std::invalid_argument);
  EXPECT_EQ(run.kv().length(1), 0);
}

INSTANTIATE_TEST_SUITE_P(Archs, CpuForward, ::testing::Values(Arch::Llama, Arch::Gemma3),
                         [](const auto& info) { return std::string(arch_name(info.param)); });

}  // namespace
}  // namespace hs
