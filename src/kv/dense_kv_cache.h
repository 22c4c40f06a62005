// The simplest KV cache: per sequence and layer, every position's keys and values, contiguous.
// It is the CPU reference's cache until the per-head sharded paged cache replaces it.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "model/config.h"

namespace hs {

class DenseKvCache {
 public:
  explicit DenseKvCache(const ModelConfig& config) : n_layers_(config.n_layers), kv_dim_(config.kv_dim()) {}

  // Sets a sequence's length to n positions (creating it); the first min(old, n) are kept.
  void resize(int64_t seq, int32_t n);
  int32_t size(int64_t seq) const;  // positions stored; 0 for an unknown sequence
  void release(int64_t seq) { seqs_.erase(seq); }

  // Keys / values of one position: kv_dim floats (KV heads one after another).
  float* key(int64_t seq, int layer, int32_t pos) { return &seqs_.at(seq).k[layer][static_cast<size_t>(pos) * kv_dim_]; }
  float* value(int64_t seq, int layer, int32_t pos) { return &seqs_.at(seq).v[layer][static_cast<size_t>(pos) * kv_dim_]; }
  const float* key(int64_t seq, int layer, int32_t pos) const { return &seqs_.at(seq).k[layer][static_cast<size_t>(pos) * kv_dim_]; }
  const float* value(int64_t seq, int layer, int32_t pos) const { return &seqs_.at(seq).v[layer][static_cast<size_t>(pos) * kv_dim_]; }

  size_t bytes_in_use() const;

 private:
  struct Seq {
    int32_t n = 0;
    std::vector<std::vector<float>> k, v;  // per layer
  };
  int n_layers_;
  int kv_dim_;
  std::unordered_map<int64_t, Seq> seqs_;
};

}  // namespace hs
