// The GPU attention kernels (kernels/sharded_attention.h) against the CPU reference
// (hs::cpu::paged_attention) on fresh random inputs: every plan kind (dense, strided, streaming,
// mixed; sinks on and off), block sizes 16 and 64 (and 32 / 128 for the tile mapping), GQA groups
// 1, 3, 4, 8, head dims 64, 128, 256, with and without a model window; decode with forced splits.
//
// The reference runs on the same bf16-rounded inputs in fp32. Every page not in a list and every
// slot after a chunk's last token holds NaN, so a read of anything the rule hides shows up as NaN;
// outputs are poisoned (bf16 NaN) before each launch, so an unwritten output fails too. Lists also
// hold a few extra blocks no query of the chunk attends (as the cache's lists can), with finite
// data. Skips cleanly where there is no CUDA device.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bf16_host.h"
#include "cpu_reference.h"
#include "sharded_attention.h"
#include "tile_search.cuh"

namespace {

namespace K = hs::kernels;

// A KV head's shard and the HCS rule, written out here from the rule itself.
struct HeadShard {
  int sink = 0, local = 1, stride = 1, offset = 0;
  bool on_stride(int64_t j) const { return stride == 1 || (stride > 1 && (j + offset) % stride == 0); }
  bool attends_block(int64_t i, int64_t j) const { return j < sink || i - j < local || on_stride(j); }
  bool attends(int64_t t, int64_t s, int B) const { return s <= t && attends_block(t / B, s / B); }
};

bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
#define REQUIRE_GPU()                                       \
  do {                                                      \
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device here"; \
  } while (0)
#define CK(call)                                                                           \
  do {                                                                                     \
    const cudaError_t e_ = (call);                                                         \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorString(e_);                 \
  } while (0)

using hs::test::from_bf16;
using hs::test::to_bf16;
constexpr uint16_t kPoison = 0xffff;  // a bf16 NaN
const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct DevBuf {
  void* p = nullptr;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  template <class T>
  cudaError_t upload(const std::vector<T>& v) {
    if (p) cudaFree(p), p = nullptr;
    cudaError_t e = cudaMalloc(&p, std::max<size_t>(v.size() * sizeof(T), 16));
    if (e != cudaSuccess) return e;
    return v.empty() ? cudaSuccess : cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

enum class Kind { Dense, Strided, Streaming, Mixed };
const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Dense: return "dense";
    case Kind::Strided: return "strided";
    case Kind::Streaming: return "streaming";
    default: return "mixed";
  }
}

int uni(std::mt19937_64& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

HeadShard random_shard(Kind kind, bool sinks, std::mt19937_64& rng) {
  if (kind == Kind::Mixed) kind = static_cast<Kind>(uni(rng, 0, 2));
  HeadShard h;
  h.sink = sinks ? uni(rng, 1, 2) : 0;
  h.local = uni(rng, 1, 4);
  if (kind == Kind::Dense) h.stride = 1, h.offset = 0;
  if (kind == Kind::Streaming) h.stride = 0, h.offset = 0;
  if (kind == Kind::Strided) h.stride = uni(rng, 2, 6), h.offset = uni(rng, 0, h.stride - 1);
  return h;
}

bool sees(const HeadShard& h, int B, int window, int64_t t, int64_t s) {
  return h.attends(t, s, B) && (window == 0 || t - s < window);
}

struct Chunk {
  int pos0, n_new;
};

struct Problem {
  int D = 128, B = 64, G = 4, n_kv = 2, n_layers = 2, layer = 1, window = 0;
  Kind kind = Kind::Dense;
  bool sinks = false;
  std::vector<Chunk> chunks;
  uint64_t seed = 1;
  float q_scale = 1.5f;
  float k_rise = 0.f;  // K at position s scaled by 1 + k_rise * s: later keys' scores rise
};

// Everything a launch reads, on the host and the device.
struct Fixture {
  Problem pr;
  int n_q = 0, n_tokens = 0, n_pages = 0;
  std::vector<HeadShard> shards;  // [layer][kv]
  std::vector<int32_t> indptr, blocks, pages, pos0, tok0;
  // The same lists apart, as the CUDA backend's arena holds them: list l at [begin[l], end[l]) of
  // a_blocks / a_pages, behind a gap of entries that name block 0 on a page of NaN.
  std::vector<int32_t> begin, end, a_blocks, a_pages;
  std::vector<float> pool_f, q_f;
  std::vector<uint16_t> pool_h, q_h;
  DevBuf d_pool, d_q, d_out, d_indptr, d_blocks, d_pages, d_pos0, d_tok0, d_shards, d_begin, d_end, d_ablocks,
      d_apages;

  void build(const Problem& p) {
    pr = p;
    std::mt19937_64 rng(p.seed);
    n_q = p.n_kv * p.G;
    shards.resize(size_t(p.n_layers) * p.n_kv);
    for (auto& s : shards) s = random_shard(p.kind, p.sinks, rng);
    const int B = p.B, D = p.D;
    // Lists: the blocks the cache would hold for each chunk (those the newest committed token
    // still sees, plus every block the new tokens touch), plus a few extra old blocks.
    struct Entry {
      int chunk, layer, kv, block;
    };
    std::vector<std::vector<int>> lists(size_t(p.chunks.size()) * p.n_layers * p.n_kv);
    for (size_t c = 0; c < p.chunks.size(); ++c)
      for (int l = 0; l < p.n_layers; ++l)
        for (int h = 0; h < p.n_kv; ++h) {
          const HeadShard& sh = shards[size_t(l) * p.n_kv + h];
          const Chunk ch = p.chunks[c];
          const int last = (ch.pos0 + ch.n_new - 1) / B;
          auto& lst = lists[(c * p.n_layers + l) * p.n_kv + h];
          for (int j = 0; j <= last; ++j) {
            bool keep = j >= ch.pos0 / B;
            if (!keep && ch.pos0 > 0) {
              const int64_t tp = ch.pos0 - 1;
              for (int64_t s = int64_t(j) * B; s < int64_t(j + 1) * B && s <= tp && !keep; ++s)
                keep = sees(sh, B, p.window, tp, s);
            }
            if (!keep) keep = uni(rng, 0, 99) < 12;  // an extra block nobody attends
            if (keep) lst.push_back(j);
          }
        }
    indptr.assign(1, 0);
    blocks.clear();
    for (auto& lst : lists) {
      blocks.insert(blocks.end(), lst.begin(), lst.end());
      indptr.push_back(int32_t(blocks.size()));
    }
    n_pages = int(blocks.size()) + int(blocks.size()) / 4 + 3;
    std::vector<int32_t> perm(n_pages);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    pages.assign(perm.begin(), perm.begin() + blocks.size());
    const int32_t nan_page = perm[blocks.size()];  // listed nowhere: never written
    begin.clear();
    end.clear();
    a_blocks.clear();
    a_pages.clear();
    for (size_t l = 0; l + 1 < indptr.size(); ++l) {
      for (size_t g = 0; g < 1 + l % 3; ++g) a_blocks.push_back(0), a_pages.push_back(nan_page);
      begin.push_back(int32_t(a_blocks.size()));
      a_blocks.insert(a_blocks.end(), blocks.begin() + indptr[l], blocks.begin() + indptr[l + 1]);
      a_pages.insert(a_pages.end(), pages.begin() + indptr[l], pages.begin() + indptr[l + 1]);
      end.push_back(int32_t(a_blocks.size()));
    }
    // Page data: NaN everywhere, then the written slots (positions < pos0 + n_new) of listed pages.
    const int64_t pf = 2LL * B * D;
    pool_f.assign(size_t(n_pages) * pf, kNaN);
    std::normal_distribution<float> nd(0.f, 1.f);
    uint64_t x = rng() | 1;
    auto fast = [&x] {  // uniform in [-2, 2): xorshift64*, quick for millions of K/V values
      x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
      return float((x * 0x2545F4914F6CDD1DULL) >> 40) * (4.0f / 16777216.0f) - 2.0f;
    };
    for (size_t c = 0; c < p.chunks.size(); ++c) {
      const int end = p.chunks[c].pos0 + p.chunks[c].n_new;
      for (int l = 0; l < p.n_layers; ++l)
        for (int h = 0; h < p.n_kv; ++h) {
          const int li = int((c * p.n_layers + l) * p.n_kv + h);
          for (int e = indptr[li]; e < indptr[li + 1]; ++e)
            for (int s = 0; s < B; ++s) {
              if (int64_t(blocks[e]) * B + s >= end) break;
              float* kr = pool_f.data() + int64_t(pages[e]) * pf + int64_t(s) * D;
              const float k_scale = 1.f + p.k_rise * float(int64_t(blocks[e]) * B + s);
              for (int d = 0; d < D; ++d) {
                kr[d] = from_bf16(to_bf16(k_scale * fast()));
                kr[int64_t(B) * D + d] = from_bf16(to_bf16(fast()));
              }
            }
        }
    }
    pool_h.resize(pool_f.size());
    for (size_t i = 0; i < pool_f.size(); ++i) pool_h[i] = to_bf16(pool_f[i]);
    pos0.clear();
    tok0.assign(1, 0);
    for (const Chunk& ch : p.chunks) {
      pos0.push_back(ch.pos0);
      tok0.push_back(tok0.back() + ch.n_new);
    }
    n_tokens = tok0.back();
    q_f.resize(size_t(n_tokens) * n_q * D);
    q_h.resize(q_f.size());
    for (size_t i = 0; i < q_f.size(); ++i) {
      q_h[i] = to_bf16(p.q_scale * nd(rng));
      q_f[i] = from_bf16(q_h[i]);
    }
  }

  void upload() {
    std::vector<K::ShardParams> sp;
    for (int h = 0; h < pr.n_kv; ++h) {
      const HeadShard& s = shards[size_t(pr.layer) * pr.n_kv + h];
      sp.push_back(K::ShardParams{s.sink, s.local, s.stride, s.offset});
    }
    CK(d_pool.upload(pool_h));
    CK(d_q.upload(q_h));
    CK(d_out.upload(std::vector<uint16_t>(q_h.size(), kPoison)));
    CK(d_indptr.upload(indptr));
    CK(d_blocks.upload(blocks));
    CK(d_pages.upload(pages));
    CK(d_pos0.upload(pos0));
    CK(d_tok0.upload(tok0));
    CK(d_shards.upload(sp));
    CK(d_begin.upload(begin));
    CK(d_end.upload(end));
    CK(d_ablocks.upload(a_blocks));
    CK(d_apages.upload(a_pages));
  }

  // apart: the lists as begin / end over a_blocks / a_pages.
  K::PagedAttentionArgs args(bool apart = false) const {
    K::PagedAttentionArgs a;
    a.q = d_q.p;
    a.out = d_out.p;
    a.kv_pool = d_pool.p;
    a.kv_pool_pages = n_pages;
    a.indptr = d_indptr.as<int32_t>();
    a.blocks = d_blocks.as<int32_t>();
    a.pages = d_pages.as<int32_t>();
    a.chunk_pos0 = d_pos0.as<int32_t>();
    a.chunk_tok0 = d_tok0.as<int32_t>();
    a.shards = d_shards.as<K::ShardParams>();
    if (apart) {
      a.indptr = d_begin.as<int32_t>();
      a.list_end = d_end.as<int32_t>();
      a.blocks = d_ablocks.as<int32_t>();
      a.pages = d_apages.as<int32_t>();
    }
    a.n_layers = pr.n_layers;
    a.layer = pr.layer;
    a.n_kv_heads = pr.n_kv;
    a.group = pr.G;
    a.head_dim = pr.D;
    a.block_size = pr.B;
    a.window = pr.window;
    a.scale = 1.0f / std::sqrt(float(pr.D));
    return a;
  }

  // CPU reference for every token (fp32, same bf16-rounded inputs), in parallel over lists.
  std::vector<float> reference() const {
    std::vector<float> ref(q_f.size(), 0.f);
    const int D = pr.D, G = pr.G;
    const int n_jobs = int(pr.chunks.size()) * pr.n_kv;
    auto job = [&](int x) {
      const int c = x / pr.n_kv, h = x % pr.n_kv;
      const int li = (c * pr.n_layers + pr.layer) * pr.n_kv + h;
      const int64_t row = int64_t(n_q) * D;
      const HeadShard& sh = shards[size_t(pr.layer) * pr.n_kv + h];
      hs::test::cpu_paged_attention(q_f.data() + tok0[c] * row + int64_t(h) * G * D, pr.chunks[c].n_new,
                               pr.chunks[c].pos0, G, D, hs::test::RefShard{sh.sink, sh.local, sh.stride, sh.offset},
                               pr.B, pr.window, blocks.data() + indptr[li],
                               pages.data() + indptr[li], indptr[li + 1] - indptr[li], pool_f.data(),
                               1.0f / std::sqrt(float(D)), ref.data() + tok0[c] * row + int64_t(h) * G * D, row, row);
    };
    const int nt = std::max(1, std::min<int>(int(std::thread::hardware_concurrency()), 16));
    std::vector<std::thread> th;
    for (int w = 0; w < nt; ++w)
      th.emplace_back([&, w] {
        for (int x = w; x < n_jobs; x += nt) job(x);
      });
    for (auto& t : th) t.join();
    return ref;
  }

  void poison_out() {
    std::vector<uint16_t> poison(q_h.size(), kPoison);
    ASSERT_EQ(cudaMemcpy(d_out.p, poison.data(), poison.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<uint16_t> download_out() const {
    std::vector<uint16_t> out(q_h.size());
    EXPECT_EQ(cudaMemcpy(out.data(), d_out.p, out.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
};

// Compares the rows of the listed chunks; returns a description of the worst failure or "".
std::string compare(const Fixture& f, const std::vector<uint16_t>& out, const std::vector<float>& ref,
                    const std::vector<int>& chunk_ids, double* rel_out = nullptr) {
  const int64_t row = int64_t(f.n_q) * f.pr.D;
  double err2 = 0, ref2 = 0, max_abs = 0;
  for (int c : chunk_ids)
    for (int64_t i = int64_t(f.tok0[c]) * row; i < int64_t(f.tok0[c + 1]) * row; ++i) {
      const float o = from_bf16(out[i]);
      if (!std::isfinite(o))
        return "non-finite output (unwritten or NaN) at chunk " + std::to_string(c) + " element " +
               std::to_string(i - int64_t(f.tok0[c]) * row) + " (head " + std::to_string((i % row) / f.pr.D) + ")";
      const double d = double(o) - ref[i];
      err2 += d * d;
      ref2 += double(ref[i]) * ref[i];
      max_abs = std::max(max_abs, std::abs(d));
    }
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  if (rel_out) *rel_out = rel;
  if (rel > 1e-2 || max_abs > 5e-2)
    return "relative error " + std::to_string(rel) + ", max abs error " + std::to_string(max_abs);
  return "";
}

std::string describe(const Problem& p) {
  std::string s = "seed " + std::to_string(p.seed) + " " + std::string(kind_name(p.kind)) + " D=" + std::to_string(p.D) + " B=" + std::to_string(p.B) +
                  " G=" + std::to_string(p.G) + (p.sinks ? " sinks" : "") + " window=" + std::to_string(p.window) +
                  " chunks:";
  for (const Chunk& c : p.chunks) s += " (" + std::to_string(c.pos0) + "+" + std::to_string(c.n_new) + ")";
  return s;
}

// Runs prefill on every chunk and decode on the one-token chunks; compares both with the CPU.
// The six decode variants (set_kernel_variant: the copy engine with its one-block-per-SM
// instance for small grids and, at head dim 128 and pages of 64, the 128-token-tile kernel for the
// others; cp.async; the copy engine always two blocks per SM; always three; the copy engine's
// instances as the first picks them, with every item of a one-block-per-SM grid copied by rows;
// the 128-token-tile kernel for every grid at head dim 128 and pages of 64) run, and at head dim 128
// the three prefill variants (warpgroup MMA, and mma.sync with 32 and with 64 keys per tile);
// variants other than 1 read the lists apart, as the CUDA backend lays them out.
// check_problem returns the most splits of one list that its decode plans had (check_variant
// raises most_splits).
void check_variant(const Problem& p, K::DecodePlanOptions dopt, bool run_prefill, bool run_decode, bool apart,
                   int& most_splits, bool every_order);
int check_problem(const Problem& p, K::DecodePlanOptions dopt = {}, bool run_prefill = true) {
  int most_splits = 0;
  for (int v : {0, 1, 2, 3, 4, 9}) {
    SCOPED_TRACE("kernel variant " + std::to_string(v) + (v != 1 ? ", lists apart" : ", flat lists"));
    const int prefill_variant = p.D == 128 && v < 3 ? v : 0;
    K::set_kernel_variant(v, prefill_variant);
    // Only the warpgroup-MMA prefill has grid orders; the mma.sync ones run once.
    const bool wgmma = p.D == 128 && prefill_variant == 0 && K::wgmma_prefill_available();
    check_variant(p, dopt, run_prefill && (v == 0 || (p.D == 128 && v < 3)), true, v != 1, most_splits, wgmma);
  }
  K::set_kernel_variant(0, 0);
  return most_splits;
}

void check_variant(const Problem& p, K::DecodePlanOptions dopt, bool run_prefill, bool run_decode, bool apart,
                   int& most_splits, bool every_order) {
  SCOPED_TRACE(describe(p));
  Fixture f;
  f.build(p);
  f.upload();
  const std::vector<float> ref = f.reference();
  std::vector<int> all(p.chunks.size()), dec;
  std::iota(all.begin(), all.end(), 0);
  for (size_t c = 0; c < p.chunks.size(); ++c)
    if (p.chunks[c].n_new == 1) dec.push_back(int(c));

  if (run_prefill) {
    std::vector<K::PrefillWorkItem> items;
    K::plan_prefill(all.data(), int(all.size()), f.pos0.data(), f.tok0.data(), p.D, items);
    DevBuf d_items;
    CK(d_items.upload(items));
    K::PrefillParams pp;
    pp.a = f.args(apart);
    pp.items = d_items.as<K::PrefillWorkItem>();
    pp.n_items = int(items.size());
    // every_order: each grid order of the warpgroup-MMA kernel (one KV head at a time, all at
    // once, and a group of two between them).
    std::vector<int> orders{1};
    if (every_order && p.n_kv % 2 == 0 && p.n_kv > 2) orders.push_back(2);
    if (every_order && p.n_kv > 1) orders.push_back(p.n_kv);
    for (const int together : orders) {
      pp.kv_heads_together = together;
      f.poison_out();
      CK(K::prefill_attention(pp, nullptr));
      CK(cudaDeviceSynchronize());
      const auto out = f.download_out();
      const std::string err = compare(f, out, ref, all);
      EXPECT_EQ(err, "") << "prefill, KV heads together " << together;
    }
  }
  if (run_decode && !dec.empty()) {
    K::DecodePlan plan;
    if (dopt.slots <= 0) {  // the device's own (tests that set slots plan without lone blocks)
      dopt.slots = K::decode_slots(p.D);
      dopt.lone_slots = K::decode_lone_slots(p.D);
    }
    K::plan_decode(apart ? f.begin.data() : f.indptr.data(), apart ? f.end.data() : nullptr, dec.data(),
                   int(dec.size()), p.n_layers, p.n_kv, p.B, dopt, plan);
    const int b = plan.layer_begin[p.layer], e = plan.layer_begin[p.layer + 1];
    std::vector<K::DecodeWorkItem> items(plan.items.begin() + b, plan.items.begin() + e);
    for (const auto& it : items) most_splits = std::max(most_splits, it.n_splits);
    DevBuf d_items, d_ws;
    CK(d_items.upload(items));
    const size_t ws = K::decode_workspace_bytes(plan, p.G, p.D);
    CK(cudaMalloc(&d_ws.p, ws));
    CK(cudaMemset(d_ws.p, 0, ws));
    K::DecodeParams dp;
    dp.a = f.args(apart);
    dp.items = d_items.as<K::DecodeWorkItem>();
    dp.n_items = int(items.size());
    dp.workspace = d_ws.p;
    dp.max_partials = plan.max_partials;
    // Twice: the merge counters must be back at zero. A grid of more items than the lone slots then
    // runs on the other instances too: lone (DecodeParams::lone), as a plan of long lists would
    // have it, and at head dim 128 two-stage (DecodeParams::two_stage), as a plan of long items would.
    const int lone_slots = K::decode_lone_slots(p.D);
    const bool others = !plan.lone && lone_slots > 0 && int(items.size()) > lone_slots;
    struct Run {
      bool lone, two_stage;
    };
    std::vector<Run> runs(2, Run{plan.lone, plan.two_stage});
    if (others) runs.push_back({true, false});
    if (others && p.D == 128 && !plan.two_stage) runs.push_back({false, true});
    std::vector<uint16_t> first;
    for (size_t rep = 0; rep < runs.size(); ++rep) {
      dp.lone = runs[rep].lone;
      dp.two_stage = runs[rep].two_stage;
      f.poison_out();
      CK(K::decode_attention(dp, nullptr));
      CK(cudaDeviceSynchronize());
      const auto out = f.download_out();
      const std::string err = compare(f, out, ref, dec);
      EXPECT_EQ(err, "") << "decode, run " << rep << (dp.lone ? " (lone)" : "") << (dp.two_stage ? " (two-stage)" : "")
                         << ", " << items.size() << " items";
      if (rep == 0) first = out;
      else if (rep == 1) {
        const int64_t row = int64_t(f.n_q) * p.D;
        for (int c : dec)
          for (int64_t i = f.tok0[c] * row; i < f.tok0[c + 1] * row; ++i)
            if (out[i] != first[i]) {
              ADD_FAILURE() << "decode is not deterministic at chunk " << c;
              return;
            }
      }
    }
  }
}

// A random batch: three decode chunks at various lengths, a fresh prefill chunk and a
// continuation chunk (chunked prefill reading earlier tokens from the pages).
std::vector<Chunk> random_chunks(int B, int D, std::mt19937_64& rng) {
  const int pf = D == 256 ? 150 : 220;
  std::vector<Chunk> c;
  c.push_back({uni(rng, 0, 3), 1});
  c.push_back({uni(rng, 1, 12 * B), 1});
  c.push_back({uni(rng, 12 * B, 40 * B), 1});
  c.push_back({0, uni(rng, 2, pf)});
  c.push_back({uni(rng, 1, 10 * B), uni(rng, 2, pf)});
  return c;
}

using Combo = std::tuple<int, int, int, Kind, bool>;  // D, B, G, kind, sinks

class ShardedAttention : public ::testing::TestWithParam<Combo> {};

TEST_P(ShardedAttention, MatchesCpuReference) {
  REQUIRE_GPU();
  const auto [D, B, G, kind, sinks] = GetParam();
  std::mt19937_64 rng(std::hash<std::string>{}(std::to_string(D) + "/" + std::to_string(B) + "/" +
                                               std::to_string(G) + kind_name(kind) + (sinks ? "s" : "")) ^
                      uint64_t(std::random_device{}()));
  for (int rep = 0; rep < 2; ++rep) {
    Problem p;
    p.D = D, p.B = B, p.G = G, p.kind = kind, p.sinks = sinks;
    p.seed = rng();
    p.chunks = random_chunks(B, D, rng);
    K::DecodePlanOptions o;
    if (rep == 1) o.slots = 8, o.min_split_tokens = o.min_wave_split_tokens = 1;  // force splits and merges
    check_problem(p, o);
    if (HasFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(All, ShardedAttention,
                         ::testing::Combine(::testing::Values(64, 128, 256), ::testing::Values(16, 64),
                                            ::testing::Values(1, 3, 4, 8),
                                            ::testing::Values(Kind::Dense, Kind::Strided, Kind::Streaming,
                                                              Kind::Mixed),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Combo>& i) {
                           return std::string(kind_name(std::get<3>(i.param))) + "_D" +
                                  std::to_string(std::get<0>(i.param)) + "_B" + std::to_string(std::get<1>(i.param)) +
                                  "_G" + std::to_string(std::get<2>(i.param)) + (std::get<4>(i.param) ? "_sinks" : "");
                         });

// The builds target sm_90a, so on compute capability 9 the prefill runs above were the
// warpgroup-MMA kernel's (variant 0), not the fallback it leaves to elsewhere.
TEST(ShardedAttentionBuild, WarpgroupPrefillRunsOnComputeCapability9) {
  REQUIRE_GPU();
  int dev = 0, major = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  if (major != 9) GTEST_SKIP() << "compute capability " << major << ": the mma.sync kernels run";
  EXPECT_TRUE(K::wgmma_prefill_available());
}

// The model's own sliding window on top of the shard rule, and block sizes 32 and 128 (a page
// spans half a tile / two tiles).
TEST(ShardedAttentionWindow, MatchesCpuReference) {
  REQUIRE_GPU();
  std::mt19937_64 rng(std::random_device{}());
  for (int B : {16, 32, 64, 128})
    for (Kind kind : {Kind::Dense, Kind::Strided, Kind::Streaming, Kind::Mixed}) {
      Problem p;
      p.D = 128, p.B = B, p.G = 4, p.kind = kind, p.sinks = uni(rng, 0, 1);
      p.window = uni(rng, 1, 5 * B);
      p.seed = rng();
      p.chunks = random_chunks(B, p.D, rng);
      check_problem(p);
      Problem q = p;
      q.window = 0;
      q.seed = rng();
      check_problem(q);
      if (HasFailure()) return;
    }
}

// Scores that keep rising along the context, so that every kernel's running max moves on most
// tiles after the first (with K of one scale, it rarely moves after the first few).
TEST(ShardedAttentionRisingScores, MatchesCpuReference) {
  REQUIRE_GPU();
  std::mt19937_64 rng(std::random_device{}());
  for (int D : {64, 128, 256})
    for (Kind kind : {Kind::Dense, Kind::Mixed}) {
      Problem p;
      p.D = D, p.B = 64, p.G = 4, p.kind = kind, p.sinks = true;
      p.k_rise = 8.f / 2048.f;  // scores 9x larger at position 2048
      p.seed = rng();
      p.chunks = {{0, uni(rng, 1000, 2500)}, {uni(rng, 1, 3000), 1}, {uni(rng, 1, 1500), uni(rng, 200, 900)}};
      K::DecodePlanOptions o;
      o.slots = 8, o.min_split_tokens = o.min_wave_split_tokens = 64;
      check_problem(p, o);
      if (HasFailure()) return;
    }
}

// Long decode lists split across many thread blocks (flash-decoding) with the merge pass, dense
// and sharded heads in one launch, with the device's own slot count, a tiny one and a large one.
// The large one cuts a list into more parts than the merging block loads at once (16).
TEST(ShardedAttentionDecode, LongListsSplitAndMerge) {
  REQUIRE_GPU();
  std::mt19937_64 rng(std::random_device{}());
  for (int slots : {0, 7, 1024}) {
    Problem p;
    p.D = 128, p.B = 64, p.G = 4, p.n_kv = 4, p.kind = Kind::Mixed, p.sinks = true;
    p.seed = rng();
    p.chunks = {{uni(rng, 6000, 9000), 1}, {uni(rng, 100, 3000), 1}, {uni(rng, 0, 64), 1}};
    K::DecodePlanOptions o;
    o.slots = slots;
    o.min_split_tokens = o.min_wave_split_tokens = 64;
    const int most_splits = check_problem(p, o, false);
    if (slots == 1024) EXPECT_GT(most_splits, 16);
  }
}

// Small shapes for compute-sanitizer (memcheck / racecheck): a bit of everything.
TEST(ShardedAttentionSmall, AllKernels) {
  REQUIRE_GPU();
  std::mt19937_64 rng(7);
  for (int D : {64, 128, 256})
    for (int B : {16, 64}) {
      Problem p;
      p.D = D, p.B = B, p.G = 3, p.kind = Kind::Mixed, p.sinks = true;
      p.window = D == 128 ? 3 * B : 0;
      p.seed = rng();
      p.chunks = {{0, 1}, {uni(rng, 1, 5 * B), 1}, {0, 70}, {uni(rng, 1, 3 * B), 40}};
      K::DecodePlanOptions o;
      o.slots = 4, o.min_split_tokens = o.min_wave_split_tokens = 1;
      check_problem(p, o);
    }
}

TEST(ShardedAttentionSmall, WriteKvMatchesCpu) {
  REQUIRE_GPU();
  std::mt19937_64 rng(11);
  for (int D : {64, 128, 256})
    for (int B : {16, 64}) {
      const int n_kv = 3, n_tok = 37, n_pages = 40;
      std::vector<uint16_t> k(size_t(n_tok) * n_kv * D), v(k.size());
      for (auto& x : k) x = to_bf16(std::normal_distribution<float>()(rng));
      for (auto& x : v) x = to_bf16(std::normal_distribution<float>()(rng));
      std::vector<int32_t> all_slots(size_t(n_pages) * B);
      std::iota(all_slots.begin(), all_slots.end(), 0);
      std::shuffle(all_slots.begin(), all_slots.end(), rng);
      std::vector<int32_t> slots(all_slots.begin(), all_slots.begin() + n_tok * n_kv);
      slots[5] = -1;  // skipped
      std::vector<uint16_t> pool(size_t(n_pages) * 2 * B * D, 0x1234), want = pool;
      for (int h = 0; h < n_kv; ++h)
        for (int i = 0; i < n_tok; ++i) {
          const int ws = slots[size_t(h) * n_tok + i];
          if (ws < 0) continue;
          uint16_t* dst = want.data() + int64_t(ws / B) * 2 * B * D + int64_t(ws % B) * D;
          for (int d = 0; d < D; ++d) {
            dst[d] = k[(size_t(i) * n_kv + h) * D + d];
            dst[int64_t(B) * D + d] = v[(size_t(i) * n_kv + h) * D + d];
          }
        }
      DevBuf dk, dv, ds, dp;
      CK(dk.upload(k));
      CK(dv.upload(v));
      CK(ds.upload(slots));
      CK(dp.upload(pool));
      K::KvWriteParams w;
      w.k = dk.p, w.v = dv.p, w.kv_pool = dp.p, w.write_slots = ds.as<int32_t>();
      w.n_tokens = n_tok, w.n_kv_heads = n_kv, w.head_dim = D, w.block_size = B;
      CK(K::write_kv(w, nullptr));
      CK(cudaDeviceSynchronize());
      std::vector<uint16_t> got(pool.size());
      CK(cudaMemcpy(got.data(), dp.p, got.size() * 2, cudaMemcpyDeviceToHost));
      EXPECT_TRUE(got == want) << "D=" << D << " B=" << B;
    }
}

// ---- host-only checks (run without a GPU too) ------------------------------------------------

// The prefill tile search visits exactly the units holding a key some query of the tile attends,
// in list order, and the units it calls interior or causal are masked as they say: checked
// exhaustively against the token rule on random lists.
TEST(PrefillTileSearch, VisitsExactlyTheAttendedUnits) {
  std::mt19937_64 rng(std::random_device{}());
  for (int trial = 0; trial < 4000; ++trial) {
    const int B = 16 << uni(rng, 0, 3);
    const int U = std::min(B, 64);
    const Kind kind = static_cast<Kind>(uni(rng, 0, 3));
    HeadShard h = random_shard(kind, uni(rng, 0, 1) != 0, rng);
    if (uni(rng, 0, 3) == 0) h.local = uni(rng, 1, 20), h.stride = h.stride > 1 ? uni(rng, 2, 16) : h.stride;
    if (h.stride > 1) h.offset = uni(rng, 0, h.stride - 1);
    const int window = uni(rng, 0, 2) == 0 ? uni(rng, 1, 6 * B) : 0;
    const int n_blocks = uni(rng, 1, 60);
    std::vector<int> list;
    const int density = uni(rng, 20, 100);
    for (int j = 0; j < n_blocks; ++j)
      if (uni(rng, 0, 99) < density || j == n_blocks - 1) list.push_back(j);
    const int t_end = n_blocks * B;
    const int t0 = uni(rng, 0, t_end - 1);
    const int t1 = std::min(t_end - 1, t0 + uni(rng, 0, 200));
    K::detail::TileQuery q;
    q.B = B, q.logB = __builtin_ctz(B), q.U = U, q.window = window;
    q.sh = K::ShardParams{h.sink, h.local, h.stride, h.offset};
    q.t0 = t0, q.t1 = t1, q.i0 = t0 / B, q.i1 = t1 / B;
    // The units UnitScan takes: every unit in order, up to the first after t1, that unit_attended
    // passes.
    std::vector<std::pair<int, int>> visited;
    const int eb = int(list.size());
    bool past = false;
    for (int x = 0; x < eb && !past; ++x)
      for (int so = 0; so < B && !past; so += U) {
        past = list[x] * B + so > t1;
        const bool always = K::detail::always_kept(q.sh, list[x]);
        if (!past && K::detail::unit_attended(q, list[x], so, always)) visited.push_back({x, so});
      }
    std::vector<std::pair<int, int>> needed_units;  // units holding a key some query of the tile sees
    for (int x = 0; x < eb; ++x)
      for (int slot = 0; slot < B; ++slot) {
        const int64_t s = int64_t(list[x]) * B + slot;
        bool needed = false;
        for (int64_t t = t0; t <= t1 && !needed; ++t) needed = sees(h, B, window, t, s);
        const std::pair<int, int> unit{x, slot / U * U};
        if (needed && (needed_units.empty() || needed_units.back() != unit)) needed_units.push_back(unit);
      }
    ASSERT_EQ(visited, needed_units) << "B=" << B << " sink=" << h.sink << " local=" << h.local << " stride=" << h.stride
                                     << " offset=" << h.offset << " window=" << window << " t0=" << t0 << " t1=" << t1;
    // The kernels' mask shortcuts: an interior unit is seen whole by every query of the tile, and a
    // causal one by every query exactly up to the query's own position.
    for (const auto& [x, so] : visited) {
      const int s0 = list[x] * B + so;
      const bool always = K::detail::always_kept(q.sh, list[x]);
      const bool interior = K::detail::unit_interior(q, list[x], s0, always);
      const bool causal = K::detail::unit_causal(q, list[x], s0, always);
      for (int t = t0; t <= t1; ++t)
        for (int s = s0; s < s0 + U; ++s) {
          const bool seen = sees(h, B, window, t, s);
          if (interior) ASSERT_TRUE(seen) << "interior unit at " << s0 << ", t=" << t << " s=" << s;
          if (causal) ASSERT_EQ(seen, s <= t) << "causal unit at " << s0 << ", t=" << t << " s=" << s;
        }
    }
  }
}

// A work item's fields, its entries counted from list_begin.
auto item_fields(const K::DecodeWorkItem& it, int32_t list_begin = 0) {
  return std::make_tuple(it.chunk, it.kv_head, it.e_begin - list_begin, it.e_end - list_begin, it.split, it.n_splits,
                         it.partial0, it.group_id);
}

// Batch 1 at 32k tokens, strided: eight lists of 80 pages (B = 64), splits of at least 256 tokens
// (4 pages), 264 shared slots, a cost of 2 pages per block. Shared blocks only: 4 pages an item
// (160 items) costs 4 + 2, the least. With one block per multiprocessor for grids of up to 132
// blocks, each streaming twice as fast: 5 pages an item (128 items) costs 5 / 2 + 2 = 4.5, against
// 6 / 2 + 2 = 5 for 6 pages (112 items) and 6 for 4 pages (160 items, too many to run alone).
TEST(DecodePlan, SmallGridsPlanOneBlockPerMultiprocessor) {
  const int n_kv = 8, len = 80, B = 64;
  std::vector<int32_t> indptr(n_kv + 1);
  for (int h = 0; h <= n_kv; ++h) indptr[h] = h * len;
  const int32_t chunk = 0;
  for (int lone : {0, 132}) {
    K::DecodePlanOptions o;
    o.slots = 264;
    o.lone_slots = lone;
    K::DecodePlan plan;
    K::plan_decode(indptr.data(), nullptr, &chunk, 1, 1, n_kv, B, o, plan);
    const int want = lone ? 5 : 4;
    ASSERT_EQ(plan.layer_begin[1], n_kv * len / want) << "lone " << lone;
    for (const K::DecodeWorkItem& it : plan.items) EXPECT_EQ(it.e_end - it.e_begin, want) << "lone " << lone;
  }
}

// Flat lists of `len` pages for each of the n_kv heads of `seqs` one-token chunks, and their ids.
// Then `pad` chunks of empty lists, as the engine pads a batch to its graph's size.
struct EqualLists {
  std::vector<int32_t> indptr, chunks;
  EqualLists(int seqs, int n_kv, int len, int pad = 0) : indptr((seqs + pad) * n_kv + 1), chunks(seqs + pad) {
    for (int l = 0; l < int(indptr.size()); ++l) indptr[l] = std::min(l, seqs * n_kv) * len;
    std::iota(chunks.begin(), chunks.end(), 0);
  }
};

// Batch 1 at 4k, B = 64, 264 shared slots, a cost of 2 pages per block. Strided: eight lists of
// 23 pages. Lone grids (up to 132 blocks) may cut splits of 128 tokens (2 pages): 12 items a list,
// 96 in all, cost 2 / 2 + 2 = 3, against 3 / 2 + 2 = 3.5 for 3 pages (64 items) and 4 for 4 pages
// (48 items). Without lone grids the floor stays 256 tokens: 4 pages (six items a list, 4 + 2 = 6,
// the least). Dense: eight lists of 65 pages. 2 pages (264 items) and 3 (176) are too many items
// to run lone, so they are not cut; 5 pages (104 items, 5 / 2 + 2 = 4.5) is the least cost.
// Nine sequences, 72 lists of 9 pages: cuts of 2 and 3 pages give too many items to run lone, so
// they are raised to the 4-page floor (as without the lone floor), which cuts each list into three
// items of 3: 216 items, 3 + 2 = 5, against 9 / 2 + 2 = 6.5 for one lone item a list and 7 for
// 5 pages (144 items). Each of these plans fits one wave of the shared slots, where splits may be
// shorter than 16 pages (DecodePlanOptions::min_wave_split_tokens).
TEST(DecodePlan, ShortSplitsOnlyInLoneGrids) {
  const int n_kv = 8, B = 64;
  struct Case {
    int seqs, len, lone, items, longest;
  };
  for (const Case& c : {Case{1, 23, 132, 96, 2}, Case{1, 23, 0, 48, 4}, Case{1, 65, 132, 104, 5},
                        Case{9, 9, 132, 216, 3}}) {
    const EqualLists lists(c.seqs, n_kv, c.len);
    K::DecodePlanOptions o;
    o.slots = 264;
    o.lone_slots = c.lone;
    K::DecodePlan plan;
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), c.seqs, 1, n_kv, B, o, plan);
    EXPECT_EQ(plan.layer_begin[1], c.items) << c.seqs << " x " << c.len << " pages, lone " << c.lone;
    int longest = 0;
    for (const K::DecodeWorkItem& it : plan.items) longest = std::max(longest, it.e_end - it.e_begin);
    EXPECT_EQ(longest, c.longest) << c.seqs << " x " << c.len << " pages, lone " << c.lone;
  }
}

// The stagger (DecodePlanOptions::stagger, 1/2), 8 KV heads, lists of 64 pages (4k), 264 slots, a
// 4-page floor. 56 sequences: 448 whole lists, a last wave of 184 (70%), so item j < 264 of the
// first wave loses floor(32 j / 264) pages where that is at least 4 (j >= 33): 231 tails, 679 items,
// the first wave from 64 pages down to 64 - 31 = 33, then the 184 whole lists, then the tails. 64
// sequences: 512 whole lists, a last wave of 248 (94%): left alone. 48 sequences: 384 lists cut in
// two (768 items of 32 pages, a last wave of 240), cut by floor(16 j / 264) >= 4 (j >= 66): 966.
// Decode variant 5 leaves the 56 sequences' plan at 448.
TEST(DecodePlan, StaggersTheFirstWave) {
  const int n_kv = 8, B = 64, len = 64;
  struct Case {
    int seqs;
    double stagger;
    int items;
  };
  for (const Case& c : {Case{56, 0.5, 679}, Case{56, 0.0, 448}, Case{64, 0.5, 512}, Case{48, 0.5, 966}}) {
    const EqualLists lists(c.seqs, n_kv, len);
    K::DecodePlanOptions o;
    o.slots = 264;
    o.lone_slots = 132;
    o.stagger = c.stagger;
    K::DecodePlan plan;
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), c.seqs, 1, n_kv, B, o, plan);
    const std::string what = std::to_string(c.seqs) + " sequences, stagger " + std::to_string(c.stagger);
    ASSERT_EQ(plan.layer_begin[1], c.items) << what;
    if (c.seqs != 56 || c.stagger == 0) continue;
    for (int j = 0; j < 264; ++j) {
      const int cut = 32 * j / 264;
      ASSERT_EQ(plan.items[j].e_end - plan.items[j].e_begin, cut >= 4 ? len - cut : len) << "item " << j;
    }
    for (int j = 264; j < 264 + 184; ++j) ASSERT_EQ(plan.items[j].e_end - plan.items[j].e_begin, len) << "item " << j;
    for (int j = 264 + 184; j < c.items; ++j)
      ASSERT_LE(plan.items[j].e_end - plan.items[j].e_begin, 31) << "item " << j;
    // Decode variant 5 plans the same lists without the stagger.
    K::set_kernel_variant(5, 0);
    K::DecodePlan plain;
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), c.seqs, 1, n_kv, B, o, plain);
    K::set_kernel_variant(0, 0);
    EXPECT_EQ(plain.layer_begin[1], 448);
  }
}

// Long lists (32k tokens and more on average, B = 64: 512 pages) in more than one wave of the 264
// shared slots, planned for the 132 lone slots into items of 8k tokens (128 pages) and more on
// average: DecodePlan::lone. Without the stagger:
// - 64 sequences of 512 pages: whole lists are 512 items of 512 + 2 in four lone waves (2056);
//   cutting them in two (1024 items of 256 + 2) takes eight (2064), in three twelve (2076): 512
//   whole lists, lone.
// - 24 sequences of 512 pages: on the shared slots 768 items of 256; on the lone ones, whole lists
//   take two waves (1028), halves 384 items in three (774), thirds five (about 865), quarters six
//   (780), and shorter cuts more than the balanced bound (98304 / 132 = 745) plus half an item and
//   two pages an item: 384 halves, lone.
// - 48 sequences of 512 pages, with 16 chunks of empty lists after them (the engine's padding, which
//   the costs leave out): whole lists are 384 items in three lone waves (1542), against the bounds
//   of halves (196608 + 2 * 768) / 132 + 129 = 1630, quarters 1578 and eighths 1569: 384 whole
//   lists, lone. 24 sequences with 8 empty chunks: as without them.
// Not lone (the plan of decode variant 6, which makes no lone plans): 20 sequences of 512 pages
// (the lone plan cuts the 160 lists in seven, items of 73 and 74 pages), also with 12 empty chunks
// after them; 12 of 512 (the lone plan, 96 whole lists at 512 / 2 + 2 = 258 against 516 for two
// waves of halves, fills less than one wave of lone slots); 32 of 512 (256 whole lists, one shared
// wave), 64 of 511 (32704 tokens), 64 of 64, and 64 of 512 without lone slots.
TEST(DecodePlan, LongListsPlanLoneGrids) {
  const int n_kv = 8, B = 64;
  struct Case {
    int seqs, len, lone_slots;
    bool lone;
    int items, item_len;  // lone plans: items of lists with entries
    int pad = 0;          // chunks of empty lists after them (one empty item a list)
  };
  for (const Case& c : {Case{64, 512, 132, true, 512, 512}, Case{24, 512, 132, true, 384, 256},
                        Case{24, 512, 132, true, 384, 256, 8}, Case{48, 512, 132, true, 384, 512, 16},
                        Case{20, 512, 132, false}, Case{20, 512, 132, false, 0, 0, 12}, Case{12, 512, 132, false},
                        Case{32, 512, 132, false},
                        Case{64, 511, 132, false}, Case{64, 64, 132, false}, Case{64, 512, 0, false}}) {
    const EqualLists lists(c.seqs, n_kv, c.len, c.pad);
    const int chunks = c.seqs + c.pad;
    K::DecodePlanOptions o;
    o.slots = 264;
    o.lone_slots = c.lone_slots;
    o.stagger = 0;
    K::DecodePlan plan, shared;
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), chunks, 1, n_kv, B, o, plan);
    K::set_kernel_variant(6, 0);
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), chunks, 1, n_kv, B, o, shared);
    K::set_kernel_variant(0, 0);
    const std::string what = std::to_string(c.seqs) + " x " + std::to_string(c.len) + " pages and " +
                             std::to_string(c.pad) + " empty, lone slots " + std::to_string(c.lone_slots);
    EXPECT_FALSE(shared.lone) << what << ", variant 6";
    ASSERT_EQ(plan.lone, c.lone) << what;
    if (!c.lone) {
      ASSERT_EQ(plan.items.size(), shared.items.size()) << what;
      for (size_t i = 0; i < plan.items.size(); ++i)
        ASSERT_EQ(item_fields(plan.items[i]), item_fields(shared.items[i])) << what << ", item " << i;
      continue;
    }
    ASSERT_EQ(plan.layer_begin[1], c.items + c.pad * n_kv) << what;
    for (const K::DecodeWorkItem& it : plan.items)
      ASSERT_EQ(it.e_end - it.e_begin, it.chunk < c.seqs ? c.item_len : 0) << what;
  }
}

// Two-stage plans (DecodePlanOptions::two_stage_min_item_tokens = 1024, 16 pages of 64 tokens, and
// two_stage_max_waves = 5): not lone, more items than the 264 shared slots and at most 1320, and at
// least 16 pages an item on average. The cuts, by the planner's costs (entries a slot, 2 an item):
// - 64 sequences of 64 pages: 512 whole lists (two rounds of 66, against four of 34 for halves):
//   two-stage. 64 of 16: 512 whole lists of exactly 16 pages (two rounds of 18 against four of 10):
//   two-stage. 64 of 15: 512 whole lists of 15: not.
// - 32 sequences of 64 pages: 256 whole lists, one wave: not. 80 of 64: halves, 1280 items in five
//   rounds of 34 (against three of 66 whole, and the bound of thirds, (40960 + 2 * 1920) / 264 + 12
//   = 181.7): two-stage. 256 of 64: 2048 items or more whatever the cut: not.
// - 40 sequences of 23 pages (the strided lists at 4k): whole lists take two rounds of 25 (50),
//   halves three of about 14 (41), thirds four of about 10 (39); cut so, an item holds 12 pages or
//   fewer: not.
// - 64 sequences of 512 pages: lone (the lone plan's rule), so not two-stage; without lone slots,
//   512 whole lists: two-stage.
// The plan's items are those of decode variant 7's plan, which makes no two-stage plans.
TEST(DecodePlan, LongItemsPlanTwoStageGrids) {
  const int n_kv = 8, B = 64;
  struct Case {
    int seqs, len, lone_slots;
    bool lone, two_stage;
  };
  for (const Case& c : {Case{64, 64, 132, false, true}, Case{64, 16, 132, false, true}, Case{64, 15, 132, false, false},
                        Case{32, 64, 132, false, false}, Case{80, 64, 132, false, true},
                        Case{256, 64, 132, false, false}, Case{40, 23, 132, false, false},
                        Case{64, 512, 132, true, false}, Case{64, 512, 0, false, true}}) {
    const EqualLists lists(c.seqs, n_kv, c.len);
    K::DecodePlanOptions o;
    o.slots = 264;
    o.lone_slots = c.lone_slots;
    K::DecodePlan plan, without;
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), c.seqs, 1, n_kv, B, o, plan);
    K::set_kernel_variant(7, 0);
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), c.seqs, 1, n_kv, B, o, without);
    K::set_kernel_variant(0, 0);
    const std::string what = std::to_string(c.seqs) + " x " + std::to_string(c.len) + " pages, lone slots " +
                             std::to_string(c.lone_slots);
    EXPECT_EQ(plan.lone, c.lone) << what;
    EXPECT_EQ(plan.two_stage, c.two_stage) << what;
    EXPECT_FALSE(without.two_stage) << what << ", variant 7";
    ASSERT_EQ(plan.items.size(), without.items.size()) << what;
    for (size_t i = 0; i < plan.items.size(); ++i)
      ASSERT_EQ(item_fields(plan.items[i]), item_fields(without.items[i])) << what << ", item " << i;
  }
}

