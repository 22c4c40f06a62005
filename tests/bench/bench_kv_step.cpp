// The host's per-step cost of the paged KV cache's bookkeeping during decode: N sequences of a
// model's shape at a context length each add one token per step (reserve), the step's metadata
// is built (build_step: every kept page of every head, the lists the kernels read) and the tokens
// are committed (commit: dead pages freed). No backend runs; this is the work the engine does on
// the CPU around every forward pass, and it grows with the pages held. Then the lists are placed
// in a ListArena as the CUDA backend does (place ms), which tells what that backend uploads of
// them: the changed entries (median, and the most in any step).
//   bench_kv_step [--model synthetic:PRESET|PATH] [--plan SPEC[|SPEC...]] [--seqs N[,N...]]
//                 [--context N] [--steps S] [--json FILE]
// Prints medians per step and writes every step's times as JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli/args.h"
#include "kv/list_arena.h"
#include "kv/paged_kv_cache.h"
#include "model/model.h"
#include "shard/shard_plan.h"
#include "util/thread_pool.h"

using hs::bench::median;

int main(int argc, char** argv) try {
  hs::cli::Args a(argc, argv, 1, {"model", "plan", "seqs", "context", "steps", "json"}, {});
  hs::LoadOptions lo;
  lo.load_weights = false;  // the shape is all this needs
  const hs::Model m = hs::load_model(a.str("model", "synthetic:llama-3.1-8b"), lo);
  const int context = static_cast<int>(a.integer("context", 1024));
  const int steps = static_cast<int>(a.integer("steps", 128));
  const auto seqs = hs::bench::int_list(a.str("seqs", "64,256"));
  const auto specs = hs::bench::split(a.str("plan", "dense|s2:stride=8,local=16,sink=1"), '|');
  nlohmann::json out = {{"model", a.str("model", "synthetic:llama-3.1-8b")}, {"context", context},
                        {"threads", hs::ThreadPool::global().size()}, {"runs", nlohmann::json::array()}};
  std::printf("%d CPU threads; decode steps after a %d-token context, medians over %d steps\n\n",
              hs::ThreadPool::global().size(), context, steps);
  std::printf("%-40s %6s %12s %12s %12s %12s %12s %10s %14s\n", "plan", "seqs", "list entries", "reserve ms",
              "build ms", "commit ms", "total ms", "place ms", "changed (max)");
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point x, Clock::time_point y) { return std::chrono::duration<double, std::milli>(y - x).count(); };
  for (const std::string& spec : specs) {
    const hs::ShardPlan plan = hs::plan_from_spec(spec, m.config);
    for (int n : seqs) {
      const int64_t pages = (hs::PagedKvCache::pages_for_length(m.config, plan, context + steps) +
                             2LL * m.config.n_layers * m.config.n_kv_heads) * n;
      hs::PagedKvCache kv(m.config, plan, static_cast<int32_t>(std::min<int64_t>(pages, INT32_MAX)));
      std::vector<std::pair<int64_t, int32_t>> chunks;
      for (int i = 0; i < n; ++i) {
        if (!kv.reserve(i, context)) throw std::runtime_error("pool too small");
        kv.commit(i, context);
        chunks.emplace_back(i, 1);
      }
      hs::KvStepMeta meta;
      hs::ListArena arena;  // what the CUDA backend uploads of the lists: the changes
      hs::ListArena::Placement placed;
      std::vector<int64_t> ids;
      for (auto [id, n_new] : chunks) ids.push_back(id);
      for (int i = 0; i < n; ++i)  // a first step: its placement writes everything
        if (!kv.reserve(i, 1)) throw std::runtime_error("pool too small");
      kv.build_step(chunks, meta);
      arena.place(meta, ids, placed);
      for (int i = 0; i < n; ++i) kv.commit(i, 1);
      std::vector<double> tr, tb, tc, tp, changed;
      for (int s = 0; s < steps; ++s) {
        const auto t0 = Clock::now();
        for (int i = 0; i < n; ++i)
          if (!kv.reserve(i, 1)) throw std::runtime_error("pool too small");
        const auto t1 = Clock::now();
        kv.build_step(chunks, meta);
        const auto t2 = Clock::now();
        for (int i = 0; i < n; ++i) kv.commit(i, 1);
        const auto t3 = Clock::now();
        arena.place(meta, ids, placed);
        const auto t4 = Clock::now();
        tr.push_back(ms(t0, t1));
        tb.push_back(ms(t1, t2));
        tc.push_back(ms(t2, t3));
        tp.push_back(ms(t3, t4));
        changed.push_back(static_cast<double>(placed.changes.size()));
      }
      std::vector<double> total(steps);
      for (int s = 0; s < steps; ++s) total[s] = tr[s] + tb[s] + tc[s];
      const double most = *std::max_element(changed.begin(), changed.end());
      std::printf("%-40s %6d %12zu %12.3f %12.3f %12.3f %12.3f %10.3f %6.0f (%5.0f)\n", plan.name().c_str(), n,
                  meta.pages.size(), median(tr), median(tb), median(tc), median(total), median(tp), median(changed),
                  most);
      out["runs"].push_back({{"plan", plan.name()}, {"seqs", n}, {"list_entries", meta.pages.size()},
                             {"reserve_ms", tr}, {"build_ms", tb}, {"commit_ms", tc}, {"place_ms", tp},
                             {"changed_entries", changed}, {"median_total_ms", median(total)}});
    }
  }
  hs::bench::write_json(a.str("json", "bench_kv_step.json"), out);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_kv_step: %s\n", e.what());
  return 1;
}
