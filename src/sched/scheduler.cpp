#include "sched/scheduler.h"

#include <algorithm>

namespace hs {

SchedDecision Scheduler::schedule(const std::vector<SchedEntry>& entries, PagedKvCache& kv) const {
  SchedDecision d;
  std::vector<char> holds(entries.size()), gone(entries.size(), 0);
  for (size_t i = 0; i < entries.size(); ++i) holds[i] = entries[i].holds_kv;
  // Frees the newest entry after `asker` that holds pages; false when there is none.
  auto preempt_newer_than = [&](size_t asker, int& budget) {
    for (size_t v = entries.size(); v-- > asker + 1;) {
      if (!holds[v]) continue;
      kv.release(entries[v].id);
      holds[v] = 0;
      gone[v] = 1;  // waits for the next step, where it is recomputed from its tokens
      d.preempted.push_back(v);
      // It may already be planned for this step: its reservation is gone, so is its chunk.
      for (auto c = d.chunks.begin(); c != d.chunks.end();) {
        if (c->entry == v) {
          budget += c->n;
          c = d.chunks.erase(c);
        } else {
          ++c;
        }
      }
      return true;
    }
    return false;
  };

  int budget = options_.max_batch_tokens;
  const size_t n_run = std::min<size_t>(options_.max_seqs, entries.size());
  for (int pass = 0; pass < 2; ++pass) {  // decodes first, then prefill chunks
    for (size_t i = 0; i < n_run && budget > 0; ++i) {
      const SchedEntry& e = entries[i];
      if ((pass == 0) != e.decoding || gone[i]) continue;
      const int32_t n = std::min(e.pending, budget);
      bool fits = kv.reserve(e.id, n);
      while (!fits && preempt_newer_than(i, budget)) fits = kv.reserve(e.id, n);
      if (!fits) continue;  // waits for pages
      holds[i] = 1;
      d.chunks.push_back({i, n});
      budget -= n;
    }
  }
  return d;
}

}  // namespace hs