// More than four waves, where the estimate is not a greedy schedule: 192 sequences at 8k (1,536
// lists of 128 pages), 264 slots, a cost of 2 pages a block, no lone plan (8k tokens a list).
// The balanced bound and half an item (variant 0): whole lists (1,536 items) cost
// (196,608 + 2 x 1,536) / 264 + 130 / 2 = 821.4, halves (3,072 of 64 pages) 202,752 / 264 + 66 / 2
// = 801, thirds (4,608 of at most 43) 779.6 + 22.5 = 802.1: halves, the first more than 2% below.
// Whole waves of the largest item (variant 11): 6 x 130 = 780, 12 x 66 = 792, 18 x 45 = 810: whole
// lists.
TEST(DecodePlan, ManyWavesEstimate) {
  const EqualLists lists(192, 8, 128);
  K::DecodePlanOptions o;
  o.slots = 264;
  o.lone_slots = 132;
  for (const auto& [variant, items, longest] : {std::tuple{0, 3072, 64}, std::tuple{11, 1536, 128}}) {
    K::set_kernel_variant(variant, 0);
    K::DecodePlan plan;
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), 192, 1, 8, 64, o, plan);
    EXPECT_EQ(plan.layer_begin[1], items) << "variant " << variant;
    EXPECT_FALSE(plan.lone || plan.two_stage) << "variant " << variant;
    for (const K::DecodeWorkItem& it : plan.items) ASSERT_EQ(it.e_end - it.e_begin, longest) << "variant " << variant;
  }
  K::set_kernel_variant(0, 0);
}

