// The per-head sharded, paged KV cache (bookkeeping; the backend owns the page storage).
//
// A page holds the K and V of one block (B tokens) for one (layer, KV head). Each (sequence,
// layer, KV head) owns the ordered list of pages of the blocks it keeps under the shard plan:
// sink blocks, blocks on its stride, and its recent window. Once a block is no longer needed by
// its head (HCS rule, and the model's own sliding window on local layers) the page returns to
// the pool at once. Running out of pages is an answer (reserve() returns false), never a crash.
//
// Step protocol, per sequence in a batch:
//   reserve(seq, n_new)  -- before the forward pass: pages for the blocks the new tokens touch
//   (backend writes K/V and attends through the lists; see KvStepMeta)
//   commit(seq, n_new)   -- after it: the tokens count, and dead blocks are freed
//
// When a block is needed: after the newest token t of a sequence (block c = t / B), block j of
// (layer l, KV head h) is kept iff the HCS rule keeps it -- j < sink, c - j < local, or j on the
// head's stride -- and, on the model's sliding-window layers (window W), the block still holds a
// token the newest query sees: (j + 1) * B - 1 >= t - W + 1. Future queries only move forward and
// both conditions are monotone, so a block dropped once is never needed again. Blocks beyond c
// (reserved ahead of a step) are always kept.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "model/config.h"
#include "shard/shard_plan.h"

namespace hs {

class PagePool {
 public:
  explicit PagePool(int32_t n_pages);
  int32_t capacity() const { return capacity_; }
  int32_t free_pages() const { return static_cast<int32_t>(free_.size()); }
  int32_t used_pages() const { return capacity_ - free_pages(); }
  // Pages come out lowest id first on a fresh pool; a released page is handed out again first.
  int32_t allocate();           // -1 when none is free
  void release(int32_t page);   // throws std::logic_error on a double free or a bad id
  bool in_use(int32_t page) const { return page >= 0 && page < capacity_ && in_use_[page]; }
 private:
  int32_t capacity_;
  std::vector<int32_t> free_;
  std::vector<uint8_t> in_use_;
};

struct BlockPage {
  int32_t block;  // logical block index in the sequence
  int32_t page;   // page in the pool
  bool operator==(const BlockPage&) const = default;
};

// Flat, GPU-friendly description of one step's KV reads and writes, built once per step.
// List index l = (chunk * n_layers + layer) * n_kv_heads + kv_head.
struct KvStepMeta {
  int32_t n_chunks = 0, n_layers = 0, n_kv_heads = 0, block_size = 0;
  std::vector<int32_t> indptr;  // n_lists + 1: entries [indptr[l], indptr[l+1]) belong to list l
  std::vector<int32_t> blocks;  // logical block of each entry, ascending within a list
  std::vector<int32_t> pages;   // page of each entry
  // Per list: a number the cache changes whenever it changes the list (0: not known), so that a
  // consumer that saw a list under the same number may skip comparing it (ListArena).
  std::vector<uint64_t> list_stamp;
  // Where each new token's K/V go, as page * block_size + slot, indexed
  // [(layer * n_kv_heads + kv_head) * n_tokens + token] over the step's tokens in batch order.
  std::vector<int32_t> write_slots;
  int32_t n_tokens = 0;
  // Per chunk: position of its first new token (the sequence's committed length), and where its
  // tokens start in the step's tokens (n_chunks + 1 prefix offsets).
  std::vector<int32_t> chunk_pos0;
  std::vector<int32_t> chunk_tok0;
  int32_t list(int32_t chunk, int32_t layer, int32_t kv_head) const {
    return (chunk * n_layers + layer) * n_kv_heads + kv_head;
  }
};

class PagedKvCache {
 public:
  // Throws std::invalid_argument when the plan's layer / KV-head counts do not match the model or
  // the block size is not positive.
  PagedKvCache(const ModelConfig& config, ShardPlan plan, int32_t n_pages);

