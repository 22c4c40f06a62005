// `headshard kv-report`: KV bytes per sequence at a context length under a shard plan, by plan
// kind, measured on the paged cache's bookkeeping and predicted by the HCS formula; and how many
// such sequences fit in a memory budget, dense versus the plan.
#include <cstdio>
#include <string>

#include "cli/common.h"
#include "cli/commands.h"
#include "kv/paged_kv_cache.h"
#include "model/model.h"
#include "shard/shard_plan.h"

namespace hs::cli {

namespace {

struct PlanReport {
  int64_t heads[3] = {0, 0, 0};           // by HeadKind
  int64_t pages_measured[3] = {0, 0, 0};  // pages held after prefilling the context
  double tokens_formula[3] = {0, 0, 0};   // HCS.md's per-head estimate, summed
  int64_t seqs_fit = 0;                   // sequences admitted until the pool ran out
};

// HCS.md: a head keeps about sink*B + local*B + (T - (sink+local)*B)/stride tokens.
double formula_tokens(const HeadShard& h, int32_t B, int64_t T, int32_t window) {
  const double all = static_cast<double>(window > 0 ? std::min<int64_t>(T, window) : T);
  if (h.kind() == HeadKind::Dense) return all;
  const double fixed = static_cast<double>(h.sink + h.local) * B;
  if (T <= fixed) return all;
  const double rest = h.stride > 1 ? (T - fixed) / h.stride : 0.0;
  return std::min(all, fixed + rest);
}

// Fills a cache of `budget_pages` with sequences of `context` tokens, prefilled in chunks of
// `chunk`, until one no longer fits; the last one's pages are measured on the way.
PlanReport measure(const ModelConfig& c, const ShardPlan& plan, int64_t context, int64_t budget_pages, int32_t chunk) {
  PlanReport r;
  for (int l = 0; l < c.n_layers; ++l)
    for (int h = 0; h < c.n_kv_heads; ++h) {
      const HeadShard& hs = plan.at(l, h);
      const int k = static_cast<int>(hs.kind());
      ++r.heads[k];
      r.tokens_formula[k] += formula_tokens(hs, plan.block_size(), context, c.is_local(l) ? c.sliding_window : 0);
    }
  // One sequence alone, for the per-kind page counts.
  {
    PagedKvCache kv(c, plan, static_cast<int32_t>(PagedKvCache::pages_for_length(c, plan, context) +
                                                  (chunk / plan.block_size() + 2) * c.n_layers * c.n_kv_heads));
    for (int64_t done = 0; done < context;) {
      const int32_t n = static_cast<int32_t>(std::min<int64_t>(chunk, context - done));
      if (!kv.reserve(1, n)) break;
      kv.commit(1, n);
      done += n;
    }
    for (int k = 0; k < 3; ++k) r.pages_measured[k] = kv.pages_in_use(static_cast<HeadKind>(k));
  }
  // As many as the budget holds, each fully prefilled before the next starts.
  const int32_t pool_pages = static_cast<int32_t>(std::min<int64_t>(budget_pages, INT32_MAX));
  PagedKvCache kv(c, plan, pool_pages);
  for (int64_t seq = 1;; ++seq) {
    bool ok = true;
    for (int64_t done = 0; done < context && ok;) {
      const int32_t n = static_cast<int32_t>(std::min<int64_t>(chunk, context - done));
      ok = kv.reserve(seq, n);
      if (ok) kv.commit(seq, n);
      done += n;
    }
    if (!ok) break;
    r.seqs_fit = seq;
  }
  return r;
}

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

}  // namespace

int cmd_kv_report(int argc, char** argv) {
  Args a(argc, argv, 2, {"model", "plan", "context", "budget", "kv-dtype", "chunk"}, {});
  LoadOptions opt;
  opt.load_weights = false;
  const Model m = load_model(model_path(a), opt);
  const ModelConfig& c = m.config;
  const ShardPlan plan = plan_from_spec(a.str("plan", "dense"), c);
  const ShardPlan dense = dense_plan(c.n_layers, c.n_kv_heads, plan.block_size());
  const int64_t context = a.integer("context", c.context_length);
  if (context < 1 || context > c.context_length)
    throw std::invalid_argument("--context must be in [1, " + std::to_string(c.context_length) + "]");
  const std::string dtype = a.str("kv-dtype", "bf16");
  if (dtype != "bf16" && dtype != "f32") throw std::invalid_argument("--kv-dtype must be bf16 or f32");
  const int elem = dtype == "bf16" ? 2 : 4;
  const int64_t page_bytes = int64_t{2} * plan.block_size() * c.head_dim * elem;
  const int64_t budget = a.bytes("budget", int64_t{1} << 30);
  const int32_t chunk = static_cast<int32_t>(a.integer("chunk", 512));

  const PlanReport pr = measure(c, plan, context, budget / page_bytes, chunk);
  const PlanReport dr = measure(c, dense, context, budget / page_bytes, chunk);
  const double token_bytes = 2.0 * c.head_dim * elem;  // K and V of one token of one head

  std::printf("model %s, plan %s, block %d, context %lld tokens, KV %s, budget %s (%lld pages of %s)\n\n",
              m.source.c_str(), plan.name().c_str(), plan.block_size(), static_cast<long long>(context), dtype.c_str(),
              human(static_cast<double>(budget)).c_str(), static_cast<long long>(budget / page_bytes),
              human(static_cast<double>(page_bytes)).c_str());
  std::printf("%-10s %6s %16s %16s %16s\n", "kind", "heads", "bytes/seq", "formula", "per head");
  int64_t total_pages = 0;
  double total_formula = 0;
  for (int k = 0; k < 3; ++k) {
    if (pr.heads[k] == 0) continue;
    const double bytes = static_cast<double>(pr.pages_measured[k]) * page_bytes;
    std::printf("%-10s %6lld %16s %16s %16s\n", head_kind_name(static_cast<HeadKind>(k)),
                static_cast<long long>(pr.heads[k]), human(bytes).c_str(),
                human(pr.tokens_formula[k] * token_bytes).c_str(), human(bytes / pr.heads[k]).c_str());
    total_pages += pr.pages_measured[k];
    total_formula += pr.tokens_formula[k];
  }
  const double plan_bytes = static_cast<double>(total_pages) * page_bytes;
  const double dense_bytes = static_cast<double>(dr.pages_measured[0]) * page_bytes;
  std::printf("%-10s %6d %16s %16s\n\n", "total", c.n_layers * c.n_kv_heads, human(plan_bytes).c_str(),
              human(total_formula * token_bytes).c_str());
  std::printf("%-10s %16s %18s %12s\n", "", "bytes/seq", "sequences in budget", "ratio");
  std::printf("%-10s %16s %18lld %12s\n", "dense", human(dense_bytes).c_str(), static_cast<long long>(dr.seqs_fit), "1.00x");
  std::printf("%-10s %16s %18lld %11.2fx\n", "plan", human(plan_bytes).c_str(), static_cast<long long>(pr.seqs_fit),
              dense_bytes / plan_bytes);
  std::printf("\n'formula' is HCS's sink*B + local*B + (T - (sink+local)*B)/stride tokens per head (the model's\n"
              "sliding window caps it); 'bytes/seq' counts the pages the paged cache holds after a %lld-token\n"
              "prefill in chunks of %d; 'sequences in budget' fills a pool of the budget until one no longer fits.\n",
              static_cast<long long>(context), chunk);
  return 0;
}

}  // namespace hs::cli
