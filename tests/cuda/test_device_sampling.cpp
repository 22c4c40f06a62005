// The GPU sampler (src/backend/cuda/sampling_kernel.h) against the CPU Sampler: on random logits
// rows, with every filter and penalty, the set of tokens the GPU could draw equals
// Sampler::candidates() (ties cut in the same order; a token exactly at a top-p or min-p boundary
// may differ by rounding), greedy picks the same token, and 20,000 seeded draws follow the
// candidates' probabilities. Skips cleanly without a GPU or a CUDA build.
#include <gtest/gtest.h>

#ifdef HEADSHARD_WITH_CUDA

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "cuda/gpu_test.h"
#include "backend/cuda/sampling_kernel.h"
#include "engine/sampling.h"

namespace hs {
namespace {

using test::check_cuda;

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  check_cuda(cudaMalloc(reinterpret_cast<void**>(&d), std::max<size_t>(v.size(), 1) * sizeof(T)));
  if (!v.empty()) check_cuda(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <typename T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> v(n);
  check_cuda(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

struct GpuResult {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> kept;  // [row][vocab]
};

// Samples rows[i] from the host logits (n_logit_rows of vocab) on the GPU, with scratch (greedy
// rows of up to 16 split over several blocks) or without (one block a row). With scratch it samples
// twice, each time from fresh logits: the second launch finds the scratch as the first left it.
GpuResult sample_once(const std::vector<float>& logits, int vocab, const std::vector<cuda::SampleRow>& rows,
                      const std::vector<LogitEdit>& edits, bool want_kept, bool split) {
  cuda::SampleRow* d_rows = to_device(rows);
  LogitEdit* d_edits = to_device(edits);
  int32_t* d_scratch = split ? to_device(std::vector<int32_t>(cuda::sample_scratch_words(), 0)) : nullptr;
  GpuResult r;
  for (int launch = 0; launch < (split ? 2 : 1); ++launch) {
    float* d_logits = to_device(logits);  // edited in place
    int32_t* d_tokens = to_device(std::vector<int32_t>(rows.size(), -7));
    uint8_t* d_kept = want_kept ? to_device(std::vector<uint8_t>(rows.size() * vocab, 2)) : nullptr;
    cuda::sample_tokens(d_logits, vocab, vocab, d_rows, static_cast<int>(rows.size()), d_edits, d_tokens, d_kept,
                        d_scratch, nullptr);
    check_cuda(cudaDeviceSynchronize());
    const std::vector<int32_t> tokens = to_host(d_tokens, rows.size());
    if (launch > 0) EXPECT_EQ(tokens, r.tokens) << "vocab " << vocab << ": a second launch on the same scratch";
    r.tokens = tokens;
    if (want_kept) r.kept = to_host(d_kept, rows.size() * vocab);
    for (void* p : {static_cast<void*>(d_logits), static_cast<void*>(d_tokens), static_cast<void*>(d_kept)}) cudaFree(p);
  }
  for (void* p : {static_cast<void*>(d_rows), static_cast<void*>(d_edits), static_cast<void*>(d_scratch)}) cudaFree(p);
  return r;
}

// Both ways; they must agree token for token and flag for flag.
GpuResult sample_on_gpu(const std::vector<float>& logits, int vocab, const std::vector<cuda::SampleRow>& rows,
                        const std::vector<LogitEdit>& edits, bool want_kept) {
  const GpuResult one = sample_once(logits, vocab, rows, edits, want_kept, false);
  const GpuResult split = sample_once(logits, vocab, rows, edits, want_kept, true);
  EXPECT_EQ(split.tokens, one.tokens) << "vocab " << vocab << ": split greedy rows against one block a row";
  EXPECT_TRUE(split.kept == one.kept) << "vocab " << vocab << ": kept flags, split against one block a row";
  return split;
}

cuda::SampleRow row_for(const SamplingParams& p, int64_t logits_row, uint64_t seed) {
  cuda::SampleRow r;
  r.logits_row = logits_row;
  r.seed = seed;
  r.temperature = p.greedy() ? 0.0f : p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  return r;
}

struct Case {
  std::string name;
  SamplingParams p;
};

std::vector<Case> cases() {
  std::vector<Case> v;
  auto add = [&](std::string name, float t, int k, float top_p, float min_p) {
    SamplingParams p;
    p.temperature = t;
    p.top_k = k;
    p.top_p = top_p;
    p.min_p = min_p;
    v.push_back({std::move(name), p});
  };
  add("greedy", 0.0f, 0, 1.0f, 0.0f);
  add("top_k=1", 0.8f, 1, 1.0f, 0.0f);
  add("temperature", 0.7f, 0, 1.0f, 0.0f);
  add("top_k", 1.0f, 50, 1.0f, 0.0f);
  add("top_p", 0.9f, 0, 0.9f, 0.0f);
  add("min_p", 1.0f, 0, 1.0f, 0.05f);
  add("all three", 0.6f, 40, 0.8f, 0.02f);
  add("hot top_p", 1.7f, 0, 0.5f, 0.0f);
  add("top_k above vocab", 1.0f, 1 << 20, 0.95f, 0.0f);
  SamplingParams pen;
  pen.temperature = 0.9f;
  pen.top_p = 0.7f;
  pen.repetition_penalty = 1.3f;
  pen.presence_penalty = 0.5f;
  pen.frequency_penalty = 0.25f;
  pen.logit_bias = {{3, 5.0f}, {17, -100.0f}, {3, 1.5f}};
  v.push_back({"penalties", pen});
  pen.temperature = 0.0f;
  v.push_back({"greedy penalties", pen});
  return v;
}

// Every case on random rows: the GPU's kept set equals the CPU's candidates, greedy equals.
void expect_same_kept_sets(int vocab, const std::vector<float>& logits, int n_rows) {
  int boundary_diffs = 0;
  std::mt19937 rng(11);
  std::vector<int32_t> history(300);
  for (auto& t : history) t = static_cast<int32_t>(rng() % std::min(vocab, 64));  // repeats
  for (const Case& c : cases()) {
    std::vector<cuda::SampleRow> rows;
    std::vector<LogitEdit> edits, e;
    for (int r = 0; r < n_rows; ++r) {
      rows.push_back(row_for(c.p, r, 100 + r));
      logit_edits(c.p, &history, 200, vocab, e);
      rows.back().edit_begin = static_cast<int32_t>(edits.size());
      edits.insert(edits.end(), e.begin(), e.end());
      rows.back().edit_end = static_cast<int32_t>(edits.size());
    }
    const GpuResult g = sample_on_gpu(logits, vocab, rows, edits, true);
    for (int r = 0; r < n_rows; ++r) {
      Sampler cpu(c.p);
      const auto cand = cpu.candidates(logits.data() + static_cast<size_t>(r) * vocab, vocab, history, 200);
      std::set<int32_t> want, got;
      for (const auto& [t, prob] : cand) want.insert(t);
      for (int i = 0; i < vocab; ++i) {
        ASSERT_LE(g.kept[static_cast<size_t>(r) * vocab + i], 1) << "kept flag not written";
        if (g.kept[static_cast<size_t>(r) * vocab + i]) got.insert(i);
      }
      // The GPU sums probabilities in another order and precision, so a token right at a top-p or
      // min-p boundary may fall on the other side: at most two, each within two places of the
      // CPU's boundary in the CPU's order (a wrong filter differs by many tokens).
      const std::vector<float>& pen = cpu.last_logits();
      auto rank = [&](int32_t t) {
        int64_t n = 0;
        for (int i = 0; i < vocab; ++i) n += pen[i] > pen[t] || (pen[i] == pen[t] && i < t);
        return n;
      };
      std::vector<int32_t> diff;
      std::set_symmetric_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(diff));
      EXPECT_LE(diff.size(), 2u) << c.name << ", vocab " << vocab << ", row " << r << ": " << got.size()
                                 << " kept on the GPU, " << want.size() << " on the CPU";
      for (int32_t t : diff) {
        const int64_t k = rank(t);
        EXPECT_TRUE(k >= static_cast<int64_t>(want.size()) - 2 && k <= static_cast<int64_t>(want.size()) + 1)
            << c.name << ": token " << t << " of rank " << k << " differs, the CPU keeps " << want.size();
      }
      boundary_diffs += !diff.empty();
      EXPECT_TRUE(want.count(g.tokens[r])) << c.name << ": drew " << g.tokens[r] << ", not a candidate";
      if (c.p.greedy()) EXPECT_EQ(g.tokens[r], cand[0].first) << c.name;
    }
  }
  std::printf("vocab %d: %d of %zu rows differ at a boundary\n", vocab, boundary_diffs, n_rows * cases().size());
}

TEST(DeviceSampling, KeptTokensMatchTheCpuSamplersCandidates) {
  REQUIRE_GPU();
  for (int vocab : {1000, 49152, 262144}) {
    const int n_rows = 4;
    std::mt19937 rng(vocab);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> logits(static_cast<size_t>(n_rows) * vocab);
    for (float& x : logits) x = nd(rng);
    expect_same_kept_sets(vocab, logits, n_rows);
  }
}

TEST(DeviceSampling, TiesAreCutInIndexOrderAsOnTheCpu) {
  REQUIRE_GPU();
  // Logits on a grid of five values: every threshold falls inside a run of equal logits.
  const int vocab = 3000, n_rows = 3;
  std::mt19937 rng(5);
  std::vector<float> logits(static_cast<size_t>(n_rows) * vocab);
  for (float& x : logits) x = static_cast<float>(rng() % 5) * 0.75f;
  expect_same_kept_sets(vocab, logits, n_rows);
}

// Greedy reads a row by 16-byte loads where it is 16-byte aligned and element by element
// elsewhere: with vocab 1003, row 0 starts aligned and ends in a 3-element tail, rows 1-3 start at
// 4, 8 and 12 bytes past a boundary. With vocab 20483 a split launch cuts each row into 11 slices
// of 1864 (the last 1843): the positions checked include the slices' first and last tokens. A lone
// maximum at each position checked is found in every row.
TEST(DeviceSampling, GreedyFindsTheMaximumAtEveryAlignment) {
  REQUIRE_GPU();
  const int n_rows = 4;
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  std::vector<cuda::SampleRow> rows;
  for (int r = 0; r < n_rows; ++r) rows.push_back(row_for(greedy, r, 0));
  std::mt19937 rng(1003);
  std::uniform_real_distribution<float> ud(-5.0f, 5.0f);
  const std::vector<std::pair<int, std::vector<int>>> cases = {
      {1003, {0, 1, 3, 4, 511, 998, 999, 1000, 1001, 1002}},
      {20483, {0, 1863, 1864, 1865, 3727, 3728, 18639, 18640, 20479, 20482}}};
  for (const auto& [vocab, positions] : cases)
    for (int at : positions) {
      std::vector<float> logits(static_cast<size_t>(n_rows) * vocab);
      for (float& x : logits) x = ud(rng);
      for (int r = 0; r < n_rows; ++r) logits[static_cast<size_t>(r) * vocab + at] = 6.0f;
      EXPECT_EQ(sample_on_gpu(logits, vocab, rows, {}, false).tokens, std::vector<int32_t>(n_rows, at))
          << "vocab " << vocab << ", at " << at;
    }
}

TEST(DeviceSampling, DrawsFollowTheCandidateProbabilities) {
  REQUIRE_GPU();
  const int vocab = 40, n = 20000;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = nd(rng);
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_k = 25;
  p.top_p = 0.9f;
  std::vector<cuda::SampleRow> rows;
  for (int i = 0; i < n; ++i) rows.push_back(row_for(p, 0, 0x5eed0000ull + i));  // all read row 0
  const GpuResult g = sample_on_gpu(logits, vocab, rows, {}, false);
  std::vector<double> freq(vocab, 0.0);
  for (int32_t t : g.tokens) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, vocab);
    freq[t] += 1.0 / n;
  }
  Sampler cpu(p);
  std::vector<double> prob(vocab, 0.0);
  for (const auto& [t, q] : cpu.candidates(logits.data(), vocab, {}, 0)) prob[t] = q;
  for (int t = 0; t < vocab; ++t) {
    if (prob[t] == 0.0) {
      EXPECT_EQ(freq[t], 0.0) << "token " << t << " is filtered out but was drawn";
      continue;
    }
    // 4.5 standard deviations of a binomial frequency: a fixed-seed test that a wrong
    // distribution (a dropped temperature, a mass off by one token) fails.
    EXPECT_NEAR(freq[t], prob[t], 4.5 * std::sqrt(prob[t] * (1 - prob[t]) / n) + 1e-4) << "token " << t;
  }

  // The same seeds give the same draws; other seeds give others.
  EXPECT_EQ(sample_on_gpu(logits, vocab, rows, {}, false).tokens, g.tokens);
  for (auto& r : rows) r.seed += 1;
  EXPECT_NE(sample_on_gpu(logits, vocab, rows, {}, false).tokens, g.tokens);
}

}  // namespace
}  // namespace hs

#else  // built without CUDA

TEST(DeviceSampling, NotBuilt) { GTEST_SKIP() << "headshard was built without the CUDA backend"; }

#endif
