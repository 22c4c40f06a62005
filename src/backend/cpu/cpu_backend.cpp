// The CPU reference backend: float32, multithreaded, one forward pass over a whole step.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "kv/dense_kv_cache.h"
#include "model/rope.h"
#include "model/weights.h"
#include "util/thread_pool.h"

namespace hs {

namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(std::shared_ptr<const ModelWeights> w)
      : w_(std::move(w)),
        c_(w_->config),
        kv_(c_),
        rope_global_(make_rope_table(c_, c_.rope_base, w_->rope_freq_factors, true)),
        rope_local_(make_rope_table(c_, c_.rope_base_local, {}, false)) {}

  std::string name() const override { return "cpu"; }
  const ModelConfig& config() const override { return c_; }
  void release(int64_t seq_id) override { kv_.release(seq_id); }
  int32_t cached_tokens(int64_t seq_id) const override { return kv_.size(seq_id); }

  void forward(const Batch& batch, Logits& out) override;

 private:
  void attention(int layer, const Batch& batch, const std::vector<int64_t>& tok_chunk,
                 const std::vector<int32_t>& tok_pos, const float* q, float* o);

  std::shared_ptr<const ModelWeights> w_;
  const ModelConfig& c_;
  DenseKvCache kv_;
  RopeTable rope_global_, rope_local_;
};

void CpuBackend::forward(const Batch& batch, Logits& out) {
  const int64_t T = batch.total_tokens();
  const int d = c_.d_model, qd = c_.q_dim(), kvd = c_.kv_dim(), hd = c_.head_dim;
  // Per token: which chunk, which position. Validate before touching the cache.
  std::vector<int64_t> tok_chunk(T);
  std::vector<int32_t> tok_pos(T), tok_id(T);
  int64_t n_logit_rows = 0;
  out.first_row.assign(batch.chunks.size(), 0);
  for (size_t ci = 0, t = 0; ci < batch.chunks.size(); ++ci) {
    const SeqChunk& ch = batch.chunks[ci];
    if (ch.tokens.empty()) throw std::invalid_argument("batch chunk for sequence " + std::to_string(ch.seq_id) + " has no tokens");
    if (ch.pos0 < 0 || ch.pos0 > kv_.size(ch.seq_id))
      throw std::invalid_argument("sequence " + std::to_string(ch.seq_id) + ": chunk starts at position " +
                                  std::to_string(ch.pos0) + " but " + std::to_string(kv_.size(ch.seq_id)) + " are cached");
    if (ch.pos0 + static_cast<int64_t>(ch.tokens.size()) > c_.context_length)
      throw std::invalid_argument("sequence " + std::to_string(ch.seq_id) + ": positions past the context length " +
                                  std::to_string(c_.context_length));
    for (size_t i = 0; i < ch.tokens.size(); ++i, ++t) {
      if (ch.tokens[i] < 0 || ch.tokens[i] >= c_.vocab_size)
        throw std::invalid_argument("token id " + std::to_string(ch.tokens[i]) + " is outside the vocabulary");
      tok_chunk[t] = static_cast<int64_t>(ci);
      tok_pos[t] = ch.pos0 + static_cast<int32_t>(i);
      tok_id[t] = ch.tokens[i];
    }
    out.first_row[ci] = n_logit_rows;
    n_logit_rows += ch.all_logits ? static_cast<int64_t>(ch.tokens.size()) : 1;
  }
  for (const SeqChunk& ch : batch.chunks) kv_.resize(ch.seq_id, ch.pos0 + static_cast<int32_t>(ch.tokens.size()));

  std::vector<float> x(T * d), h(T * d), q(T * qd), k(T * kvd), v(T * kvd), att(T * qd), o(T * d);
  std::vector<float> gate(T * c_.d_ff), up(T * c_.d_ff);
  auto& pool = ThreadPool::global();
  for (int64_t t = 0; t < T; ++t) {
    const float* e = w_->token_embd.row(tok_id[t]);
    for (int i = 0; i < d; ++i) x[t * d + i] = e[i] * c_.embed_scale;
  }
  auto norm_rows = [&](const float* in, const std::vector<float>& wt, float* dst, int64_t rows, int width) {
    for (int64_t r = 0; r < rows; ++r) cpu::rms_norm(in + r * width, wt.data(), c_.norm_eps, width, dst + r * width);
  };

  for (int l = 0; l < c_.n_layers; ++l) {
    const LayerWeights& L = w_->layers[l];
    const bool gemma = c_.arch == Arch::Gemma3;
    norm_rows(x.data(), L.attn_norm, h.data(), T, d);
    cpu::matmul(h.data(), T, L.wq, q.data());
    cpu::matmul(h.data(), T, L.wk, k.data());
    cpu::matmul(h.data(), T, L.wv, v.data());
    if (gemma) {
      norm_rows(q.data(), L.q_norm, q.data(), T * c_.n_heads, hd);
      norm_rows(k.data(), L.k_norm, k.data(), T * c_.n_kv_heads, hd);
    }
    const RopeTable& rope = c_.is_local(l) ? rope_local_ : rope_global_;
    for (int64_t t = 0; t < T; ++t) {
      for (int hh = 0; hh < c_.n_heads; ++hh) cpu::rope(&q[t * qd + hh * hd], tok_pos[t], rope, c_.rope_neox);
      for (int hh = 0; hh < c_.n_kv_heads; ++hh) cpu::rope(&k[t * kvd + hh * hd], tok_pos[t], rope, c_.rope_neox);
      const int64_t seq = batch.chunks[tok_chunk[t]].seq_id;
      std::copy_n(&k[t * kvd], kvd, kv_.key(seq, l, tok_pos[t]));
      std::copy_n(&v[t * kvd], kvd, kv_.value(seq, l, tok_pos[t]));
    }
    attention(l, batch, tok_chunk, tok_pos, q.data(), att.data());
    cpu::matmul(att.data(), T, L.wo, o.data());
    if (gemma) norm_rows(o.data(), L.post_attn_norm, o.data(), T, d);
    for (int64_t i = 0; i < T * d; ++i) x[i] += o[i];

    norm_rows(x.data(), L.ffn_norm, h.data(), T, d);
    cpu::matmul(h.data(), T, L.w_gate, gate.data());
    cpu::matmul(h.data(), T, L.w_up, up.data());
    const int64_t nf = T * c_.d_ff;
    pool.parallel_for(nf, 1 << 14, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) gate[i] = (gemma ? cpu::gelu_tanh(gate[i]) : cpu::silu(gate[i])) * up[i];
    });
    cpu::matmul(gate.data(), T, L.w_down, o.data());
    if (gemma) norm_rows(o.data(), L.post_ffw_norm, o.data(), T, d);
    for (int64_t i = 0; i < T * d; ++i) x[i] += o[i];
  }

  // Final norm and logits only for the rows that were asked for.
  std::vector<float> rows(n_logit_rows * d);
  for (size_t ci = 0, t0 = 0; ci < batch.chunks.size(); ++ci) {
    const SeqChunk& ch = batch.chunks[ci];
    const int64_t n = static_cast<int64_t>(ch.tokens.size());
    const int64_t first = ch.all_logits ? 0 : n - 1;
    for (int64_t i = first; i < n; ++i)
      cpu::rms_norm(&x[(t0 + i) * d], w_->output_norm.data(), c_.norm_eps, d,
                    &rows[(out.first_row[ci] + i - first) * d]);
    t0 += n;
  }
  out.vocab = c_.vocab_size;
  out.data.resize(n_logit_rows * c_.vocab_size);
  cpu::matmul(rows.data(), n_logit_rows, w_->lm_head(), out.data.data());
}

