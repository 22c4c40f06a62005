#include "backend/cuda/device_weights.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/model_kernels.h"

namespace hs::cuda {

namespace {

// Float32 host arrays go up in chunks to a staging buffer and are converted to 16 bits there: the
// device converts far faster than the host, and only the staging buffer is extra memory (and, for
// packed matrices, one chunk dequantized on the host).
class Uploader {
 public:
  Uploader(GemmType type, cudaStream_t s) : type_(type), s_(s), staging_(kChunk) {}

  // The parts stacked by rows into one [rows][cols] matrix; with interleave, row r of each part in
  // turn instead ([parts][rows / parts][cols] as [rows / parts][parts][cols]); with col_scale (device,
  // [cols]), its columns scaled by it before the conversion to 16 bits (one rounding).
  void matrices(std::initializer_list<const Matrix*> parts, int64_t rows, int64_t cols, const std::string& name,
                DeviceBuffer<half16>& dst, size_t& bytes, bool interleave = false, const float* col_scale = nullptr) {
    int64_t got = 0;
    for (const Matrix* m : parts) {
      if (m->cols != cols || (!m->packed() && static_cast<int64_t>(m->data.size()) != m->rows * m->cols))
        throw std::invalid_argument("CUDA backend: weight " + name + " has " + std::to_string(m->cols) +
                                    " columns, expected " + std::to_string(cols));
      if (interleave && m->rows != (*parts.begin())->rows)
        throw std::invalid_argument("CUDA backend: the parts of weight " + name + " differ in rows");
      got += m->rows;
    }
    if (got != rows)
      throw std::invalid_argument("CUDA backend: weight " + name + " has " + std::to_string(got) + " rows, expected " +
                                  std::to_string(rows));
    dst.allocate(static_cast<size_t>(rows * cols));
    bytes += dst.size() * sizeof(half16);
    // Part p's row r goes to base + r * pitch.
    const int64_t pitch = interleave ? static_cast<int64_t>(parts.size()) * cols : cols;
    half16* base = dst.get();
    for (const Matrix* m : parts) {
      if (m->packed()) {
        // Packed rows are dequantized on the host a chunk at a time (a copy from pageable memory
        // has read its source when cudaMemcpyAsync returns, so the buffer can be refilled).
        const int64_t step = std::max<int64_t>(1, static_cast<int64_t>(kChunk) / cols);
        host_.resize(static_cast<size_t>(std::min(step, m->rows) * cols));
        for (int64_t r = 0; r < m->rows; r += step) {
          const int64_t n = std::min(step, m->rows - r);
          dequantize_rows(m->type, m->blocks.data() + r * m->row_bytes(), n, cols, host_.data());
          put(host_.data(), n, cols, base + r * pitch, pitch, col_scale);
        }
      } else {
        put(m->data.data(), m->rows, cols, base, pitch, col_scale);
      }
      base += interleave ? cols : m->rows * cols;
    }
  }

  void vector(const std::vector<float>& v, DeviceBuffer<float>& dst, size_t& bytes) {
    if (v.empty()) return;
    dst.allocate(v.size());
    bytes += v.size() * sizeof(float);
    HS_CUDA_CHECK(cudaMemcpyAsync(dst.get(), v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice, s_));
  }

