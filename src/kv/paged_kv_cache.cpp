#include "kv/paged_kv_cache.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>

#include "util/thread_pool.h"

namespace hs {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The model's sliding window on a layer (0: none). Tolerates a short layer_is_local.
int32_t layer_window(const ModelConfig& config, int32_t layer) {
  const bool local = layer < static_cast<int32_t>(config.layer_is_local.size()) && config.layer_is_local[layer];
  return local ? config.sliding_window : 0;
}

// First block that still holds a token the query at t sees under a window of w tokens (0: none).
// (j + 1) * B - 1 >= t - w + 1  <=>  j >= floor((t - w + 1) / B) for t - w + 1 >= 0.
int64_t first_window_block(int64_t t, int32_t w, int32_t block_size) {
  if (w <= 0 || t - w + 1 <= 0) return 0;
  return (t - w + 1) / block_size;
}

// Blocks j in [a, b), 0 <= a, on the head's stride.
int64_t count_on_stride(const HeadShard& h, int64_t a, int64_t b) {
  if (a >= b || h.stride == 0) return 0;
  if (h.stride == 1) return b - a;
  // (j + offset) % stride == 0: multiples of stride in [a + offset, b + offset).
  return ceil_div(b + h.offset, h.stride) - ceil_div(a + h.offset, h.stride);
}

// Blocks 0..c kept by one head once the newest token is t (block c): those in [lo, c] that are
// sinks, recent, or on the stride, where lo is the first block inside the model's window.
int64_t kept_count(const HeadShard& h, int64_t t, int32_t window, int32_t block_size) {
  const int64_t c = t / block_size;
  const int64_t lo = first_window_block(t, window, block_size);
  const int64_t recent_lo = std::max<int64_t>(c - h.local + 1, 0);
  int64_t n = c + 1 - std::max(recent_lo, lo);                                  // recent window
  n += std::max<int64_t>(0, std::min<int64_t>(h.sink, recent_lo) - lo);         // older sinks
  n += count_on_stride(h, std::max<int64_t>(h.sink, lo), recent_lo);            // strided middle
  return n;
}

}  // namespace

// ---- PagePool ----

PagePool::PagePool(int32_t n_pages) : capacity_(n_pages) {
  if (n_pages < 0) throw std::invalid_argument("PagePool: negative page count");
  // A stack with page 0 on top: a fresh pool hands out 0, 1, 2, ...
  free_.reserve(n_pages);
  for (int32_t p = n_pages - 1; p >= 0; --p) free_.push_back(p);
  in_use_.assign(n_pages, 0);
}

int32_t PagePool::allocate() {
  if (free_.empty()) return -1;
  const int32_t p = free_.back();
  free_.pop_back();
  in_use_[p] = 1;
  return p;
}

void PagePool::release(int32_t page) {
  if (page < 0 || page >= capacity_)
    throw std::logic_error("PagePool: release of page " + std::to_string(page) + " outside the pool");
  if (!in_use_[page]) throw std::logic_error("PagePool: double free of page " + std::to_string(page));
  in_use_[page] = 0;
  free_.push_back(page);
}

// ---- PagedKvCache ----

PagedKvCache::PagedKvCache(const ModelConfig& config, ShardPlan plan, int32_t n_pages)
    : n_layers_(config.n_layers),
      n_kv_heads_(config.n_kv_heads),
      head_dim_(config.head_dim),
      block_size_(plan.block_size()),
      window_(config.sliding_window),
      plan_(std::move(plan)),
      pool_(n_pages),
      used_by_kind_(3, 0) {
  if (plan_.n_layers() != n_layers_ || plan_.n_kv_heads() != n_kv_heads_)
    throw std::invalid_argument("PagedKvCache: the shard plan has " + std::to_string(plan_.n_layers()) + " layers x " +
                                std::to_string(plan_.n_kv_heads()) + " KV heads, the model " +
                                std::to_string(n_layers_) + " x " + std::to_string(n_kv_heads_));
  if (block_size_ <= 0) throw std::invalid_argument("PagedKvCache: block size must be positive");
  // The bookkeeping relies on the newest block always being kept (local >= 1): then the block a
  // partly filled reservation ends in still has its page when the next reservation continues it.
  for (const HeadShard& h : plan_.heads())
    if (h.local < 1 || h.stride < 0 || h.sink < 0)
      throw std::invalid_argument("PagedKvCache: a head has local < 1 or a negative stride or sink");
  local_layer_.resize(n_layers_);
  for (int32_t l = 0; l < n_layers_; ++l) local_layer_[l] = layer_window(config, l) > 0;
}

