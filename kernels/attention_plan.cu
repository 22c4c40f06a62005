// Host-side planning for the attention kernels (plan once per step, launch per layer).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <iterator>
#include <numeric>
#include <queue>
#include <unordered_map>
#include <vector>

#include "sharded_attention.h"

namespace hs::kernels {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Items of a list of len entries cut into splits of at most P entries (an empty list: one item).
int32_t splits_of(int32_t len, int32_t P) { return int32_t(std::max<int64_t>(1, ceil_div(len, P))); }

// Items of lists of these lengths cut so.
int64_t items_at(const std::vector<int32_t>& lens, int32_t P) {
  int64_t n = 0;
  for (int32_t len : lens) n += splits_of(len, P);
  return n;
}

// Estimated time (in list entries) of one layer's decode when lists are cut into splits of at most
// P entries: each thread block costs its entries plus a fixed overhead, and `slots` run at once.
// At most `lone` items (counting `empty` more, of empty lists, which cost nothing else): one wave of
// blocks alone on their multiprocessors, each streaming twice a shared slot's entries in the time.
// Few items: greedy longest-first onto the least loaded slot (wave quantization matters); many: the
// balanced bound and half an item's tail, or (whole_waves, decode variant 11) whole waves of the
// largest item.
double estimate(const std::vector<int32_t>& lens, int64_t empty, int64_t total, int32_t P, int32_t slots,
                int32_t lone, int32_t overhead, bool whole_waves) {
  int64_t n_items = 0;
  int32_t max_item = 0;
  for (int32_t n : lens) {
    const int32_t ns = splits_of(n, P);
    n_items += ns;
    max_item = std::max<int32_t>(max_item, int32_t(ceil_div(n, ns)));
  }
  if (n_items + empty <= lone) return 0.5 * max_item + overhead;
  // Many items: the balanced bound, plus half an item for the last wave, which is only partly
  // full (at 64 x 128k and 256 x 32k dense, that picks a split 0.6-1.6% faster on the H200).
  // whole_waves: as many waves of the largest item as the slots take.
  if (n_items > 4LL * slots)
    return whole_waves ? double(ceil_div(n_items, slots)) * (max_item + overhead)
                       : std::max<double>(max_item + overhead, double(total + int64_t(overhead) * n_items) / slots +
                                                                   0.5 * (max_item + overhead));
  std::vector<int32_t> sizes;
  sizes.reserve(n_items);
  for (int32_t n : lens) {
    const int32_t ns = splits_of(n, P);
    for (int32_t k = 0; k < ns; ++k) sizes.push_back(n / ns + (k < n % ns ? 1 : 0) + overhead);
  }
  std::sort(sizes.begin(), sizes.end(), std::greater<>());
  std::priority_queue<int64_t, std::vector<int64_t>, std::greater<>> load;
  for (int32_t i = 0; i < slots; ++i) load.push(0);
  int64_t makespan = 0;
  for (int32_t s : sizes) {
    const int64_t t = load.top() + s;
    load.pop();
    load.push(t);
    makespan = std::max(makespan, t);
  }
  return double(makespan);
}

// Spreads the ends of the first wave's blocks (DecodePlanOptions::stagger). Cuts item j of the
// first wave (items[first + j], j < slots, largest first) by frac * j / slots of its entries; the
// cut-off tails become items of their own, queued after the first wave with the rest, largest first.
// Renumbers every group's splits and workspace slots; returns the slots used (`partials` when
// nothing was cut).
int32_t stagger(std::vector<DecodeWorkItem>& items, size_t first, int32_t slots, double frac, int32_t min_entries,
                int32_t max_splits, int32_t partials) {
  const size_t n0 = items.size();
  std::unordered_map<int32_t, int32_t> n_splits;  // groups cut further
  for (int32_t j = 1; j < slots; ++j) {
    DecodeWorkItem& it = items[first + j];
    const int32_t len = it.e_end - it.e_begin;
    const int32_t cut = int32_t(frac * len * j / slots);
    if (cut < min_entries || len - cut < min_entries) continue;
    int32_t& ns = n_splits.try_emplace(it.group_id, it.n_splits).first->second;
    if (ns >= max_splits) continue;
    ++ns;
    DecodeWorkItem tail = it;
    it.e_end -= cut;
    tail.e_begin = it.e_end;
    items.push_back(tail);
  }
  if (items.size() == n0) return partials;
  std::stable_sort(items.begin() + first + slots, items.end(), [](const DecodeWorkItem& x, const DecodeWorkItem& y) {
    return x.e_end - x.e_begin > y.e_end - y.e_begin;
  });
  // Splits by entry order within each group; slots of the workspace in group order.
  std::vector<DecodeWorkItem*> order;
  for (size_t i = first; i < items.size(); ++i) order.push_back(&items[i]);
  std::sort(order.begin(), order.end(), [](const DecodeWorkItem* x, const DecodeWorkItem* y) {
    return x->group_id != y->group_id ? x->group_id < y->group_id : x->e_begin < y->e_begin;
  });
  partials = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && order[j]->group_id == order[i]->group_id) ++j;
    const int32_t ns = int32_t(j - i);
    for (size_t k = i; k < j; ++k) {
      order[k]->split = int32_t(k - i);
      order[k]->n_splits = ns;
      order[k]->partial0 = ns > 1 ? partials : 0;
    }
    if (ns > 1) partials += ns;
    i = j;
  }
  return partials;
}

