#include "backend/cuda/sampling_kernel.h"

#include <algorithm>
#include <climits>

#include "backend/cuda/cuda_check.h"
#include "pdl.cuh"

namespace hs::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
// Greedy rows of a launch of at most kSplitMaxRows rows split into slices of at least kSliceMin
// logits, at most kMaxSlices: one block reads 128 KB of a row per round of loads, and a row of
// 128,256 logits took it four rounds (9 us of a batch-1 step; kernels/NOTES.md, session 30).
constexpr int kSliceMin = 2048, kMaxSlices = 16, kSplitMaxRows = 16;
constexpr int kScratchRecord = 2 * kMaxSlices + 1;  // a row's partial values, their indices, its counter

// Larger floats map to larger keys (negative floats reversed), so a threshold on logits is a
// threshold on keys and bisection over the 32 key bits finds any order statistic.
__device__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Sum over the block, in a fixed order (the same result every run); every thread gets it.
__device__ double block_sum(double v, double* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();  // scratch may still be read from the previous call
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  v = scratch[threadIdx.x & 31];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The better of two (value, index) candidates: larger value, then lower index.
__device__ void keep_better(float& v, int& i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}

// This thread's arg-max over its share of x[0, n): 16-byte loads, eight in flight (the result does
// not depend on the order, keep_better breaking ties by index), when x is 16-byte aligned.
__device__ void arg_max_of(const float* x, int n, float& best, int& best_i) {
  constexpr int kLoads = 8;
  int vec_end = 0;
  if ((reinterpret_cast<uintptr_t>(x) & 15) == 0) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const int n4 = n / 4;
    for (int i0 = threadIdx.x; i0 < n4; i0 += kLoads * kThreads) {
      float4 v[kLoads];
#pragma unroll
      for (int u = 0; u < kLoads; ++u) v[u] = i0 + u * kThreads < n4 ? x4[i0 + u * kThreads] : float4{};
#pragma unroll
      for (int u = 0; u < kLoads; ++u)
        if (i0 + u * kThreads < n4) {
          const int i = 4 * (i0 + u * kThreads);
          keep_better(best, best_i, v[u].x, i);
          keep_better(best, best_i, v[u].y, i + 1);
          keep_better(best, best_i, v[u].z, i + 2);
          keep_better(best, best_i, v[u].w, i + 3);
        }
    }
    vec_end = 4 * n4;
  }
  for (int i0 = vec_end + threadIdx.x; i0 < n; i0 += kLoads * kThreads) {
    float v[kLoads];
#pragma unroll
    for (int u = 0; u < kLoads; ++u) v[u] = i0 + u * kThreads < n ? x[i0 + u * kThreads] : -INFINITY;
#pragma unroll
    for (int u = 0; u < kLoads; ++u)
      if (i0 + u * kThreads < n) keep_better(best, best_i, v[u], i0 + u * kThreads);
  }
}

// Arg-max over the block; every thread gets it.
__device__ void block_argmax(float& v, int& i, float* fs, int* is) {
  for (int o = 16; o > 0; o >>= 1) keep_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    fs[threadIdx.x >> 5] = v;
    is[threadIdx.x >> 5] = i;
  }
  __syncthreads();
  v = fs[threadIdx.x & 31];
  i = is[threadIdx.x & 31];
  for (int o = 16; o > 0; o >>= 1) keep_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
}

// A prefix of the tokens in descending order (ties by ascending index): token i is in it when
// key > thr, or key == thr and i <= cut.
struct Prefix {
  uint32_t thr = 0;
  int cut = INT_MAX;
  __device__ bool has(uint32_t key, int i) const { return key > thr || (key == thr && i <= cut); }
};

