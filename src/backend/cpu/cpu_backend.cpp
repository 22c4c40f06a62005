// The CPU reference backend: float32, multithreaded, one forward pass over a whole step.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/paged_attention.h"
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
        rope_global_(make_rope_table(c_, c_.rope_base, w_->rope_freq_factors, true)),
        rope_local_(make_rope_table(c_, c_.rope_base_local, {}, false)) {}

  std::string name() const override { return "cpu"; }
  const ModelConfig& config() const override { return c_; }
  int64_t page_bytes(int32_t block_size) const override {
    return int64_t{2} * block_size * c_.head_dim * static_cast<int64_t>(sizeof(float));
  }
  void configure_kv(const ShardPlan& plan, int32_t n_pages) override {
    plan_ = plan;
    // Left uninitialized: the OS maps memory as pages are first written, so a large pool costs
    // nothing until used, and attention never reads a slot that was not written.
    pages_.reset(new float[static_cast<size_t>(n_pages) * page_bytes(plan.block_size()) / sizeof(float)]);
  }

  void forward(const Batch& batch, const KvStepMeta& meta, Logits& out) override;

 private:
  // A unit of attention work: one chunk's tokens [t0, t1) for one KV head.
  struct AttentionJob {
    int32_t chunk, head;
    int64_t t0, t1;
  };
  void plan_attention(const std::vector<int64_t>& chunk_start);
  void attention(int layer, const Batch& batch, const KvStepMeta& meta, const std::vector<int64_t>& chunk_start,
                 const float* q, float* o);

  std::shared_ptr<const ModelWeights> w_;
  const ModelConfig& c_;
  RopeTable rope_global_, rope_local_;
  ShardPlan plan_;
  std::unique_ptr<float[]> pages_;  // the page pool; layout in paged_attention.h
  std::vector<AttentionJob> jobs_;  // this step's attention work, the same for every layer
};

void CpuBackend::forward(const Batch& batch, const KvStepMeta& meta, Logits& out) {
  const int64_t T = batch.total_tokens();
  const int d = c_.d_model, qd = c_.q_dim(), kvd = c_.kv_dim(), hd = c_.head_dim;
  if (meta.n_chunks != static_cast<int32_t>(batch.chunks.size()) || meta.n_tokens != T)
    throw std::invalid_argument("KV step metadata does not describe this batch");
  // Per token: which position; per chunk: its first token and first logits row.
  std::vector<int32_t> tok_pos(T), tok_id(T);
  std::vector<int64_t> chunk_start(batch.chunks.size() + 1, 0);
  int64_t n_logit_rows = 0;
  out.first_row.assign(batch.chunks.size(), 0);
  out.sampled.assign(batch.chunks.size(), -1);  // this backend does not sample
  for (size_t ci = 0, t = 0; ci < batch.chunks.size(); ++ci) {
    const SeqChunk& ch = batch.chunks[ci];
    if (ch.tokens.empty()) throw std::invalid_argument("batch chunk for sequence " + std::to_string(ch.seq_id) + " has no tokens");
    if (ch.pos0 < 0 || ch.pos0 + static_cast<int64_t>(ch.tokens.size()) > c_.context_length)
      throw std::invalid_argument("sequence " + std::to_string(ch.seq_id) + ": positions past the context length " +
                                  std::to_string(c_.context_length));
    chunk_start[ci] = static_cast<int64_t>(t);
    for (size_t i = 0; i < ch.tokens.size(); ++i, ++t) {
      if (ch.tokens[i] < 0 || ch.tokens[i] >= c_.vocab_size)
        throw std::invalid_argument("token id " + std::to_string(ch.tokens[i]) + " is outside the vocabulary");
      tok_pos[t] = ch.pos0 + static_cast<int32_t>(i);
      tok_id[t] = ch.tokens[i];
    }
    out.first_row[ci] = n_logit_rows;
    n_logit_rows += ch.all_logits ? static_cast<int64_t>(ch.tokens.size()) : 1;
  }
  chunk_start.back() = T;
  plan_attention(chunk_start);

  std::vector<float> x(T * d), h(T * d), q(T * qd), k(T * kvd), v(T * kvd), att(T * qd), o(T * d);
  std::vector<float> gate(T * c_.d_ff), up(T * c_.d_ff);
  auto& pool = ThreadPool::global();
  for (int64_t t = 0; t < T; ++t) {
    float* e = &x[t * d];
    w_->token_embd.rows_f32(tok_id[t], 1, e);
    for (int i = 0; i < d; ++i) e[i] *= c_.embed_scale;
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
      for (int hh = 0; hh < c_.n_kv_heads; ++hh) {
        cpu::rope(&k[t * kvd + hh * hd], tok_pos[t], rope, c_.rope_neox);
        const int32_t slot = meta.write_slots[(static_cast<int64_t>(l) * c_.n_kv_heads + hh) * T + t];
        cpu::write_kv(pages_.get(), plan_.block_size(), hd, slot, &k[t * kvd + hh * hd], &v[t * kvd + hh * hd]);
      }
    }
    attention(l, batch, meta, chunk_start, q.data(), att.data());
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
  for (size_t ci = 0; ci < batch.chunks.size(); ++ci) {
    const int64_t n = chunk_start[ci + 1] - chunk_start[ci];
    const int64_t first = batch.chunks[ci].all_logits ? 0 : n - 1;
    for (int64_t i = first; i < n; ++i)
      cpu::rms_norm(&x[(chunk_start[ci] + i) * d], w_->output_norm.data(), c_.norm_eps, d,
                    &rows[(out.first_row[ci] + i - first) * d]);
  }
  out.vocab = c_.vocab_size;
  out.data.resize(n_logit_rows * c_.vocab_size);
  cpu::matmul(rows.data(), n_logit_rows, w_->lm_head(), out.data.data());
}