const PagedKvCache::SeqState* PagedKvCache::find(int64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? nullptr : &it->second;
}

int32_t PagedKvCache::length(int64_t seq) const {
  const SeqState* s = find(seq);
  return s ? s->length : 0;
}

int32_t PagedKvCache::reserved(int64_t seq) const {
  const SeqState* s = find(seq);
  return s ? s->reserved : 0;
}

bool PagedKvCache::needed(int32_t layer, int32_t head, int64_t block, int64_t newest_token) const {
  const int64_t c = newest_token / block_size_;
  if (block > c) return true;  // reserved ahead for tokens not yet committed
  if (block < first_window_block(newest_token, window_of(layer), block_size_)) return false;
  return plan_.at(layer, head).attends_block(c, block);
}

int32_t PagedKvCache::allocate_page(int32_t layer, int32_t head) {
  const int32_t p = pool_.allocate();
  if (p < 0) throw std::logic_error("PagedKvCache: pool exhausted after a successful count");
  ++used_by_kind_[static_cast<int>(plan_.at(layer, head).kind())];
  return p;
}

void PagedKvCache::free_page(int32_t layer, int32_t head, int32_t page) {
  pool_.release(page);
  --used_by_kind_[static_cast<int>(plan_.at(layer, head).kind())];
}

int64_t PagedKvCache::pages_needed(int64_t seq, int32_t n_new) const {
  if (n_new <= 0) return 0;
  // Blocks below ceil(reserved / B) already have pages: a partly filled last block is the newest
  // (or a reserved-ahead) block, which is always kept.
  const int64_t r = reserved(seq);
  const int64_t new_blocks = ceil_div(r + n_new, block_size_) - ceil_div(r, block_size_);
  return new_blocks * n_layers_ * n_kv_heads_;
}

bool PagedKvCache::reserve(int64_t seq, int32_t n_new) {
  if (n_new < 0) throw std::invalid_argument("PagedKvCache::reserve: negative token count");
  if (pages_needed(seq, n_new) > pool_.free_pages()) return false;
  SeqState& s = seqs_[seq];
  if (s.lists.empty()) {
    s.lists.resize(static_cast<size_t>(n_layers_) * n_kv_heads_);
    s.stamps.resize(s.lists.size());
    for (uint64_t& st : s.stamps) st = ++edits_;
  }
  const int64_t first = ceil_div(s.reserved, block_size_);
  const int64_t end = ceil_div(static_cast<int64_t>(s.reserved) + n_new, block_size_);
  for (int32_t l = 0; l < n_layers_ && end > first; ++l)
    for (int32_t h = 0; h < n_kv_heads_; ++h) {
      auto& list = s.lists[l * n_kv_heads_ + h];
      for (int64_t j = first; j < end; ++j) list.push_back({static_cast<int32_t>(j), allocate_page(l, h)});
      s.stamps[l * n_kv_heads_ + h] = ++edits_;
    }
  s.reserved += n_new;
  return true;
}

