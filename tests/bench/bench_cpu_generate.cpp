// Prompt-processing and generation speed of the CPU backend on a model.
//   bench_cpu_generate [--model PATH] [--prompt N[,N...]] [--gen N] [--batch B[,B...]] [--reps R] [--json FILE]
// Prints a table of medians over R repetitions and writes the raw numbers as JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "cli/args.h"
#include "engine/forward_runner.h"
#include "engine/sampling.h"
#include "model/model.h"
#include "util/thread_pool.h"

namespace {

std::vector<int> int_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) v.push_back(std::stoi(item));
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) try {
  hs::cli::Args a(argc, argv, 1, {"model", "prompt", "gen", "batch", "reps", "json"}, {});
  const std::string path = a.str("model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
  const auto prompts = int_list(a.str("prompt", "128,512"));
  const auto batches = int_list(a.str("batch", "1,4"));
  const int gen = static_cast<int>(a.integer("gen", 32));
  const int reps = static_cast<int>(a.integer("reps", 3));
  const std::string json_path = a.str("json", "bench_cpu_generate.json");

  hs::Model m = hs::load_model(path);
  auto be = hs::make_cpu_backend(m.weights);
  hs::ForwardRunner run(*be, hs::dense_plan(m.config.n_layers, m.config.n_kv_heads), int64_t{4} << 30);
  std::mt19937 rng(42);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = static_cast<int32_t>(rng() % m.config.vocab_size);
    return t;
  };
  nlohmann::json out = {{"model", path}, {"threads", hs::ThreadPool::global().size()}, {"reps", reps},
                        {"prefill", nlohmann::json::array()}, {"decode", nlohmann::json::array()}};
  std::printf("model %s, %d threads, median of %d runs\n\n", path.c_str(), hs::ThreadPool::global().size(), reps);
  std::printf("%-28s %12s %12s\n", "test", "tokens/s", "ms/step");
  int64_t seq = 1;
  for (int n : prompts) {
    std::vector<double> tps;
    for (int r = 0; r < reps; ++r) {
      hs::Batch b;
      b.chunks.push_back({seq, 0, random_tokens(n), false});
      const auto t0 = std::chrono::steady_clock::now();
      run.forward(b);
      tps.push_back(n / seconds_since(t0));
      run.release(seq++);
    }
    const double med = median(tps);
    std::printf("%-28s %12.1f %12.1f\n", ("prompt processing pp" + std::to_string(n)).c_str(), med, 1000.0 * n / med);
    out["prefill"].push_back({{"prompt_tokens", n}, {"tokens_per_s", tps}, {"median_tokens_per_s", med}});
  }
  for (int bsz : batches) {
    std::vector<double> tps;
    for (int r = 0; r < reps; ++r) {
      // Each sequence starts from a 64-token prompt, then decodes `gen` tokens greedily.
      std::vector<int64_t> ids;
      std::vector<int32_t> last(bsz);
      hs::Batch pre;
      for (int i = 0; i < bsz; ++i) {
        ids.push_back(seq++);
        pre.chunks.push_back({ids.back(), 0, random_tokens(64), false});
      }
      const hs::Logits& lp = run.forward(pre);
      for (int i = 0; i < bsz; ++i) last[i] = hs::argmax(lp.last_row_of(i, pre), lp.vocab);
      const auto t0 = std::chrono::steady_clock::now();
      for (int s = 0; s < gen; ++s) {
        hs::Batch b;
        for (int i = 0; i < bsz; ++i) b.chunks.push_back({ids[i], 64 + s, {last[i]}, false});
        const hs::Logits& lg = run.forward(b);
        for (int i = 0; i < bsz; ++i) last[i] = hs::argmax(lg.last_row_of(i, b), lg.vocab);
      }
      tps.push_back(static_cast<double>(gen) * bsz / seconds_since(t0));
      for (int64_t id : ids) run.release(id);
    }
    const double med = median(tps);
    std::printf("%-28s %12.1f %12.1f\n", ("generation tg" + std::to_string(gen) + " batch " + std::to_string(bsz)).c_str(),
                med, 1000.0 * bsz / med);
    out["decode"].push_back({{"batch", bsz}, {"new_tokens", gen}, {"tokens_per_s", tps}, {"median_tokens_per_s", med}});
  }
  std::ofstream(json_path) << out.dump(2) << "\n";
  std::printf("\nwrote %s\n", json_path.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_generate: %s\n", e.what());
  return 1;
}