// Plans of more than one wave cut no split shorter than 16 pages (DecodePlanOptions::
// min_wave_split_tokens), 8 KV heads, 264 shared slots, 132 lone, a cost of 2 pages a block:
// - 24 sequences of 22 pages (the strided lists at 4k): 192 whole lists, one wave of 22 + 2 = 24,
//   against 384 halves (264 + 120 of 11 + 2: 26). Without that floor (decode variant 8), 6-page
//   splits win: 768 items (384 of 6 + 2 and 384 of 5 + 2) fill three waves to
//   23 < 0.98 x 24, and the stagger cuts none of them (at most 6 / 2 pages).
// - 40 sequences of 22 pages: whole lists take two waves (24 + 24), halves three (640 items of
//   11 + 2: 39): 640 halves, whose first wave the stagger cuts by floor(11 j / 528) pages where that
//   is at least 4 (j >= 192): 72 tails, 712 items.
// - 24 and 64 sequences of 64 pages (dense at 4k), the same items as variant 8's: 24 give 768
//   splits of 16 pages (three waves of 16 + 2: 54, against 66 for whole lists), whose first wave
//   the stagger cuts where floor(8 j / 264) >= 4 (j >= 132): 900 items; 64 give 512 whole lists.
TEST(DecodePlan, NoShortSplitsInSeveralWaves) {
  const int n_kv = 8, B = 64;
  struct Case {
    int seqs, len, items, items_v8;  // variant 8's items (0: not checked; -1: the plan's, item for item)
  };
  for (const Case& c : {Case{24, 22, 192, 768}, Case{40, 22, 712, 0}, Case{24, 64, 900, -1}, Case{64, 64, 512, -1}}) {
    const EqualLists lists(c.seqs, n_kv, c.len);
    K::DecodePlanOptions o;
    o.slots = 264;
    o.lone_slots = 132;
    K::DecodePlan plan, v8;
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), c.seqs, 1, n_kv, B, o, plan);
    K::set_kernel_variant(8, 0);
    K::plan_decode(lists.indptr.data(), nullptr, lists.chunks.data(), c.seqs, 1, n_kv, B, o, v8);
    K::set_kernel_variant(0, 0);
    const std::string what = std::to_string(c.seqs) + " x " + std::to_string(c.len) + " pages";
    ASSERT_EQ(plan.layer_begin[1], c.items) << what;
    EXPECT_FALSE(plan.lone) << what;
    if (c.items_v8 > 0) EXPECT_EQ(v8.layer_begin[1], c.items_v8) << what << ", variant 8";
    if (c.items_v8 < 0) {
      ASSERT_EQ(v8.items.size(), plan.items.size()) << what << ", variant 8";
      for (size_t i = 0; i < plan.items.size(); ++i)
        ASSERT_EQ(item_fields(plan.items[i]), item_fields(v8.items[i])) << what << ", item " << i;
    }
    if (c.len != 22) continue;
    for (int j = 0; j < c.items; ++j) {
      const int len = plan.items[j].e_end - plan.items[j].e_begin;
      if (c.seqs == 24) {
        ASSERT_EQ(len, 22) << what << ", item " << j;
        ASSERT_EQ(plan.items[j].n_splits, 1) << what << ", item " << j;
      } else if (j < 264) {
        const int cut = 11 * j / 528;
        ASSERT_EQ(len, cut >= 4 ? 11 - cut : 11) << what << ", item " << j;
      } else if (j < 640) {
        ASSERT_EQ(len, 11) << what << ", item " << j;
      } else {
        ASSERT_TRUE(len == 4 || len == 5) << what << ", item " << j << ": " << len;
      }
    }
  }
}