void CpuBackend::attention(int layer, const Batch& batch, const std::vector<int64_t>& tok_chunk,
                           const std::vector<int32_t>& tok_pos, const float* q, float* o) {
  const int64_t T = static_cast<int64_t>(tok_pos.size());
  const int hd = c_.head_dim, qd = c_.q_dim(), group = c_.n_heads / c_.n_kv_heads;
  const float scale = c_.softmax_scale();
  const int window = c_.is_local(layer) ? c_.sliding_window : 0;
  ThreadPool::global().parallel_for(T * c_.n_heads, 4, [&](int64_t a, int64_t b) {
    std::vector<float> score;
    for (int64_t job = a; job < b; ++job) {
      const int64_t t = job / c_.n_heads;
      const int head = static_cast<int>(job % c_.n_heads), kvh = head / group;
      const int64_t seq = batch.chunks[tok_chunk[t]].seq_id;
      const int32_t pos = tok_pos[t];
      const int32_t first = window > 0 ? std::max(0, pos - window + 1) : 0;
      const float* qv = q + t * qd + head * hd;
      score.resize(pos - first + 1);
      float mx = -INFINITY;
      for (int32_t s = first; s <= pos; ++s) {
        score[s - first] = cpu::dot(qv, kv_.key(seq, layer, s) + kvh * hd, hd) * scale;
        mx = std::max(mx, score[s - first]);
      }
      float sum = 0.0f;
      for (float& sc : score) sum += (sc = std::exp(sc - mx));
      float* ov = o + t * qd + head * hd;
      std::fill_n(ov, hd, 0.0f);
      for (int32_t s = first; s <= pos; ++s) {
        const float p = score[s - first] / sum;
        const float* vv = kv_.value(seq, layer, s) + kvh * hd;
        for (int i = 0; i < hd; ++i) ov[i] += p * vv[i];
      }
    }
  });
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights) {
  return std::make_unique<CpuBackend>(std::move(weights));
}

}  // namespace hs
