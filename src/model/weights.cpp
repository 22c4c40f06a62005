#include "model/weights.h"

#include <cmath>
#include <random>

#include "model/dequant.h"
#include "model/dequant_simd.h"
#include "model/gguf.h"
#include "util/thread_pool.h"

namespace hs {

void dequantize_rows(GgmlType type, const uint8_t* src, int64_t rows, int64_t cols, float* dst) {
  const size_t row_bytes = ggml_row_bytes(type, cols);
  ThreadPool::global().parallel_for(rows, 256, [&](int64_t r0, int64_t r1) {
    dequantize(type, src + r0 * row_bytes, dst + r0 * cols, (r1 - r0) * cols);
  });
}

size_t Matrix::row_bytes() const { return ggml_row_bytes(type, cols); }

void Matrix::rows_f32(int64_t r0, int64_t n, float* out) const {
  if (packed()) {
    dequantize(type, blocks.data() + r0 * row_bytes(), out, n * cols);
  } else {
    std::copy(row(r0), row(r0 + n), out);
  }
}

size_t ModelWeights::bytes() const {
  size_t n = output_norm.size() * sizeof(float);
  for_each_matrix(*this, [&](const Matrix& m) { n += m.bytes(); });
  for (const auto& l : layers)
    for (const auto* v : {&l.attn_norm, &l.ffn_norm, &l.q_norm, &l.k_norm, &l.post_attn_norm, &l.post_ffw_norm})
      n += v->size() * sizeof(float);
  return n;
}

std::unique_ptr<ModelWeights> ModelWeights::unpacked() const {
  auto w = std::make_unique<ModelWeights>(*this);
  for_each_matrix(*w, [](Matrix& m) {
    if (!m.packed()) return;
    m.data.resize(static_cast<size_t>(m.rows * m.cols));
    dequantize_rows(m.type, m.blocks.data(), m.rows, m.cols, m.data.data());
    m.type = GgmlType::F32;
    m.blocks = {};
  });
  return w;
}

namespace {

class Loader {
 public:
  Loader(const TensorLookup& find, const std::string& source, int total, const LoadProgress& progress)
      : find_(find), source_(source), total_(total), progress_(progress) {}

  const GgufTensor* get(const std::string& name, bool required) {
    const GgufTensor* t = find_(name);
    if (!t && required) throw ModelFileError(source_ + ": tensor '" + name + "' is missing");
    return t;
  }

  Matrix matrix(const std::string& name, int64_t rows, int64_t cols, bool required = true) {
    Matrix m;
    const GgufTensor* t = get(name, required);
    if (!t) return m;
    if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows) {
      throw ModelFileError(source_ + ": tensor '" + name + "' has shape " + shape(t) + ", expected [" +
                           std::to_string(cols) + ", " + std::to_string(rows) + "]");
    }
    m.rows = rows;
    m.cols = cols;
    const size_t row_bytes = ggml_row_bytes(t->type, cols);
    // Packed where the CPU backend reads the format fast (whole blocks of a reader in each row).
    if (simd::have_avx2() && simd::reads_rows(t->type, cols)) {
      m.type = t->type;
      m.blocks.assign(t->data, t->data + rows * row_bytes);
    } else {
      m.data.resize(static_cast<size_t>(rows * cols));
      dequantize_rows(t->type, t->data, rows, cols, m.data.data());
    }
    tick();
    return m;
  }

  std::vector<float> vector(const std::string& name, int64_t n, float offset, bool required = true) {
    const GgufTensor* t = get(name, required);
    if (!t) return {};
    if (t->n_elements() != n) {
      throw ModelFileError(source_ + ": tensor '" + name + "' has shape " + shape(t) + ", expected [" +
                           std::to_string(n) + "]");
    }
    std::vector<float> v(static_cast<size_t>(n));
    dequantize(t->type, t->data, v.data(), n);
    for (float& x : v) x += offset;
    tick();
    return v;
  }

 private:
  static std::string shape(const GgufTensor* t) {
    std::string s = "[";
    for (size_t i = 0; i < t->dims.size(); ++i) s += (i ? ", " : "") + std::to_string(t->dims[i]);
    return s + "]";
  }
  void tick() {
    ++done_;
    if (progress_) progress_(done_, total_);
  }
  const TensorLookup& find_;
  const std::string& source_;
  int total_, done_ = 0;
  const LoadProgress& progress_;
};

}  // namespace