// The engine pads a batch to its graph's size with chunks of empty lists. Where the live lists alone
// outnumber the lone slots (so no plan of them runs as one lone wave, padded or not), the padded plan
// is the plan of the live chunks alone (the same items, splits, workspace slots, lone and two-stage
// choices), then one empty item a padding list: padding changes neither the cuts, the stagger, the
// lone rule nor the two-stage rule.
TEST(DecodePlan, PaddingChunksChangeNoLiveItem) {
  std::mt19937_64 rng(std::random_device{}());
  int lone_plans = 0, two_stage_plans = 0, staggered = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int n_kv = 8, B = 64, seqs = uni(rng, 17, 100), pad = uni(rng, 1, 64), n_layers = uni(rng, 1, 2);
    std::vector<int32_t> indptr(1, 0);
    const int len_max = uni(rng, 0, 1) ? 40 : 1200;
    for (int c = 0; c < seqs + pad; ++c)
      for (int l = 0; l < n_layers * n_kv; ++l) indptr.push_back(indptr.back() + (c < seqs ? uni(rng, 1, len_max) : 0));
    std::vector<int32_t> chunks(seqs + pad);
    std::iota(chunks.begin(), chunks.end(), 0);
    K::DecodePlanOptions o;
    o.slots = 264;
    o.lone_slots = 132;
    o.lone_min_tokens = uni(rng, 0, 1) ? 32768 : uni(rng, 1, 40000);
    K::DecodePlan live, padded;
    K::plan_decode(indptr.data(), nullptr, chunks.data(), seqs, n_layers, n_kv, B, o, live);
    K::plan_decode(indptr.data(), nullptr, chunks.data(), seqs + pad, n_layers, n_kv, B, o, padded);
    const std::string what = "trial " + std::to_string(trial) + ": " + std::to_string(seqs) + " + " +
                             std::to_string(pad) + " chunks, lists of up to " + std::to_string(len_max);
    ASSERT_EQ(padded.lone, live.lone) << what;
    ASSERT_EQ(padded.two_stage, live.two_stage) << what;
    ASSERT_EQ(padded.max_partials, live.max_partials) << what;
    for (int layer = 0; layer < n_layers; ++layer) {
      const int n_live = live.layer_begin[layer + 1] - live.layer_begin[layer];
      ASSERT_EQ(padded.layer_begin[layer + 1] - padded.layer_begin[layer], n_live + pad * n_kv) << what;
      const K::DecodeWorkItem* p = padded.items.data() + padded.layer_begin[layer];
      const K::DecodeWorkItem* l = live.items.data() + live.layer_begin[layer];
      for (int i = 0; i < n_live; ++i)
        ASSERT_EQ(item_fields(p[i]), item_fields(l[i])) << what << ", layer " << layer << ", item " << i;
      for (int i = n_live; i < n_live + pad * n_kv; ++i) {
        const K::DecodeWorkItem& it = p[i];
        ASSERT_GE(it.chunk, seqs) << what;
        ASSERT_EQ(it.e_end, it.e_begin) << what;
        ASSERT_EQ(it.n_splits, 1) << what;
      }
    }
    o.stagger = 0;
    K::DecodePlan unstaggered;
    K::plan_decode(indptr.data(), nullptr, chunks.data(), seqs, n_layers, n_kv, B, o, unstaggered);
    lone_plans += live.lone;
    two_stage_plans += live.two_stage;
    staggered += unstaggered.items.size() != live.items.size();
  }
  EXPECT_GT(lone_plans, 0);  // the trials reach the lone rule, the two-stage rule and the stagger
  EXPECT_GT(two_stage_plans, 0);
  EXPECT_GT(staggered, 0);
}

