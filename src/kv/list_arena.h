// A lasting place for the page lists of the steps a device runs. Each (sequence, layer, KV head)
// list keeps its place in one arena of (block, page) entries from step to step, with room to grow,
// so that a device copy of the arena is brought up to date by writing only the entries that
// changed since the last step -- a block appended, the blocks behind a freed one -- instead of
// uploading every list of every step. Between two blocks of a decode, a step changes nothing.
//
// Host-only bookkeeping (the backend owns the device copy). place() compares each list with its
// own copy of the arena, except a list it saw last time under the same KvStepMeta::list_stamp
// (the cache changes a list's stamp whenever it changes the list), so a step whose lists mostly
// did not change costs O(lists), and without stamps every list is checked.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "kv/paged_kv_cache.h"

namespace hs {

class ListArena {
 public:
  struct Entry {
    int32_t index, block, page;  // arena[index] = (block, page)
  };
  struct Placement {
    // List l of the step (KvStepMeta's numbering) is arena entries [begin[l], end[l]).
    std::vector<int32_t> begin, end;
    // Entries to write into a copy of the arena as it stood after the previous place() (or any
    // content, when `fresh`) so that it holds this step's lists.
    std::vector<Entry> changes;
    // The arena was laid out anew: every list of the step is in `changes`, and other sequences'
    // lists are forgotten (placed anew when they return).
    bool fresh = false;
  };

  // Places the lists of a step whose chunk c belongs to sequence seqs[c] (each sequence at most
  // once). Throws std::invalid_argument when seqs does not match the step.
  void place(const KvStepMeta& meta, const std::vector<int64_t>& seqs, Placement& out);
  // Entries a copy of the arena must hold (every index place() has returned is below it).
  int32_t size() const { return top_; }
  // Forgets every place: the next place() is fresh.
  void clear();

 private:
  struct Region {
    int32_t offset = 0, capacity = 0, length = 0;
    uint64_t stamp = 0;  // the list's stamp when it was placed (0: none)
  };
  struct SeqLists {
    std::vector<Region> lists;  // [layer * n_kv_heads + head]
    uint64_t stamp = 0;         // the last step that placed them
  };
  // Finds (or makes) the lists of the step's sequences: chunk_lists_.
  void find_sequences(const std::vector<int64_t>& seqs);
  // Gives the step's lists that outgrew their regions new ones at the end of the arena. Returns
  // the capacity the step's lists occupy.
  int64_t assign(const KvStepMeta& meta);

  int32_t lists_per_seq_ = 0;
  std::unordered_map<int64_t, SeqLists> seqs_;
  std::vector<int32_t> blocks_, pages_;  // the arena, as the last place() left it
  int32_t top_ = 0;                      // entries in use
  uint64_t step_ = 0;
  // Scratch of place(), kept to spare the allocations: per chunk its sequence's lists, the
  // capacity they take and whether one outgrew its region; per list the first entry that changed
  // and the running change count.
  std::vector<Region*> chunk_lists_;
  std::vector<int64_t> live_;
  std::vector<uint8_t> grown_;
  std::vector<int32_t> first_, count_;
};

}  // namespace hs
