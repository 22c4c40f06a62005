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

// The loops over a step's sequences run in tasks of some thousands of lists (a few microseconds):
// a step of a few sequences is done before the pool's threads would wake.
int64_t seqs_per_task(int32_t lists_per_seq) { return std::max<int64_t>(1, 4096 / std::max(1, lists_per_seq)); }

}  // namespace

void ListArena::clear() {
  seqs_.clear();
  blocks_.clear();
  pages_.clear();
  top_ = 0;
}

// The step's sequences' lists, one per chunk (created for new sequences). Serial: O(chunks).
void ListArena::find_sequences(const std::vector<int64_t>& seqs) {
  ++step_;
  chunk_lists_.resize(seqs.size());
  for (size_t c = 0; c < seqs.size(); ++c) {
    SeqLists& s = seqs_[seqs[c]];
    if (s.stamp == step_)
      throw std::invalid_argument("ListArena: sequence " + std::to_string(seqs[c]) + " appears twice in a step");
    s.stamp = step_;
    s.lists.resize(lists_per_seq_);
    chunk_lists_[c] = s.lists.data();
  }
}

int64_t ListArena::assign(const KvStepMeta& meta) {
  const int32_t L = lists_per_seq_;
  const int32_t n_chunks = meta.n_chunks;
  // In parallel: the capacity the step's lists take and which outgrew their regions ...
  live_.assign(n_chunks, 0);
  grown_.assign(n_chunks, 0);
  ThreadPool::global().parallel_for(n_chunks, seqs_per_task(L), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int32_t i = 0; i < L; ++i) {
        const int64_t l = c * L + i;
        const Region& r = chunk_lists_[c][i];
        live_[c] += r.capacity;
        if (r.capacity < meta.indptr[l + 1] - meta.indptr[l]) grown_[c] = 1;
      }
  });
  // ... then, serially, new regions at the end of the arena for those.
  int64_t total = 0;
  for (int32_t c = 0; c < n_chunks; ++c) {
    if (grown_[c])
      for (int32_t i = 0; i < L; ++i) {
        const int32_t l = c * L + i;
        const int32_t n = meta.indptr[l + 1] - meta.indptr[l];
        Region& r = chunk_lists_[c][i];
        if (r.capacity >= n) continue;
        live_[c] -= r.capacity;
        r.capacity = capacity_for(n);
        if (static_cast<int64_t>(top_) + r.capacity > INT32_MAX)
          throw std::length_error("ListArena: over 2^31 entries");
        r.offset = top_;
        r.length = 0;  // nothing of it is in place yet
        top_ += r.capacity;
        live_[c] += r.capacity;
      }
    total += live_[c];
  }
  return total;
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

  find_sequences(seqs);
  if (top_ > 2 * assign(meta) + kSlack) {  // mostly abandoned: start over with this step's lists alone
    clear();
    find_sequences(seqs);
    assign(meta);
    out.fresh = true;
  }
  blocks_.resize(top_);
  pages_.resize(top_);

  // Each list against the arena (unless its stamp says it is as placed): the first entry that
  // differs onwards is written, into the arena here and into `changes` for the device's copy.
  first_.resize(n_lists);
  count_.assign(n_lists + 1, 0);
  out.begin.resize(n_lists);
  out.end.resize(n_lists);
  ThreadPool::global().parallel_for(meta.n_chunks, seqs_per_task(L), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int32_t i = 0; i < L; ++i) {
        const int64_t l = c * L + i;
        Region& r = chunk_lists_[c][i];
        const int32_t e = meta.indptr[l], n = meta.indptr[l + 1] - e;
        const uint64_t stamp = meta.list_stamp.empty() ? 0 : meta.list_stamp[l];
        const int32_t same = std::min(r.length, n);
        int32_t d = same;
        if (stamp == 0 || stamp != r.stamp || n != r.length) {
          const size_t bytes = sizeof(int32_t) * same;
          if (std::memcmp(&blocks_[r.offset], &meta.blocks[e], bytes) != 0 ||
              std::memcmp(&pages_[r.offset], &meta.pages[e], bytes) != 0) {
            d = 0;
            while (blocks_[r.offset + d] == meta.blocks[e + d] && pages_[r.offset + d] == meta.pages[e + d]) ++d;
          }
          std::copy(meta.blocks.begin() + e + d, meta.blocks.begin() + e + n, blocks_.begin() + r.offset + d);
          std::copy(meta.pages.begin() + e + d, meta.pages.begin() + e + n, pages_.begin() + r.offset + d);
        }
        r.length = n;
        r.stamp = stamp;
        first_[l] = d;
        count_[l + 1] = n - d;
        out.begin[l] = r.offset;
        out.end[l] = r.offset + n;
      }
  });
  for (int32_t l = 0; l < n_lists; ++l) count_[l + 1] += count_[l];
  out.changes.resize(count_[n_lists]);
  if (out.changes.empty()) return;
  ThreadPool::global().parallel_for(n_lists, 1024, [&](int64_t l0, int64_t l1) {
    for (int64_t l = l0; l < l1; ++l) {
      const int32_t e = meta.indptr[l];
      Entry* w = out.changes.data() + count_[l];
      for (int32_t i = first_[l]; i < out.end[l] - out.begin[l]; ++i)
        *w++ = Entry{out.begin[l] + i, meta.blocks[e + i], meta.pages[e + i]};
    }
  });
}

}  // namespace hs
