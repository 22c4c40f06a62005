// Where the engine's page pool puts a decode's pages: N sequences of a model's shape reach a context
// length through the real PagedKvCache in three ways, and the lists of one layer's KV heads are
// summarized (and written out for kernels/results/layout_probe_s48.py --layout-file, which times the
// decode over them on a GPU):
//   prefill      a fresh pool; the sequences' prompts in turn, in chunks (the scheduler's order)
//   decode       a fresh pool; every sequence one chunk of prompt, then all grow a token a step
//   churn        a serving run in the background (--background sequences at a time, of random prompt
//                and output lengths, joining and leaving; --churn of them finish first), then the
//                measured prompts join it in chunks, the background taking a token a chunk
// The benchmark's pool (bench_attention.py) holds each list's pages back to back; the engine's pool
// is shared by every layer and head, and its free list is a stack.
//   bench_kv_layout [--model synthetic:PRESET|PATH] [--plan SPEC] [--seqs N] [--context N] [--chunk N]
//                   [--kv-memory BYTES] [--layer L] [--background N] [--churn N] [--seed S] [--json FILE]
// Prints per scenario: the share of a list's consecutive entries on consecutive pages, the 2 MiB
// regions the layer's pages touch against the fewest that could hold them, and the address span
// against the bytes read.
#include <algorithm>
#include <cstdio>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli/args.h"
#include "kv/paged_kv_cache.h"
#include "model/model.h"
#include "shard/shard_plan.h"

namespace {

struct Run {
  hs::PagedKvCache& kv;
  int chunk;
  void need(bool ok) const {
    if (!ok) throw std::runtime_error("the pool is too small (raise --kv-memory)");
  }
  void prefill(int64_t seq, int n) {
    for (int done = 0; done < n; done += chunk) {
      const int m = std::min(chunk, n - done);
      need(kv.reserve(seq, m));
      kv.commit(seq, m);
    }
  }
  void step(int64_t seq) { prefill(seq, 1); }
};

// A serving run in the background: `active` sequences at a time with prompts and outputs drawn from
// [chunk, context] and [16, context / 2]; each tick every one takes a token, and one that is done
// leaves and a new one joins (its prompt prefilled at once).
struct Background {
  Run& r;
  int context;
  std::mt19937 rng;
  int64_t next_id = 1 << 30;  // apart from the measured sequences' ids
  int finished = 0;
  struct Live { int64_t id; int left; };
  std::vector<Live> live;
  Background(Run& run, int active, int ctx, uint32_t seed) : r(run), context(ctx), rng(seed) {
    for (int i = 0; i < active; ++i) join();
  }
  void join() {
    std::uniform_int_distribution<int> prompt(std::min(r.chunk, context), context), output(16, std::max(16, context / 2));
    const int64_t id = next_id++;
    r.prefill(id, prompt(rng));
    live.push_back({id, output(rng)});
  }
  void tick() {
    for (size_t i = 0; i < live.size();) {
      r.step(live[i].id);
      if (--live[i].left > 0) {
        ++i;
        continue;
      }
      r.kv.release(live[i].id);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      ++finished;
      join();
    }
  }
};

}  // namespace