// The shortest prefix inside `p` whose weight (sum of w(logit) over its tokens) reaches target:
// the largest key threshold t with weight(p, key >= t) >= target, then as many of the tokens
// equal to t (in index order) as the target needs. target must not exceed p's weight.
template <typename W>
__device__ Prefix cut_prefix(const float* x, int vocab, Prefix p, double target, W w, double* ds, int* is) {
  uint32_t t = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t cand = t | (1u << bit);
    double f = 0.0;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const uint32_t k = order_key(x[i]);
      if (k >= cand && p.has(k, i)) f += w(x[i]);
    }
    if (block_sum(f, ds) >= target) t = cand;
  }
  // Tokens with key t all hold the same float (keys are its bits, reordered).
  const float tie_value = __uint_as_float((t & 0x80000000u) ? (t & 0x7fffffffu) : ~t);
  double above = 0.0, ties = 0.0;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const uint32_t k = order_key(x[i]);
    if (k > t && p.has(k, i)) above += w(x[i]);
    ties += k == t && p.has(k, i);
  }
  above = block_sum(above, ds);
  const int n_ties = static_cast<int>(block_sum(ties, ds));
  Prefix out{t, p.thr == t ? p.cut : INT_MAX};
  // fmin/fmax also tame inf and NaN (a weight that underflowed).
  const int need = static_cast<int>(ceil(fmin(fmax((target - above) / w(tie_value), 1.0), static_cast<double>(n_ties))));
  if (need >= n_ties) return out;
  // The need-th tie in index order bounds the prefix.
  __shared__ int s_cut, s_seen;
  if (threadIdx.x == 0) s_seen = 0;
  __syncthreads();
  for (int base = 0; base < vocab; base += kThreads) {
    const int i = base + threadIdx.x;
    const bool tie = i < vocab && order_key(x[i]) == t && p.has(t, i);
    const unsigned ballot = __ballot_sync(0xffffffffu, tie);
    if ((threadIdx.x & 31) == 0) is[threadIdx.x >> 5] = __popc(ballot);
    __syncthreads();
    int before = s_seen, total = 0;
    for (int wi = 0; wi < kWarps; ++wi) {
      if (wi < static_cast<int>(threadIdx.x >> 5)) before += is[wi];
      total += is[wi];
    }
    before += __popc(ballot & ((1u << (threadIdx.x & 31)) - 1u));
    if (tie && before + 1 == need) s_cut = i;
    __syncthreads();
    if (threadIdx.x == 0) s_seen += total;
    __syncthreads();
    if (s_seen >= need) break;
  }
  out.cut = s_cut;
  return out;
}

__device__ float uniform01(uint64_t seed, int i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(i) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (static_cast<float>(z >> 40) + 0.5f) * 0x1.0p-24f;  // in (0, 1)
}

