#include "kv/dense_kv_cache.h"

namespace hs {

void DenseKvCache::resize(int64_t seq, int32_t n_total) {
  Seq& s = seqs_[seq];
  if (s.k.empty()) {
    s.k.resize(n_layers_);
    s.v.resize(n_layers_);
  }
  const size_t n = static_cast<size_t>(n_total) * kv_dim_;
  for (int l = 0; l < n_layers_; ++l) {
    s.k[l].resize(n);
    s.v[l].resize(n);
  }
  s.n = n_total;
}

int32_t DenseKvCache::size(int64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.n;
}

size_t DenseKvCache::bytes_in_use() const {
  size_t n = 0;
  for (const auto& [id, s] : seqs_)
    for (int l = 0; l < n_layers_; ++l) n += (s.k[l].size() + s.v[l].size()) * sizeof(float);
  return n;
}

}  // namespace hs