  const ShardPlan& plan() const { return plan_; }
  PagePool& pool() { return pool_; }
  const PagePool& pool() const { return pool_; }

  int32_t length(int64_t seq) const;  // tokens committed; 0 for an unknown sequence
  int32_t reserved(int64_t seq) const;  // tokens with pages (>= length); 0 for an unknown one
  bool contains(int64_t seq) const { return seqs_.count(seq) != 0; }
  size_t n_sequences() const { return seqs_.size(); }
  // Pages to allocate so that the sequence can take n_new more tokens beyond those already
  // reserved (0 if they fit in the blocks it has): the new blocks times layers times KV heads.
  int64_t pages_needed(int64_t seq, int32_t n_new) const;
  // Allocates those pages (creating the sequence if new) and extends `reserved` by n_new. All or
  // nothing: false, with nothing changed (not even the sequence created), when the pool has too
  // few free pages. Throws std::invalid_argument for n_new < 0.
  bool reserve(int64_t seq, int32_t n_new);
  // Marks n_new reserved tokens as written and frees the pages no head needs any more (a block
  // written in this very step may already be dead, e.g. a long prefill chunk on a streaming
  // head). Throws std::logic_error for an unknown sequence or when length + n_new > reserved.
  void commit(int64_t seq, int32_t n_new);
  // Returns every page of the sequence to the pool; no-op for an unknown sequence.
  void release(int64_t seq);

  // The kept blocks of one head, ascending by block; empty for an unknown sequence.
  const std::vector<BlockPage>& pages(int64_t seq, int32_t layer, int32_t kv_head) const;

  // Fills `meta` for a step whose chunks are (seq, n_new) in batch order; every sequence must
  // have been reserved for its n_new tokens (throws std::logic_error otherwise) and appear once.
  // A list holds every kept block of its head, including blocks some of the chunk's queries no
  // longer attend (an early block during a long prefill chunk): kernels still apply the rule.
  void build_step(const std::vector<std::pair<int64_t, int32_t>>& chunks, KvStepMeta& meta) const;

  // Accounting.
  int64_t pages_in_use(HeadKind kind) const;   // over all sequences
  int64_t page_bytes(int bytes_per_element) const;  // K and V of one block of one head
  // The rule's page count for one sequence of n_tokens (every layer and head), as a formula: the
  // pages a sequence holds after committing n_tokens with nothing reserved beyond.
  static int64_t pages_for_length(const ModelConfig& config, const ShardPlan& plan, int64_t n_tokens);

 private:
  struct SeqState {
    int32_t length = 0;    // committed tokens
    int32_t reserved = 0;  // tokens with pages, >= length
    std::vector<std::vector<BlockPage>> lists;  // [layer * n_kv_heads + head]
    std::vector<uint64_t> stamps;               // per list: edits_ when it last changed
  };
  bool needed(int32_t layer, int32_t head, int64_t block, int64_t newest_token) const;
  int32_t window_of(int32_t layer) const { return local_layer_[layer] ? window_ : 0; }
  const SeqState* find(int64_t seq) const;
  // Drops the entries of one list that died between newest tokens t_prev (-1: none) and t;
  // true when it dropped any.
  bool free_dead(int32_t layer, int32_t head, std::vector<BlockPage>& list, int64_t t_prev, int64_t t);
  void free_page(int32_t layer, int32_t head, int32_t page);
  int32_t allocate_page(int32_t layer, int32_t head);

  int32_t n_layers_, n_kv_heads_, head_dim_, block_size_, window_;
  std::vector<bool> local_layer_;
  ShardPlan plan_;
  PagePool pool_;
  std::unordered_map<int64_t, SeqState> seqs_;
  std::vector<int64_t> used_by_kind_;  // indexed by HeadKind
  uint64_t edits_ = 0;                 // list changes so far: the source of list stamps
};

}  // namespace hs