// A greedy row split over gridDim.y blocks: block y applies the edits of its slice of the row and
// takes the slice's arg-max, and the last block of the row to finish (a counter in the row's
// scratch record: kMaxSlices values, kMaxSlices indices, the counter) picks the best of them.
__device__ void greedy_split(float* x, int vocab, const SampleRow& r, const LogitEdit* edits, int32_t* token,
                             uint8_t* mask, int32_t* record, float* fs, int* is) {
  const int n_slices = gridDim.y, slice = blockIdx.y;
  const int per = ((vocab + n_slices - 1) / n_slices + 3) & ~3;  // a multiple of 4: the slices keep x's alignment
  const int b0 = min(vocab, slice * per), b1 = min(vocab, b0 + per);
  for (int e = r.edit_begin + threadIdx.x; e < r.edit_end; e += kThreads) {
    const int t = edits[e].token;
    if (t >= b0 && t < b1) x[t] = edits[e].apply(x[t]);
  }
  __syncthreads();  // the slice's edits are visible to the whole block
  float best = -INFINITY;
  int best_i = INT_MAX;
  arg_max_of(x + b0, b1 - b0, best, best_i);
  if (best_i != INT_MAX) best_i += b0;
  block_argmax(best, best_i, fs, is);
  float* part_v = reinterpret_cast<float*>(record);
  int32_t* part_i = record + kMaxSlices;
  int32_t* counter = record + 2 * kMaxSlices;
  int last = 0;
  if (threadIdx.x == 0) {
    part_v[slice] = best;
    part_i[slice] = best_i;
    int before;  // releases this block's partial; in the last block, acquires the others'
    asm volatile("atom.add.acq_rel.gpu.s32 %0, [%1], 1;\n" : "=r"(before) : "l"(counter) : "memory");
    last = before == n_slices - 1;
  }
  if (!__syncthreads_or(last)) return;
  float v = -INFINITY;
  int i = INT_MAX;
  if (threadIdx.x < n_slices) v = __ldcg(part_v + threadIdx.x), i = __ldcg(part_i + threadIdx.x);
  block_argmax(v, i, fs, is);
  if (threadIdx.x == 0) {
    *token = i;
    *counter = 0;  // ready for the next launch
  }
  if (mask)
    for (int k = threadIdx.x; k < vocab; k += kThreads) mask[k] = k == i;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(float* logits, int64_t ld, int vocab, const SampleRow* rows, const LogitEdit* edits, int32_t* tokens,
                  uint8_t* kept, int32_t* scratch) {
  __shared__ float fs[kWarps];
  __shared__ double ds[kWarps];
  __shared__ int is[kWarps];
  kernels::pdl_begin();
  const SampleRow r = rows[blockIdx.x];
  float* x = logits + r.logits_row * ld;
  uint8_t* mask = kept ? kept + static_cast<int64_t>(blockIdx.x) * vocab : nullptr;
  if (gridDim.y > 1) {  // split launch: greedy rows take every block, the others their first alone
    if (r.temperature <= 0.0f) {
      greedy_split(x, vocab, r, edits, tokens + blockIdx.x, mask, scratch + blockIdx.x * kScratchRecord, fs, is);
      return;
    }
    if (blockIdx.y > 0) return;
  }

  // Bias and penalties, one thread per edited token.
  for (int e = r.edit_begin + threadIdx.x; e < r.edit_end; e += kThreads) x[edits[e].token] = edits[e].apply(x[edits[e].token]);
  __syncthreads();  // the edits are visible to the whole block

  float best = -INFINITY;
  int best_i = INT_MAX;
  arg_max_of(x, vocab, best, best_i);
  block_argmax(best, best_i, fs, is);
  if (r.temperature <= 0.0f) {
    if (threadIdx.x == 0) tokens[blockIdx.x] = best_i;
    if (mask)
      for (int i = threadIdx.x; i < vocab; i += kThreads) mask[i] = i == best_i;
    return;
  }

  const float temp = r.temperature, zmax = best / temp;
  // Unnormalized probabilities, as the CPU computes them (z in float, exp to 1 ulp).
  auto prob = [=](float v) { return static_cast<double>(expf(v / temp - zmax)); };
  Prefix p;
  if (r.top_k > 0 && r.top_k < vocab) p = cut_prefix(x, vocab, p, r.top_k, [](float) { return 1.0; }, ds, is);
  if (r.top_p < 1.0f) {
    double mass = 0.0;
    for (int i = threadIdx.x; i < vocab; i += kThreads)
      if (p.has(order_key(x[i]), i)) mass += prob(x[i]);
    mass = block_sum(mass, ds);
    p = cut_prefix(x, vocab, p, r.top_p * mass, prob, ds, is);
  }

  // Gumbel-max over the kept tokens: arg-max of z + g, g = -log(-log(u)), is a draw from their
  // renormalized softmax.
  float score = -INFINITY;
  int pick = INT_MAX;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float v = x[i];
    const bool keep = p.has(order_key(v), i) && (r.min_p <= 0.0f || prob(v) >= r.min_p);
    if (mask) mask[i] = keep;
    if (keep) keep_better(score, pick, v / temp - __logf(-__logf(uniform01(r.seed, i))), i);
  }
  block_argmax(score, pick, fs, is);
  if (threadIdx.x == 0) tokens[blockIdx.x] = pick;
}

}  // namespace

size_t sample_scratch_words() { return static_cast<size_t>(kSplitMaxRows) * kScratchRecord; }

void sample_tokens(float* logits, int64_t ld, int vocab, const SampleRow* rows, int n_rows, const LogitEdit* edits,
                   int32_t* tokens, uint8_t* kept, int32_t* scratch, cudaStream_t s) {
  if (n_rows <= 0) return;
  const int slices =
      scratch && n_rows <= kSplitMaxRows ? std::clamp((vocab + kSliceMin - 1) / kSliceMin, 1, kMaxSlices) : 1;
  HS_CUDA_CHECK(kernels::launch(sample_kernel, dim3(n_rows, slices), kThreads, 0, s, logits, ld, vocab, rows, edits,
                                tokens, kept, scratch));
}

}  // namespace hs::cuda