bool PagedKvCache::free_dead(int32_t layer, int32_t head, std::vector<BlockPage>& list, int64_t t_prev, int64_t t) {
  const HeadShard& h = plan_.at(layer, head);
  // The model's window: the blocks it has left are a prefix of the list.
  const int64_t lo = first_window_block(t, window_of(layer), block_size_);
  size_t n_out = 0;
  while (n_out < list.size() && list[n_out].block < lo) free_page(layer, head, list[n_out++].page);
  list.erase(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(n_out));
  if (h.stride == 1) return n_out > 0;  // every block is on a dense head's stride
  // HCS: only blocks that left the recent window since the previous commit can have died; those
  // that left before were judged then (the rule is monotone). Sinks never leave.
  const int64_t prev_edge = t_prev < 0 ? 0 : t_prev / block_size_ - h.local + 1;
  const int64_t from = std::max<int64_t>(prev_edge, h.sink);
  const int64_t to = t / block_size_ - h.local + 1;  // exclusive: the recent window starts here
  if (from >= to) return n_out > 0;
  auto by_block = [](const BlockPage& e, int64_t b) { return e.block < b; };
  auto first = std::lower_bound(list.begin(), list.end(), from, by_block);
  auto last = std::lower_bound(first, list.end(), to, by_block);
  auto out = first;
  for (auto it = first; it != last; ++it) {
    if (needed(layer, head, it->block, t)) *out++ = *it;  // here: on the stride
    else free_page(layer, head, it->page);
  }
  const bool dropped = n_out > 0 || out != last;
  list.erase(out, last);
  return dropped;
}

void PagedKvCache::commit(int64_t seq, int32_t n_new) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) throw std::logic_error("PagedKvCache::commit: unknown sequence " + std::to_string(seq));
  SeqState& s = it->second;
  if (n_new < 0 || static_cast<int64_t>(s.length) + n_new > s.reserved)
    throw std::logic_error("PagedKvCache::commit: " + std::to_string(n_new) + " tokens but only " +
                           std::to_string(s.reserved - s.length) + " reserved");
  if (n_new == 0) return;
  const int64_t t_prev = static_cast<int64_t>(s.length) - 1;
  s.length += n_new;
  const int64_t t = static_cast<int64_t>(s.length) - 1;
  // A block dies only when the newest token enters a new block (the recent window moves) or the
  // model's window starts in a new one; most decode steps do neither and skip every list.
  if (t_prev >= 0 && t_prev / block_size_ == t / block_size_ &&
      first_window_block(t_prev, window_, block_size_) == first_window_block(t, window_, block_size_))
    return;
  for (int32_t l = 0; l < n_layers_; ++l)
    for (int32_t h = 0; h < n_kv_heads_; ++h)
      if (free_dead(l, h, s.lists[l * n_kv_heads_ + h], t_prev, t)) s.stamps[l * n_kv_heads_ + h] = ++edits_;
}

void PagedKvCache::release(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int32_t l = 0; l < n_layers_; ++l)
    for (int32_t h = 0; h < n_kv_heads_; ++h)
      for (const BlockPage& e : it->second.lists[l * n_kv_heads_ + h]) free_page(l, h, e.page);
  seqs_.erase(it);
}

const std::vector<BlockPage>& PagedKvCache::pages(int64_t seq, int32_t layer, int32_t kv_head) const {
  static const std::vector<BlockPage> kEmpty;
  const SeqState* s = find(seq);
  if (!s || s->lists.empty()) return kEmpty;
  return s->lists.at(static_cast<size_t>(layer) * n_kv_heads_ + kv_head);
}