std::unique_ptr<ModelWeights> load_weights(const ModelConfig& c, const TensorLookup& find,
                                           const std::string& source, const LoadProgress& progress) {
  const bool gemma = c.arch == Arch::Gemma3;
  const int per_layer = gemma ? 13 : 9;
  Loader ld(find, source, 3 + c.n_layers * per_layer, progress);
  auto w = std::make_unique<ModelWeights>();
  w->config = c;
  const float off = c.norm_weight_offset;
  w->token_embd = ld.matrix("token_embd.weight", c.vocab_size, c.d_model);
  if (!c.tied_embeddings) w->output = ld.matrix("output.weight", c.vocab_size, c.d_model);
  w->output_norm = ld.vector("output_norm.weight", c.d_model, off);
  if (const GgufTensor* rf = ld.get("rope_freqs.weight", false)) {
    w->rope_freq_factors = ld.vector("rope_freqs.weight", rf->n_elements(), 0.0f);
  }
  w->layers.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = w->layers[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    l.attn_norm = ld.vector(p + "attn_norm.weight", c.d_model, off);
    l.wq = ld.matrix(p + "attn_q.weight", c.q_dim(), c.d_model);
    l.wk = ld.matrix(p + "attn_k.weight", c.kv_dim(), c.d_model);
    l.wv = ld.matrix(p + "attn_v.weight", c.kv_dim(), c.d_model);
    l.wo = ld.matrix(p + "attn_output.weight", c.d_model, c.q_dim());
    l.ffn_norm = ld.vector(p + "ffn_norm.weight", c.d_model, off);
    l.w_gate = ld.matrix(p + "ffn_gate.weight", c.d_ff, c.d_model);
    l.w_up = ld.matrix(p + "ffn_up.weight", c.d_ff, c.d_model);
    l.w_down = ld.matrix(p + "ffn_down.weight", c.d_model, c.d_ff);
    if (gemma) {
      l.q_norm = ld.vector(p + "attn_q_norm.weight", c.head_dim, off);
      l.k_norm = ld.vector(p + "attn_k_norm.weight", c.head_dim, off);
      l.post_attn_norm = ld.vector(p + "post_attention_norm.weight", c.d_model, off);
      l.post_ffw_norm = ld.vector(p + "post_ffw_norm.weight", c.d_model, off);
    }
  }
  return w;
}

namespace {

// Uniform values from a counter-based generator (splitmix64 of the tensor's key and the element
// index), so that large models fill in parallel and the values do not depend on the thread count.
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct SyntheticFill {
  uint64_t seed;
  uint64_t tensors = 0;
  void fill(float* out, int64_t n, float lo, float hi) {
    const uint64_t key = splitmix64(seed ^ splitmix64(++tensors));
    ThreadPool::global().parallel_for(n, 1 << 16, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float u = static_cast<float>(splitmix64(key + static_cast<uint64_t>(i)) >> 40) * 0x1p-24f;
        out[i] = lo + (hi - lo) * u;
      }
    });
  }
  Matrix matrix(int64_t rows, int64_t cols) {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.data.resize(static_cast<size_t>(rows * cols));
    const float scale = 1.0f / std::sqrt(static_cast<float>(cols));
    fill(m.data.data(), rows * cols, -scale, scale);
    return m;
  }
  std::vector<float> norm(int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    fill(v.data(), n, 0.9f, 1.1f);
    return v;
  }
};

}  // namespace

std::unique_ptr<ModelWeights> synthetic_weights(const ModelConfig& c, uint64_t seed) {
  c.validate();
  SyntheticFill f{seed};
  auto w = std::make_unique<ModelWeights>();
  w->config = c;
  w->token_embd = f.matrix(c.vocab_size, c.d_model);
  if (!c.tied_embeddings) w->output = f.matrix(c.vocab_size, c.d_model);
  w->output_norm = f.norm(c.d_model);
  w->layers.resize(c.n_layers);
  for (auto& l : w->layers) {
    l.attn_norm = f.norm(c.d_model);
    l.wq = f.matrix(c.q_dim(), c.d_model);
    l.wk = f.matrix(c.kv_dim(), c.d_model);
    l.wv = f.matrix(c.kv_dim(), c.d_model);
    l.wo = f.matrix(c.d_model, c.q_dim());
    l.ffn_norm = f.norm(c.d_model);
    l.w_gate = f.matrix(c.d_ff, c.d_model);
    l.w_up = f.matrix(c.d_ff, c.d_model);
    l.w_down = f.matrix(c.d_model, c.d_ff);
    if (c.arch == Arch::Gemma3) {
      l.q_norm = f.norm(c.head_dim);
      l.k_norm = f.norm(c.head_dim);
      l.post_attn_norm = f.norm(c.d_model);
      l.post_ffw_norm = f.norm(c.d_model);
    }
  }
  return w;
}

}  // namespace hs
