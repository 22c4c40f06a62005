#include "kv/list_arena.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include "util/thread_pool.h"

namespace hs {

namespace {

// Room for a list of n entries: a power of two with space for a few more blocks, so that a list
// moves (and is rewritten whole) only each time it doubles.
int32_t capacity_for(int32_t n) { return static_cast<int32_t>(std::bit_ceil(static_cast<uint32_t>(n) + 4)); }

// Abandoned regions (lists that moved, sequences gone) may take this much beyond twice the
// step's own lists before the arena is laid out anew.
constexpr int64_t kSlack = int64_t{1} << 16;

}  // namespace

void ListArena::clear() {
  seqs_.clear();
  blocks_.clear();
  pages_.clear();
  top_ = 0;
}

int64_t ListArena::assign(const KvStepMeta& meta, const std::vector<int64_t>& seqs, std::vector<Region*>& regions) {
  const int32_t L = lists_per_seq_;
  int64_t live = 0;
  ++step_;
  for (int32_t c = 0; c < meta.n_chunks; ++c) {
    SeqLists& s = seqs_[seqs[c]];
    if (s.stamp == step_)
      throw std::invalid_argument("ListArena: sequence " + std::to_string(seqs[c]) + " appears twice in a step");
    s.stamp = step_;
    s.lists.resize(L);
    for (int32_t i = 0; i < L; ++i) {
      const int32_t l = c * L + i;
      const int32_t n = meta.indptr[l + 1] - meta.indptr[l];
      Region& r = s.lists[i];
      if (r.capacity < n) {
        r.capacity = capacity_for(n);
        if (static_cast<int64_t>(top_) + r.capacity > INT32_MAX) throw std::length_error("ListArena: over 2^31 entries");
        r.offset = top_;
        r.length = 0;  // nothing of it is in place yet
        top_ += r.capacity;
      }
      live += r.capacity;
      regions[l] = &r;
    }
  }
  return live;
}

void ListArena::place(const KvStepMeta& meta, const std::vector<int64_t>& seqs, Placement& out) {
  if (static_cast<int32_t>(seqs.size()) != meta.n_chunks)
    throw std::invalid_argument("ListArena: " + std::to_string(seqs.size()) + " sequences for a step of " +
                                std::to_string(meta.n_chunks) + " chunks");
  const int32_t L = meta.n_layers * meta.n_kv_heads;
  const int32_t n_lists = meta.n_chunks * L;
  if (static_cast<int32_t>(meta.indptr.size()) != n_lists + 1 ||
      (!meta.list_stamp.empty() && static_cast<int32_t>(meta.list_stamp.size()) != n_lists))
    throw std::invalid_argument("ListArena: indptr or list_stamp does not describe the step's lists");
  out.fresh = L != lists_per_seq_ || top_ == 0;
  if (L != lists_per_seq_) clear();
  lists_per_seq_ = L;

  std::vector<Region*> regions(n_lists);
  const int64_t live = assign(meta, seqs, regions);
  if (top_ > 2 * live + kSlack) {  // mostly abandoned: start over with this step's lists alone
    clear();
    assign(meta, seqs, regions);
    out.fresh = true;
  }
  blocks_.resize(top_);
  pages_.resize(top_);

  // Each list against the arena: the first entry that differs onwards is written (into the
  // arena here, and into `changes` for the device's copy).
  std::vector<int32_t> first(n_lists), count(n_lists + 1, 0);
  out.begin.resize(n_lists);
  out.end.resize(n_lists);
  ThreadPool::global().parallel_for(n_lists, 256, [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      Region& r = *regions[l];
      const int32_t e = meta.indptr[l], n = meta.indptr[l + 1] - e;
      const uint64_t stamp = meta.list_stamp.empty() ? 0 : meta.list_stamp[l];
      const int32_t same = std::min(r.length, n);
      int32_t d = same;
      const size_t bytes = sizeof(int32_t) * same;
      if (stamp == 0 || stamp != r.stamp || n != r.length) {
        if (std::memcmp(&blocks_[r.offset], &meta.blocks[e], bytes) != 0 ||
            std::memcmp(&pages_[r.offset], &meta.pages[e], bytes) != 0) {
          d = 0;
          while (blocks_[r.offset + d] == meta.blocks[e + d] && pages_[r.offset + d] == meta.pages[e + d]) ++d;
        }
      }
      r.stamp = stamp;
      std::copy(meta.blocks.begin() + e + d, meta.blocks.begin() + e + n, blocks_.begin() + r.offset + d);
      std::copy(meta.pages.begin() + e + d, meta.pages.begin() + e + n, pages_.begin() + r.offset + d);
      r.length = n;
      first[l] = d;
      count[l + 1] = n - d;
      out.begin[l] = r.offset;
      out.end[l] = r.offset + n;
    }
  });
  for (int32_t l = 0; l < n_lists; ++l) count[l + 1] += count[l];
  out.changes.resize(count[n_lists]);
  if (out.changes.empty()) return;
  ThreadPool::global().parallel_for(n_lists, 1024, [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      const int32_t e = meta.indptr[l];
      Entry* w = out.changes.data() + count[l];
      for (int32_t i = first[l]; i < out.end[l] - out.begin[l]; ++i)
        *w++ = Entry{out.begin[l] + i, meta.blocks[e + i], meta.pages[e + i]};
    }
  });
}

}  // namespace hs