// Splits the step's attention into (chunk, KV head, tile of tokens) jobs, so that long prefill
// chunks spread over the threads.
void CpuBackend::plan_attention(const std::vector<int64_t>& chunk_start) {
  const int64_t tile = 16;
  jobs_.clear();
  for (size_t ci = 0; ci + 1 < chunk_start.size(); ++ci)
    for (int h = 0; h < c_.n_kv_heads; ++h)
      for (int64_t t0 = chunk_start[ci]; t0 < chunk_start[ci + 1]; t0 += tile)
        jobs_.push_back({static_cast<int32_t>(ci), h, t0, std::min(chunk_start[ci + 1], t0 + tile)});
}

// Attention for every job through its KV head's page list, the query heads of a GQA group
// together.
void CpuBackend::attention(int layer, const Batch& batch, const KvStepMeta& meta,
                           const std::vector<int64_t>& chunk_start, const float* q, float* o) {
  const int hd = c_.head_dim, qd = c_.q_dim(), group = c_.n_heads / c_.n_kv_heads;
  const int32_t B = plan_.block_size();
  const int window = c_.is_local(layer) ? c_.sliding_window : 0;
  ThreadPool::global().parallel_for(static_cast<int64_t>(jobs_.size()), 1, [&](int64_t a, int64_t b) {
    for (int64_t j = a; j < b; ++j) {
      const AttentionJob& job = jobs_[j];
      const int32_t list = meta.list(job.chunk, layer, job.head);
      const int32_t e0 = meta.indptr[list], e1 = meta.indptr[list + 1];
      const int32_t pos0 = batch.chunks[job.chunk].pos0 + static_cast<int32_t>(job.t0 - chunk_start[job.chunk]);
      // The KV head's query heads are adjacent in a token's row: [group][hd] with row stride qd.
      const int64_t offset = job.t0 * qd + static_cast<int64_t>(job.head) * group * hd;
      cpu::paged_attention(q + offset, static_cast<int32_t>(job.t1 - job.t0), pos0, group, hd,
                           plan_.at(layer, job.head), B, window, meta.blocks.data() + e0, meta.pages.data() + e0,
                           e1 - e0, pages_.get(), c_.softmax_scale(), o + offset, qd, qd);
    }
  });
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<const ModelWeights> weights) {
  return std::make_unique<CpuBackend>(std::move(weights));
}

}  // namespace hs