void PagedKvCache::build_step(const std::vector<std::pair<int64_t, int32_t>>& chunks, KvStepMeta& meta) const {
  const int32_t n_chunks = static_cast<int32_t>(chunks.size());
  std::vector<const SeqState*> states(n_chunks);
  meta.n_chunks = n_chunks;
  meta.n_layers = n_layers_;
  meta.n_kv_heads = n_kv_heads_;
  meta.block_size = block_size_;
  meta.chunk_pos0.clear();
  meta.chunk_tok0.assign(1, 0);
  for (int32_t c = 0; c < n_chunks; ++c) {
    const auto [seq, n_new] = chunks[c];
    const SeqState* s = find(seq);
    if (!s || n_new < 0 || static_cast<int64_t>(s->length) + n_new > s->reserved)
      throw std::logic_error("PagedKvCache::build_step: sequence " + std::to_string(seq) + " is not reserved for " +
                             std::to_string(n_new) + " tokens");
    states[c] = s;
    meta.chunk_pos0.push_back(s->length);
    meta.chunk_tok0.push_back(meta.chunk_tok0.back() + n_new);
  }
  meta.n_tokens = meta.chunk_tok0.back();

  // Read lists, (chunk, layer, head) order.
  const int32_t per_chunk = n_layers_ * n_kv_heads_;
  meta.indptr.resize(static_cast<size_t>(n_chunks) * per_chunk + 1);
  meta.indptr[0] = 0;
  for (int32_t c = 0, l = 0; c < n_chunks; ++c)
    for (int32_t i = 0; i < per_chunk; ++i, ++l)
      meta.indptr[l + 1] = meta.indptr[l] + static_cast<int32_t>(states[c]->lists[i].size());
  meta.blocks.resize(meta.indptr.back());
  meta.pages.resize(meta.indptr.back());
  meta.list_stamp.resize(static_cast<size_t>(n_chunks) * per_chunk);
  for (int32_t c = 0; c < n_chunks; ++c)
    std::copy(states[c]->stamps.begin(), states[c]->stamps.end(), meta.list_stamp.begin() + c * per_chunk);
  // O(pages held) per step, so spread over the CPU's threads (chunks fill disjoint ranges).
  ThreadPool::global().parallel_for(n_chunks, 4, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int32_t i = 0; i < per_chunk; ++i) {
        const int64_t l = c * per_chunk + i;
        int32_t* blocks = meta.blocks.data() + meta.indptr[l];
        int32_t* pages = meta.pages.data() + meta.indptr[l];
        for (const BlockPage& e : states[c]->lists[i]) {
          *blocks++ = e.block;
          *pages++ = e.page;
        }
      }
  });

  // Write slots, (layer, head) major then the step's tokens. A chunk's positions are consecutive,
  // so one forward walk through the (ascending) list, from the first block, finds every block.
  // (Layer, head) pairs fill disjoint ranges, so they too spread over the threads, in tasks of
  // some thousands of list visits and slots: a decode step of a few sequences is done sooner
  // than the pool's threads wake.
  meta.write_slots.resize(static_cast<size_t>(per_chunk) * meta.n_tokens);
  std::atomic<bool> missing{false};  // thrown below: an exception must not leave a pool thread
  const int64_t lists_per_task = std::max<int64_t>(8, 2048 / (int64_t{n_chunks} + meta.n_tokens));
  ThreadPool::global().parallel_for(per_chunk, lists_per_task, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int32_t c = 0; c < n_chunks; ++c) {
        const auto& list = states[c]->lists[i];
        const int32_t pos0 = meta.chunk_pos0[c];
        int32_t* out = &meta.write_slots[static_cast<size_t>(i) * meta.n_tokens + meta.chunk_tok0[c]];
        // The first entry at or past the chunk's first block: a decode token's block is the
        // list's last or nearly so, so look from the back before searching.
        const int32_t first_block = pos0 / block_size_;
        auto it = list.end();
        for (int back = 0; back < 4 && it != list.begin() && (it - 1)->block >= first_block; ++back) --it;
        if (it != list.begin() && (it - 1)->block >= first_block)
          it = std::lower_bound(list.begin(), it, first_block,
                                [](const BlockPage& e, int32_t block) { return e.block < block; });
        for (int32_t k = 0; k < chunks[c].second; ++k) {
          const int32_t pos = pos0 + k;
          const int32_t block = pos / block_size_;
          while (it != list.end() && it->block < block) ++it;
          if (it == list.end() || it->block != block) {
            missing = true;
            return;
          }
          out[k] = it->page * block_size_ + pos % block_size_;
        }
      }
  });
  if (missing) throw std::logic_error("PagedKvCache::build_step: no page for a new token's block");
}

int64_t PagedKvCache::pages_in_use(HeadKind kind) const { return used_by_kind_[static_cast<int>(kind)]; }

int64_t PagedKvCache::page_bytes(int bytes_per_element) const {
  return 2LL * block_size_ * head_dim_ * bytes_per_element;
}

int64_t PagedKvCache::pages_for_length(const ModelConfig& config, const ShardPlan& plan, int64_t n_tokens) {
  if (n_tokens <= 0) return 0;
  int64_t n = 0;
  for (int32_t l = 0; l < plan.n_layers(); ++l) {
    const int32_t w = layer_window(config, l);
    for (int32_t h = 0; h < plan.n_kv_heads(); ++h) n += kept_count(plan.at(l, h), n_tokens - 1, w, plan.block_size());
  }
  return n;
}

}  // namespace hs