// Laying out the layers' items on several threads (DecodePlanOptions::parallel_for; the chunks
// here run on threads of their own, last chunk first) gives the plan of laying them out on one:
// a model-sized plan (32 layers, 64 chunks), whose layers share lengths in runs of random size.
TEST(DecodePlan, LayersLaidOutInParallelAsInSeries) {
  std::mt19937_64 rng(std::random_device{}());
  int went_parallel = 0;
  for (int trial = 0; trial < 12; ++trial) {
    const int n_layers = 32, n_kv = 8, n_chunks = 64, B = 64;
    std::vector<int32_t> lens(n_layers * n_chunks * n_kv);
    for (int layer = 0; layer < n_layers; ++layer)
      for (int i = 0; i < n_chunks * n_kv; ++i)
        lens[layer * n_chunks * n_kv + i] =
            layer > 0 && uni(rng, 0, 3) != 0 ? lens[(layer - 1) * n_chunks * n_kv + i] : uni(rng, 1, 200);
    std::vector<int32_t> begin, end;
    int32_t at = 0;
    for (int c = 0; c < n_chunks; ++c)
      for (int layer = 0; layer < n_layers; ++layer)
        for (int h = 0; h < n_kv; ++h) {
          at += uni(rng, 0, 5);  // lists apart, as in the arena
          begin.push_back(at);
          at += lens[(layer * n_chunks + c) * n_kv + h];
          end.push_back(at);
        }
    std::vector<int32_t> dec;
    for (int c = 0; c < n_chunks; ++c)
      if (uni(rng, 0, 7) != 0) dec.push_back(c);
    K::DecodePlanOptions o;
    o.slots = uni(rng, 100, 600);
    o.lone_slots = uni(rng, 0, 1) ? 132 : 0;
    K::DecodePlan serial, parallel;
    K::plan_decode(begin.data(), end.data(), dec.data(), int(dec.size()), n_layers, n_kv, B, o, serial);
    o.parallel_for = [&](int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
      std::vector<std::thread> threads;
      for (int64_t b = (n - 1) / grain * grain; b >= 0; b -= grain)
        threads.emplace_back([&fn, b, e = std::min(n, b + grain)] { fn(b, e); });
      for (auto& t : threads) t.join();
      went_parallel += threads.size() > 1;
    };
    K::plan_decode(begin.data(), end.data(), dec.data(), int(dec.size()), n_layers, n_kv, B, o, parallel);
    ASSERT_EQ(parallel.layer_begin, serial.layer_begin);
    ASSERT_EQ(parallel.max_partials, serial.max_partials);
    ASSERT_EQ(parallel.n_groups, serial.n_groups);
    for (size_t i = 0; i < serial.items.size(); ++i)
      ASSERT_EQ(item_fields(serial.items[i]), item_fields(parallel.items[i])) << "trial " << trial << " item " << i;
  }
  EXPECT_GT(went_parallel, 0);  // the plans were big enough to be laid out on several threads
}