int g_variant[2] = {0, 0};
bool g_programmatic = false;

}  // namespace

namespace detail {
// Decode variants 5 to 8 and 11 run variant 0's kernels (they change only what plan_decode does),
// and 10 runs them but the 128-token-tile kernel (decode_tiles_off).
int kernel_variant(int which) {
  const int v = g_variant[which & 1];
  return (which & 1) == 0 && ((v >= 5 && v <= 8) || v == 10 || v == 11) ? 0 : v;
}
bool decode_tiles_off() { return g_variant[0] == 10; }
}  // namespace detail

void set_kernel_variant(int32_t decode, int32_t prefill) {
  g_variant[0] = decode;
  g_variant[1] = prefill;
}

void set_programmatic_launch(bool on) { g_programmatic = on; }
bool programmatic_launch() { return g_programmatic; }

void plan_decode(const int32_t* indptr, const int32_t* list_end, const int32_t* decode_chunks, int32_t n_dc,
                 int32_t n_layers, int32_t n_kv_heads, int32_t block_size, const DecodePlanOptions& opt,
                 DecodePlan& plan) {
  plan.layer_begin.assign(n_layers + 1, 0);
  plan.max_partials = 0;
  plan.lone = false;
  plan.two_stage = false;
  plan.n_groups = n_dc * n_kv_heads;
  const int32_t slots = std::max(1, opt.slots);
  auto entries_of = [&](int32_t tokens) {
    return std::max<int32_t>(1, int32_t(ceil_div(std::max(tokens, 1), block_size)));
  };
  const int32_t min_entries = entries_of(opt.min_split_tokens);
  const int32_t min_lone_entries = std::min(min_entries, entries_of(opt.min_lone_split_tokens));
  // Variant 8 plans without the floor of grids of more than one wave.
  const int32_t min_wave_entries = g_variant[0] == 8 ? 1 : entries_of(opt.min_wave_split_tokens);
  const int32_t overhead = std::max<int32_t>(1, 128 / block_size);  // about two 64-token tiles
  const double stagger_frac = g_variant[0] == 5 ? 0.0 : opt.stagger;
  const bool lone_plans = g_variant[0] != 6 && opt.lone_slots > 0 && opt.lone_slots < slots;
  const bool whole_waves = g_variant[0] == 11;
  auto list_of = [&](int32_t chunk, int32_t layer, int32_t h) { return (chunk * n_layers + layer) * n_kv_heads + h; };
  std::vector<int32_t> lens(size_t(n_dc) * n_kv_heads), prev_lens;
  // The lists that hold entries, which the costs count: the engine pads its batches to a graph's
  // size with chunks of empty lists, whose items (one an empty list) go last and cost nearly nothing.
  std::vector<int32_t> live;
  int64_t n_empty = 0;
  std::vector<int32_t> cand;
  // Layers whose lists have the lengths of the previous layer's (the usual case) split alike: they
  // repeat the items of the last layer planned (its root), moved to their own lists. Planned
  // layers' items go to `planned` first, each list cut into equal splits of at most P entries,
  // largest first.
  std::vector<int32_t> root(n_layers, 0), planned_begin(n_layers + 1, 0);
  std::vector<DecodeWorkItem> planned;
  auto emit = [&](int32_t layer, int32_t P, int32_t grid) {
    const size_t first = planned.size();
    int32_t partials = 0;
    for (int32_t c = 0; c < n_dc; ++c)
      for (int32_t h = 0; h < n_kv_heads; ++h) {
        const int32_t n = lens[size_t(c) * n_kv_heads + h];
        const int32_t ns = splits_of(n, P);
        int32_t e = indptr[list_of(decode_chunks[c], layer, h)];
        for (int32_t k = 0; k < ns; ++k) {
          const int32_t len = n / ns + (k < n % ns ? 1 : 0);
          planned.push_back(DecodeWorkItem{decode_chunks[c], h, e, e + len, k, ns, ns > 1 ? partials : 0,
                                           c * n_kv_heads + h});
          e += len;
        }
        if (ns > 1) partials += ns;
      }
    std::stable_sort(planned.begin() + first, planned.end(), [](const DecodeWorkItem& x, const DecodeWorkItem& y) {
      return x.e_end - x.e_begin > y.e_end - y.e_begin;
    });
    const int64_t n_items = int64_t(planned.size() - first) - n_empty, last_wave = n_items % grid;
    const bool nearly_full = last_wave == 0 || last_wave >= 0.9 * grid;
    if (stagger_frac > 0 && n_items > grid && n_items <= 3 * grid && (partials > 0 || !nearly_full))
      partials = stagger(planned, first, grid, stagger_frac, min_entries, opt.max_splits, partials);
    plan.max_partials = std::max(plan.max_partials, partials);
  };
  for (int32_t layer = 0; layer < n_layers; ++layer) {
    planned_begin[layer] = int32_t(planned.size());
    int64_t total = 0;
    int32_t lmax = 0;
    for (int32_t c = 0; c < n_dc; ++c)
      for (int32_t h = 0; h < n_kv_heads; ++h) {
        const int32_t l = list_of(decode_chunks[c], layer, h);
        const int32_t n = (list_end ? list_end[l] : indptr[l + 1]) - indptr[l];
        lens[size_t(c) * n_kv_heads + h] = n;
        total += n;
        lmax = std::max(lmax, n);
      }
    if (layer > 0 && lens == prev_lens) {
      root[layer] = root[layer - 1];
      continue;
    }
    root[layer] = layer;
    prev_lens = lens;
    live.clear();
    std::copy_if(lens.begin(), lens.end(), std::back_inserter(live), [](int32_t n) { return n > 0; });
    n_empty = int64_t(lens.size() - live.size());
    // Entries per split for a grid of `grid` slots: candidates that fill the slots k times over, or
    // cut the longest list into s equal parts; the best estimate wins (ties: fewer splits).
    auto choose = [&](int32_t grid) {
      const int32_t split_floor = int32_t(ceil_div(std::max(lmax, 1), std::max(opt.max_splits, 1)));
      const int32_t floor_p = std::max(min_entries, split_floor);
      const int32_t lone_floor_p = std::max(min_lone_entries, split_floor);
      const int64_t work = std::max<int64_t>(total, 1);
      cand.clear();
      cand.push_back(std::max(lmax, 1));
      for (int32_t k = 1; k <= 8; ++k) cand.push_back(int32_t(ceil_div(work, int64_t(k) * grid)));
      if (opt.lone_slots > 0) cand.push_back(int32_t(ceil_div(work, opt.lone_slots)));
      for (int32_t s = 1; s <= 16; ++s) cand.push_back(int32_t(ceil_div(std::max(lmax, 1), s)));
      // Splits shorter than floor_p only where the grid (the empty lists' items too) runs lone, and
      // shorter than wave_floor_p only where the live items fit one wave of the grid.
      const int32_t wave_floor_p = std::max(min_wave_entries, floor_p);
      for (int32_t& P : cand) {
        P = std::max(P, lone_floor_p);
        if (P < floor_p && items_at(lens, P) > opt.lone_slots) P = floor_p;
        if (P < wave_floor_p && items_at(live, P) > grid) P = wave_floor_p;
      }
      std::sort(cand.begin(), cand.end(), std::greater<>());
      cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
      int32_t best_p = cand.front();
      double best = estimate(live, n_empty, total, best_p, grid, opt.lone_slots, overhead, whole_waves);
      for (size_t i = 1; i < cand.size(); ++i) {
        const double e = estimate(live, n_empty, total, cand[i], grid, opt.lone_slots, overhead, whole_waves);
        if (e < best * 0.98) {
          best = e;
          best_p = cand[i];
        }
      }
      return best_p;
    };
    int32_t best_p = choose(plan.lone ? opt.lone_slots : slots);
    if (layer == 0) {  // decides the instance for the plan
      const int64_t tokens = total * block_size, n_items = items_at(live, best_p);
      if (lone_plans && n_items > slots) {
        const int32_t lone_p = choose(opt.lone_slots);
        const int64_t n_lists = std::max<int64_t>(1, int64_t(live.size()));
        const int64_t lone_items = items_at(live, lone_p);
        plan.lone = lone_items > opt.lone_slots && tokens >= int64_t(opt.lone_min_tokens) * n_lists &&
                    tokens >= int64_t(opt.lone_min_item_tokens) * lone_items;
        if (plan.lone) best_p = lone_p;
      }
      plan.two_stage = !plan.lone && g_variant[0] != 7 && n_items > slots &&
                       n_items <= int64_t(opt.two_stage_max_waves) * slots &&
                       tokens >= int64_t(opt.two_stage_min_item_tokens) * n_items;
    }
    emit(layer, best_p, plan.lone ? opt.lone_slots : slots);
  }
  planned_begin[n_layers] = int32_t(planned.size());

  // Every layer's items in place (O(items): at hundreds of sequences the bulk of the planning).
  auto root_count = [&](int32_t layer) { return planned_begin[root[layer] + 1] - planned_begin[root[layer]]; };
  for (int32_t layer = 0; layer < n_layers; ++layer)
    plan.layer_begin[layer + 1] = plan.layer_begin[layer] + root_count(layer);
  plan.items.resize(size_t(plan.layer_begin[n_layers]));
  auto lay_out = [&](int64_t l0, int64_t l1) {
    for (int32_t layer = int32_t(l0); layer < int32_t(l1); ++layer) {
      const int32_t r = root[layer];
      DecodeWorkItem* out = plan.items.data() + plan.layer_begin[layer];
      for (int32_t i = planned_begin[r]; i < planned_begin[r + 1]; ++i) {
        DecodeWorkItem it = planned[i];
        const int32_t shift = indptr[list_of(it.chunk, layer, it.kv_head)] - indptr[list_of(it.chunk, r, it.kv_head)];
        it.e_begin += shift;
        it.e_end += shift;
        *out++ = it;
      }
    }
  };
  const int64_t per_layer = std::max<int64_t>(1, plan.layer_begin[n_layers] / std::max(n_layers, 1));
  const int64_t layers_per_task = std::max<int64_t>(1, 8192 / per_layer);
  if (opt.parallel_for && layers_per_task < n_layers)
    opt.parallel_for(n_layers, layers_per_task, lay_out);
  else
    lay_out(0, n_layers);
}

size_t decode_workspace_bytes(const DecodePlan& plan, int32_t group, int32_t head_dim) {
  const size_t floats = size_t(plan.max_partials) * group * (head_dim + 1);
  return floats * sizeof(float) + size_t(std::max(plan.n_groups, 1)) * sizeof(int32_t);
}

void plan_prefill(const int32_t* chunk_ids, int32_t n_ids, const int32_t* pos0, const int32_t* tok0,
                  int32_t head_dim, std::vector<PrefillWorkItem>& items) {
  items.clear();
  const int32_t bm = prefill_block_m(head_dim);
  for (int32_t i = 0; i < n_ids; ++i) {
    const int32_t c = chunk_ids[i];
    const int32_t n = tok0[c + 1] - tok0[c];
    for (int32_t q = 0; q < n; q += bm)
      items.push_back(PrefillWorkItem{c, pos0[c] + q, tok0[c] + q, std::min(bm, n - q)});
  }
  // Largest first: by the position of the item's last query (more keys, more work).
  std::stable_sort(items.begin(), items.end(), [](const PrefillWorkItem& x, const PrefillWorkItem& y) {
    return int64_t(x.pos) + x.n_rows > int64_t(y.pos) + y.n_rows;
  });
}

}  // namespace hs::kernels