int main(int argc, char** argv) try {
  hs::cli::Args a(argc, argv, 1,
                  {"model", "plan", "seqs", "context", "chunk", "kv-memory", "layer", "background", "churn", "seed", "json"}, {});
  hs::LoadOptions lo;
  lo.load_weights = false;  // the shape is all this needs
  const std::string model = a.str("model", "synthetic:llama-3.1-8b");
  const hs::Model m = hs::load_model(model, lo);
  const hs::ShardPlan plan = hs::plan_from_spec(a.str("plan", "dense"), m.config);
  const int n_seqs = static_cast<int>(a.integer("seqs", 64));
  const int context = static_cast<int>(a.integer("context", 4096));
  const int chunk = static_cast<int>(a.integer("chunk", 512));
  const int layer = static_cast<int>(a.integer("layer", 0));
  const int background = static_cast<int>(a.integer("background", std::max(1, n_seqs / 4)));
  const int finished = static_cast<int>(a.integer("churn", 4 * background));
  const uint32_t seed = static_cast<uint32_t>(a.integer("seed", 49));
  if (n_seqs < 1 || context < 1 || chunk < 1 || layer < 0 || layer >= m.config.n_layers)
    throw std::invalid_argument("--seqs, --context and --chunk must be positive and --layer a layer of the model");
  const int64_t page_bytes = hs::PagedKvCache(m.config, plan, 0).page_bytes(2);
  const int64_t n_pages =
      std::min<int64_t>(a.bytes("kv-memory", int64_t(48) << 30) / page_bytes, INT32_MAX);
  constexpr int64_t kRegion = int64_t(2) << 20;

  nlohmann::json out = {{"model", model}, {"plan", plan.name()}, {"seqs", n_seqs}, {"context", context},
                        {"chunk", chunk}, {"layer", layer}, {"page_bytes", page_bytes}, {"pool_pages", n_pages},
                        {"scenarios", nlohmann::json::array()}};
  std::printf("%s, plan %s: %d sequences of %d tokens, layer %d's lists; a pool of %lld pages of %lld bytes\n\n",
              model.c_str(), plan.name().c_str(), n_seqs, context, layer, static_cast<long long>(n_pages),
              static_cast<long long>(page_bytes));
  std::printf("%-9s %14s %18s %12s %12s\n", "scenario", "adjacent", "2 MiB regions", "fewest", "span / read");
  for (const std::string name : {"prefill", "decode", "churn"}) {
    hs::PagedKvCache kv(m.config, plan, static_cast<int32_t>(n_pages));
    Run r{kv, chunk};
    if (name == "decode") {
      const int prompt = std::min(chunk, context);
      for (int s = 0; s < n_seqs; ++s) r.prefill(s, prompt);
      for (int t = prompt; t < context; ++t)
        for (int s = 0; s < n_seqs; ++s) r.step(s);
    } else if (name == "prefill") {
      for (int s = 0; s < n_seqs; ++s) r.prefill(s, context);
    } else {  // the measured prompts join a running server, a chunk a step
      Background bg(r, background, context, seed);
      while (bg.finished < finished) bg.tick();
      for (int s = 0; s < n_seqs; ++s)
        for (int done = 0; done < context; done += chunk) {
          r.prefill(s, std::min(chunk, context - done));
          bg.tick();
        }
    }
    nlohmann::json lists = nlohmann::json::array();
    int64_t pairs = 0, adjacent = 0, entries = 0;
    int32_t lo_page = INT32_MAX, hi_page = 0;
    std::set<int64_t> regions;
    for (int s = 0; s < n_seqs; ++s)
      for (int h = 0; h < m.config.n_kv_heads; ++h) {
        std::vector<int32_t> pages;
        for (const hs::BlockPage& bp : kv.pages(s, layer, h)) pages.push_back(bp.page);
        for (size_t j = 0; j < pages.size(); ++j) {
          if (j > 0) ++pairs, adjacent += pages[j] == pages[j - 1] + 1;
          regions.insert(pages[j] * page_bytes / kRegion);
          lo_page = std::min(lo_page, pages[j]);
          hi_page = std::max(hi_page, pages[j]);
        }
        entries += static_cast<int64_t>(pages.size());
        lists.push_back(pages);
      }
    const int64_t fewest = (entries * page_bytes + kRegion - 1) / kRegion;
    const double adj = pairs ? double(adjacent) / double(pairs) : 0.0;
    const double span = entries ? double(hi_page - lo_page + 1) / double(entries) : 0.0;
    std::printf("%-9s %13.1f%% %18zu %12lld %12.1f\n", name.c_str(), 100.0 * adj, regions.size(),
                static_cast<long long>(fewest), span);
    out["scenarios"].push_back({{"name", name}, {"adjacent", adj}, {"regions_2mib", regions.size()},
                                {"fewest_regions_2mib", fewest}, {"span_over_read", span},
                                {"highest_page", hi_page}, {"lists", lists}});
  }
  hs::bench::write_json(a.str("json", "bench_kv_layout.json"), out);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_kv_layout: %s\n", e.what());
  return 1;
}