// The decode plan cuts every list into consecutive runs covering it exactly once, with distinct
// workspace slots per layer, whatever the slot count. Half the trials give every layer the same
// list lengths (as a model's layers usually have), and then each layer's items must be those of
// planning that layer alone.
TEST(DecodePlan, CoversEveryListOnce) {
  std::mt19937_64 rng(std::random_device{}());
  for (int trial = 0; trial < 300; ++trial) {
    const int n_layers = uni(rng, 1, 3), n_kv = uni(rng, 1, 8), n_chunks = uni(rng, 1, 40), B = 16 << uni(rng, 0, 2);
    const bool same_lengths = trial % 2 == 1;
    std::vector<int32_t> lens(n_chunks * n_kv);
    for (int32_t& n : lens) n = uni(rng, 1, uni(rng, 1, 3000));
    std::vector<int32_t> indptr(1, 0);
    for (int c = 0; c < n_chunks; ++c)
      for (int layer = 0; layer < n_layers; ++layer)
        for (int h = 0; h < n_kv; ++h)
          indptr.push_back(indptr.back() + (same_lengths ? lens[c * n_kv + h] : uni(rng, 1, uni(rng, 1, 3000))));
    // In half the trials the lists lie apart (as in the CUDA backend's arena): list l at
    // [begin[l], end[l]) with a gap before it.
    const bool apart = trial % 4 >= 2;
    std::vector<int32_t> begin(indptr.begin(), indptr.end() - 1), end(indptr.begin() + 1, indptr.end());
    if (apart)
      for (size_t l = 0; l < begin.size(); ++l) begin[l] += 3 * int(l) + 1, end[l] += 3 * int(l) + 1;
    std::vector<int32_t> dec;
    for (int c = 0; c < n_chunks; ++c)
      if (uni(rng, 0, 3) != 0) dec.push_back(c);
    if (dec.empty()) dec.push_back(0);
    K::DecodePlanOptions o;
    o.slots = uni(rng, 1, 600);
    o.lone_slots = uni(rng, 0, 1) ? uni(rng, 1, 300) : 0;
    o.min_split_tokens = uni(rng, 1, 1024);
    o.min_wave_split_tokens = uni(rng, 1, 2048);
    o.min_lone_split_tokens = uni(rng, 1, 1024);
    o.stagger = uni(rng, 0, 2) * 0.25;
    o.lone_min_tokens = uni(rng, 1, 40000);  // lists of up to 3000 pages of up to 64 tokens
    o.lone_min_item_tokens = uni(rng, 1, 40000);
    K::DecodePlan plan;
    K::plan_decode(apart ? begin.data() : indptr.data(), apart ? end.data() : nullptr, dec.data(), int(dec.size()),
                   n_layers, n_kv, B, o, plan);
    ASSERT_EQ(plan.layer_begin.size(), size_t(n_layers + 1));
    ASSERT_EQ(plan.n_groups, int(dec.size()) * n_kv);
    for (int layer = 0; layer < n_layers; ++layer) {
      std::vector<int> covered(end.back(), 0), slot_used(plan.max_partials, 0);
      for (int i = plan.layer_begin[layer]; i < plan.layer_begin[layer + 1]; ++i) {
        const K::DecodeWorkItem& it = plan.items[i];
        const int li = (it.chunk * n_layers + layer) * n_kv + it.kv_head;
        ASSERT_GE(it.e_begin, begin[li]);
        ASSERT_LE(it.e_end, end[li]);
        ASSERT_LE(it.n_splits, std::max(o.max_splits, 1));
        for (int x = it.e_begin; x < it.e_end; ++x) covered[x]++;
        if (it.n_splits > 1) {
          ASSERT_LT(it.partial0 + it.split, plan.max_partials);
          slot_used[it.partial0 + it.split]++;
        }
        ASSERT_LT(it.group_id, plan.n_groups);
      }
      for (int c : dec)
        for (int h = 0; h < n_kv; ++h) {
          const int li = (c * n_layers + layer) * n_kv + h;
          for (int x = begin[li]; x < end[li]; ++x) ASSERT_EQ(covered[x], 1) << "entry " << x;
        }
      for (int u : slot_used) ASSERT_LE(u, 1);
      // Every group's items are its n_splits splits, numbered 0 .. n_splits - 1.
      std::map<int, std::vector<int>> splits, n_splits;
      for (int i = plan.layer_begin[layer]; i < plan.layer_begin[layer + 1]; ++i) {
        splits[plan.items[i].group_id].push_back(plan.items[i].split);
        n_splits[plan.items[i].group_id].push_back(plan.items[i].n_splits);
      }
      for (auto& [g, s] : splits) {
        std::sort(s.begin(), s.end());
        for (size_t k = 0; k < s.size(); ++k) ASSERT_EQ(s[k], int(k)) << "group " << g;
        for (int n : n_splits[g]) ASSERT_EQ(n, int(s.size())) << "group " << g;
      }
    }
    if (!same_lengths) continue;
    // One layer of the same lists planned alone: the same items, at that layer's list offsets.
    std::vector<int32_t> one(1, 0);
    for (int32_t n : lens) one.push_back(one.back() + n);
    K::DecodePlan alone;
    K::plan_decode(one.data(), nullptr, dec.data(), int(dec.size()), 1, n_kv, B, o, alone);
    const int n_items = alone.layer_begin[1];
    for (int layer = 0; layer < n_layers; ++layer) {
      ASSERT_EQ(plan.layer_begin[layer + 1] - plan.layer_begin[layer], n_items) << "layer " << layer;
      for (int i = 0; i < n_items; ++i) {
        const K::DecodeWorkItem& a = alone.items[i];
        const K::DecodeWorkItem& b = plan.items[plan.layer_begin[layer] + i];
        const int la = a.chunk * n_kv + a.kv_head, lb = (b.chunk * n_layers + layer) * n_kv + b.kv_head;
        ASSERT_EQ(item_fields(a, one[la]), item_fields(b, begin[lb])) << "layer " << layer << " item " << i;
      }
    }
  }
}

}  // namespace
