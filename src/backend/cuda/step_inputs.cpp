#include "backend/cuda/step_inputs.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/model_kernels.h"

namespace hs::cuda {

namespace {

// The same checks, and messages, as the CPU backend's forward(); tokens from the step before are
// checked by stage().
void check_batch(const Batch& batch, const KvStepMeta& meta, const ModelConfig& c) {
  if (meta.n_chunks != static_cast<int32_t>(batch.chunks.size()) || meta.n_tokens != batch.total_tokens() ||
      meta.n_layers != c.n_layers || meta.n_kv_heads != c.n_kv_heads)
    throw std::invalid_argument("KV step metadata does not describe this batch");
  for (const SeqChunk& ch : batch.chunks) {
    if (ch.tokens.empty())
      throw std::invalid_argument("batch chunk for sequence " + std::to_string(ch.seq_id) + " has no tokens");
    if (ch.pos0 < 0 || ch.pos0 + static_cast<int64_t>(ch.tokens.size()) > c.context_length)
      throw std::invalid_argument("sequence " + std::to_string(ch.seq_id) + ": positions past the context length " +
                                  std::to_string(c.context_length));
    for (int32_t t : ch.tokens)
      if ((t < 0 && t > Backend::kFromPreviousStep) || t >= c.vocab_size)
        throw std::invalid_argument("token id " + std::to_string(t) + " is outside the vocabulary");
  }
  const size_t n_lists = static_cast<size_t>(meta.n_chunks) * meta.n_layers * meta.n_kv_heads;
  if (meta.indptr.size() != n_lists + 1 || meta.blocks.size() != meta.pages.size() ||
      static_cast<size_t>(meta.indptr.back()) != meta.pages.size() ||
      meta.write_slots.size() != static_cast<size_t>(meta.n_layers) * meta.n_kv_heads * meta.n_tokens)
    throw std::invalid_argument("KV step metadata arrays have inconsistent sizes");
}

// Device memory safety: the kernels index the page pool with these without further checks (the
// pages of the lists are checked as they are uploaded: only the changed ones).
void check_indices(const KvStepMeta& meta, int32_t n_pages, int32_t block_size) {
  const int64_t n_slots = static_cast<int64_t>(n_pages) * block_size;
  for (int32_t s : meta.write_slots)
    if (s < 0 || s >= n_slots)
      throw std::invalid_argument("KV step metadata writes slot " + std::to_string(s) + " of a pool of " +
                                  std::to_string(n_slots));
  for (size_t l = 0; l + 1 < meta.indptr.size(); ++l)
    if (meta.indptr[l] > meta.indptr[l + 1]) throw std::invalid_argument("KV step metadata: indptr decreases");
}

}  // namespace

StepShape StepInputs::stage(const Batch& batch, const KvStepMeta& meta, const ModelConfig& c, int32_t n_pages,
                            int32_t block_size, int pad_to, Logits& out, const std::vector<int32_t>* previous_rows) {
  check_batch(batch, meta, c);
  check_indices(meta, n_pages, block_size);
  const int n_chunks = static_cast<int>(batch.chunks.size());
  const int T = static_cast<int>(meta.n_tokens);
  if (pad_to > 0 && (pad_to < n_chunks || T != n_chunks))
    throw std::logic_error("StepInputs: only a step of one token per chunk pads, to at least its chunk count");
  StepShape shape;
  shape.n_chunks = pad_to > 0 ? pad_to : n_chunks;
  shape.n_tokens = pad_to > 0 ? pad_to : T;

  int32_t* id = tok_id_.fill(shape.n_tokens);
  int32_t* pos = tok_pos_.fill(shape.n_tokens);
  int32_t* chunk = tok_chunk_.fill(shape.n_tokens);
  int32_t* row = row_tok_.fill(shape.n_tokens);  // at most one row per token
  int32_t* cpos = chunk_pos0_.fill(shape.n_chunks);
  int32_t* ctok = chunk_tok0_.fill(shape.n_chunks + 1);
  std::vector<int32_t> taken;
  out.vocab = c.vocab_size;
  out.first_row.assign(n_chunks, 0);
  int n_rows = 0;
  for (int ci = 0, t = 0; ci < n_chunks; ++ci) {
    const SeqChunk& ch = batch.chunks[ci];
    const int n = static_cast<int>(ch.tokens.size());
    out.first_row[ci] = n_rows;
    cpos[ci] = ch.pos0;
    ctok[ci] = t;
    for (int i = 0; i < n; ++i, ++t) {
      id[t] = ch.tokens[i];
      if (id[t] < 0) {  // the token chunk j of the step before samples
        const int64_t j = int64_t{Backend::kFromPreviousStep} - id[t];
        const int32_t r = previous_rows && j < static_cast<int64_t>(previous_rows->size()) ? (*previous_rows)[j] : -1;
        if (r < 0)
          throw std::invalid_argument("sequence " + std::to_string(ch.seq_id) + ": token " + std::to_string(id[t]) +
                                      " names no token sampled by the step before");
        taken.push_back(t);
        taken.push_back(r);
        id[t] = 0;
      }
      pos[t] = ch.pos0 + i;
      chunk[t] = ci;
      if (ch.all_logits || i == n - 1) row[n_rows++] = t;
    }
  }
  shape.real_rows = n_rows;
  for (int t = T; t < shape.n_tokens; ++t) {  // padding
    id[t] = 0;
    pos[t] = 0;
    chunk[t] = t;
    row[n_rows++] = t;
    cpos[t] = 0;
    ctok[t] = t;
  }
  ctok[shape.n_chunks] = shape.n_tokens;
  std::copy(taken.begin(), taken.end(), taken_.fill(taken.size()));
  shape.n_rows = n_rows;
  row_tok_.n = n_rows;

  const size_t per_layer_head = static_cast<size_t>(c.n_layers) * c.n_kv_heads;
  int32_t* ws = write_slots_.fill(per_layer_head * shape.n_tokens);
  for (size_t lh = 0; lh < per_layer_head; ++lh) {
    std::memcpy(ws + lh * shape.n_tokens, meta.write_slots.data() + lh * T, sizeof(int32_t) * T);
    std::fill(ws + lh * shape.n_tokens + T, ws + (lh + 1) * shape.n_tokens, -1);
  }
  place_lists(batch, meta, n_pages, per_layer_head * shape.n_chunks);
  return shape;
}

void StepInputs::place_lists(const Batch& batch, const KvStepMeta& meta, int32_t n_pages, size_t n_lists) {
  // The device holds what the arena's last placement describes only once upload() has enqueued
  // its changes: a step staged and never uploaded leaves it unknown.
  if (staged_) arena_.clear();
  seqs_.clear();
  for (const SeqChunk& ch : batch.chunks) seqs_.push_back(ch.seq_id);
  arena_.place(meta, seqs_, placed_);
  if (static_cast<size_t>(arena_.size()) > d_blocks_.size()) {  // the device arena must move: lay out anew
    arena_.clear();
    arena_.place(meta, seqs_, placed_);
  }
  int32_t* ch = changes_.fill(3 * placed_.changes.size());
  for (const ListArena::Entry& e : placed_.changes) {
    if (e.page < 0 || e.page >= n_pages) {
      arena_.clear();  // it now records an entry the device will never hold
      throw std::invalid_argument("KV step metadata names page " + std::to_string(e.page) + " of a pool of " +
                                  std::to_string(n_pages));
    }
    *ch++ = e.index;
    *ch++ = e.block;
    *ch++ = e.page;
  }
  const size_t real = placed_.begin.size();
  int32_t* lb = list_begin_.fill(n_lists);
  int32_t* le = list_end_.fill(n_lists);
  std::copy(placed_.begin.begin(), placed_.begin.end(), lb);
  std::copy(placed_.end.begin(), placed_.end.end(), le);
  std::fill(lb + real, lb + n_lists, 0);  // padding chunks: empty lists
  std::fill(le + real, le + n_lists, 0);
  staged_ = true;
}

bool StepInputs::reserve(size_t n_tokens, size_t lists_per_chunk, size_t n_entries) {
  bool moved = false;
  for (auto* d : {&d_tok_id_, &d_tok_pos_, &d_tok_chunk_, &d_row_tok_, &d_chunk_pos0_}) moved |= d->grow_to(n_tokens);
  moved |= d_chunk_tok0_.grow_to(n_tokens + 1);
  moved |= d_write_slots_.grow_to(n_tokens * lists_per_chunk);
  moved |= d_list_begin_.grow_to(n_tokens * lists_per_chunk);
  moved |= d_list_end_.grow_to(n_tokens * lists_per_chunk);
  const bool arena_moved = d_blocks_.grow_to(2 * n_entries) | d_pages_.grow_to(2 * n_entries);
  if (arena_moved) arena_.clear();  // what the device held is gone
  return moved || arena_moved;
}

bool StepInputs::add_copies(HostCopies& copies) {
  bool moved = false;
  auto put = [&](const Array& a, DeviceBuffer<int32_t>& d) {
    moved |= d.grow_to(std::max<size_t>(a.n, 1));
    copies.add(a.host.get(), d.get(), static_cast<int64_t>(a.n));
  };
  put(tok_id_, d_tok_id_);
  put(tok_pos_, d_tok_pos_);
  put(tok_chunk_, d_tok_chunk_);
  put(row_tok_, d_row_tok_);
  put(write_slots_, d_write_slots_);
  put(list_begin_, d_list_begin_);
  put(list_end_, d_list_end_);
  put(chunk_pos0_, d_chunk_pos0_);
  put(chunk_tok0_, d_chunk_tok0_);
  // The pairs and the changes are read only by finish_upload's kernels, outside any graph: moving
  // them is harmless.
  if (taken_.n) d_taken_.grow_to(taken_.n);
  if (changes_.n) d_changes_.grow_to(changes_.n);
  copies.add(taken_.host.get(), d_taken_.get(), static_cast<int64_t>(taken_.n));
  copies.add(changes_.host.get(), d_changes_.get(), static_cast<int64_t>(changes_.n));
  // The arena grows only when it was laid out anew (stage()), so that nothing it held is lost.
  moved |= d_blocks_.grow_to(std::max<size_t>(arena_.size(), 1));
  moved |= d_pages_.grow_to(std::max<size_t>(arena_.size(), 1));
  return moved;
}

void StepInputs::finish_upload(cudaStream_t s, const int32_t* sampled) {
  if (taken_.n && !sampled) throw std::logic_error("StepInputs: tokens from the step before, but no sampled tokens");
  if (taken_.n) take_sampled_tokens(d_taken_.get(), static_cast<int>(taken_.n / 2), sampled, d_tok_id_.get(), s);
  if (changes_.n)
    scatter_list_entries(d_changes_.get(), static_cast<int>(changes_.n / 3), d_blocks_.get(), d_pages_.get(), s);
  staged_ = false;
}

}  // namespace hs::cuda