  void finish() { HS_CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  static constexpr size_t kChunk = size_t{16} << 20;  // floats (64 MiB)

  // n rows of cols floats from the host's src to dst, row i at dst + i * pitch; col_scale as in
  // matrices().
  void put(const float* src, int64_t n, int64_t cols, half16* dst, int64_t pitch, const float* col_scale) {
    if (pitch == cols) {  // one stretch, converted in place
      const size_t total = static_cast<size_t>(n * cols);
      for (size_t i = 0; i < total; i += kChunk) {
        const size_t len = std::min(kChunk, total - i);
        // Stream order keeps the staging buffer from being overwritten before its conversion ran.
        HS_CUDA_CHECK(cudaMemcpyAsync(staging_.get(), src + i, len * sizeof(float), cudaMemcpyHostToDevice, s_));
        if (col_scale) scale_columns(staging_.get(), len, i, static_cast<int>(cols), col_scale, s_);
        convert_f32(staging_.get(), dst + i, type_, len, s_);
      }
      return;
    }
    // Rows apart: whole rows are converted in a second staging buffer, then spread out.
    if (cols > static_cast<int64_t>(kChunk))
      throw std::invalid_argument("CUDA backend: weight rows too long to interleave");
    if (staged_.size() == 0) staged_.allocate(kChunk);
    const int64_t step = static_cast<int64_t>(kChunk) / cols;
    const size_t row = static_cast<size_t>(cols) * sizeof(half16);
    for (int64_t r = 0; r < n; r += step) {
      const int64_t k = std::min(step, n - r);
      const size_t len = static_cast<size_t>(k * cols);
      HS_CUDA_CHECK(cudaMemcpyAsync(staging_.get(), src + r * cols, len * sizeof(float), cudaMemcpyHostToDevice, s_));
      if (col_scale) scale_columns(staging_.get(), len, 0, static_cast<int>(cols), col_scale, s_);
      convert_f32(staging_.get(), staged_.get(), type_, len, s_);
      HS_CUDA_CHECK(cudaMemcpy2DAsync(dst + r * pitch, static_cast<size_t>(pitch) * sizeof(half16), staged_.get(), row,
                                      row, static_cast<size_t>(k), cudaMemcpyDeviceToDevice, s_));
    }
  }

  GemmType type_;
  cudaStream_t s_;
  DeviceBuffer<float> staging_;
  DeviceBuffer<half16> staged_;  // converted rows on their way to an interleaved matrix
  std::vector<float> host_;  // dequantized rows of a packed matrix
};

}  // namespace

DeviceWeights upload_weights(const ModelWeights& w, GemmType type, cudaStream_t s, bool fold_attn_norm,
                             bool fold_ffn_norm) {
  const ModelConfig& c = w.config;
  DeviceWeights d;
  d.type = type;
  d.attn_norm_folded = fold_attn_norm;
  d.ffn_norm_folded = fold_ffn_norm;
  Uploader up(type, s);
  up.matrices({&w.token_embd}, c.vocab_size, c.d_model, "token_embd", d.token_embd, d.bytes);
  if (!w.output.empty()) up.matrices({&w.output}, c.vocab_size, c.d_model, "output", d.output, d.bytes);
  up.vector(w.output_norm, d.output_norm, d.bytes);
  d.layers.resize(w.layers.size());
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    DeviceLayer& D = d.layers[l];
    const std::string at = "of layer " + std::to_string(l);
    up.vector(L.attn_norm, D.attn_norm, d.bytes);
    up.vector(L.ffn_norm, D.ffn_norm, d.bytes);
    up.vector(L.q_norm, D.q_norm, d.bytes);
    up.vector(L.k_norm, D.k_norm, d.bytes);
    up.vector(L.post_attn_norm, D.post_attn_norm, d.bytes);
    up.vector(L.post_ffw_norm, D.post_ffw_norm, d.bytes);
    up.matrices({&L.wq, &L.wk, &L.wv}, c.q_dim() + 2 * c.kv_dim(), c.d_model, "wq/wk/wv " + at, D.wqkv, d.bytes, false,
                fold_attn_norm ? D.attn_norm.get() : nullptr);
    up.matrices({&L.wo}, c.d_model, c.q_dim(), "wo " + at, D.wo, d.bytes);
    up.matrices({&L.w_gate, &L.w_up}, 2 * int64_t{c.d_ff}, c.d_model, "w_gate/w_up " + at, D.wgu, d.bytes, true,
                fold_ffn_norm ? D.ffn_norm.get() : nullptr);
    up.matrices({&L.w_down}, c.d_model, c.d_ff, "w_down " + at, D.wdown, d.bytes);
  }
  up.finish();
  return d;
}

}  // namespace hs::cuda
