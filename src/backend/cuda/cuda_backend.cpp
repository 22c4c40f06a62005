// The CUDA backend (contract in cuda_backend.h): the CPU forward pass of cpu_backend.cpp, step for
// step, as device kernels (model_kernels.h), cuBLAS GEMMs (gemm.h) and the sharded attention
// kernels of kernels/ (sharded_attention_runner.h; the simple kernel of paged_attention_simple.h
// where they do not apply, or when HEADSHARD_ATTENTION=simple), all enqueued on one stream;
// decode steps replay CUDA graphs.
#include "backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/decode_graphs.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/device_sampler.h"
#include "backend/cuda/device_weights.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/gemv.h"
#include "backend/cuda/model_kernels.h"
#include "backend/cuda/paged_attention_simple.h"
#include "backend/cuda/sharded_attention_runner.h"
#include "backend/cuda/step_inputs.h"
#include "model/rope.h"
#include "model/weights.h"

namespace hs {

namespace {

using cuda::bf16;
using cuda::half16;
using cuda::DeviceBuffer;

// Buffers are sized for this many tokens up front, so that decode graphs (up to 256 sequences)
// and the engine's default step (512 tokens) never see them move.
constexpr int kReserveTokens = 512;
constexpr int kReserveRows = cuda::DecodeGraphs::kMaxBucket;

// The backend's stream; declared first in the backend so that it is destroyed last.
struct Stream {
  cudaStream_t s = nullptr;
  Stream() { HS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() {
    if (s) {
      cudaStreamSynchronize(s);  // nothing may still read the buffers being freed after this
      cudaStreamDestroy(s);
    }
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

struct Event {
  cudaEvent_t e = nullptr;
  Event() { HS_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)); }
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

// Copies host data to the device on the backend's stream and waits: a plain cudaMemcpy runs on
// the legacy stream, which a non-blocking stream does not wait for.
template <typename T>
void upload_now(T* dst, const T* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  HS_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyHostToDevice, s));
  HS_CUDA_CHECK(cudaStreamSynchronize(s));
}

struct DeviceRope {
  DeviceBuffer<float> inv_freq;
  float mscale = 1.0f;
  void upload(const RopeTable& t, cudaStream_t s) {
    mscale = t.mscale;
    inv_freq.allocate(t.inv_freq.size());
    upload_now(inv_freq.get(), t.inv_freq.data(), t.inv_freq.size(), s);
  }
};

bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::string(v) == value;
}

// The GEMM operands' type: fp16 (three more mantissa bits: the GPU's greedy choices agree with
// the float32 reference more often) except for Gemma, whose activations outgrow fp16's range;
// HEADSHARD_CUDA_GEMM=bf16|fp16 overrides.
cuda::GemmType gemm_type(const ModelConfig& c) {
  if (env_is("HEADSHARD_CUDA_GEMM", "bf16")) return cuda::GemmType::BF16;
  if (env_is("HEADSHARD_CUDA_GEMM", "fp16")) return cuda::GemmType::FP16;
  return c.arch == Arch::Gemma3 ? cuda::GemmType::BF16 : cuda::GemmType::FP16;
}

// HEADSHARD_CUDA_TIMING=1: where the steps' wall time goes, logged every 100 steps: the caller's
// time between a step's launch and the one before's (or its collection), staging (checks and
// layout), uploads and planning, enqueueing, waiting for the GPU in collect, and the GPU's own
// time from the first kernel to the last copy. Each of the two steps in flight has its events.
class StepTimer {
 public:
  explicit StepTimer(cudaStream_t s) : on_(env_is("HEADSHARD_CUDA_TIMING", "1")), s_(s) {
    if (!on_) return;
    for (auto& g : gpu_) {
      HS_CUDA_CHECK(cudaEventCreate(&g[0]));
      HS_CUDA_CHECK(cudaEventCreate(&g[1]));
    }
  }
  ~StepTimer() {
    if (!on_) return;
    report();
    for (auto& g : gpu_) {
      cudaEventDestroy(g[0]);
      cudaEventDestroy(g[1]);
    }
  }
  void begin() {
    if (!on_) return;
    t_ = Clock::now();
    if (steps_ > 0 || n_ > 0) ms_[0] += ms(last_end_, t_);
  }
  // Ends phase i (1 stage, 2 upload and plan, 3 enqueue, 4 wait) now; wait_begin() starts phase 4.
  void phase(int i) {
    if (!on_) return;
    const auto now = Clock::now();
    ms_[i] += ms(t_, now);
    t_ = now;
  }
  void wait_begin() {
    if (on_) t_ = Clock::now();
  }
  void gpu_begin(int slot) {
    if (on_) HS_CUDA_CHECK(cudaEventRecord(gpu_[slot][0], s_));
  }
  void gpu_end(int slot) {
    if (on_) HS_CUDA_CHECK(cudaEventRecord(gpu_[slot][1], s_));
  }
  // After the slot's step has finished.
  void end(int slot) {
    if (!on_) return;
    float g = 0.0f;
    HS_CUDA_CHECK(cudaEventElapsedTime(&g, gpu_[slot][0], gpu_[slot][1]));
    ms_[5] += g;
    last_end_ = Clock::now();
    if (++n_ == 100) report();
  }

 private:
  using Clock = std::chrono::steady_clock;
  static double ms(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  }
  void report() {
    if (n_ == 0) return;
    auto per = [&](int i) { return ms_[i] / n_; };
    spdlog::info("CUDA steps {}-{}, ms per step: caller {:.3f}, stage {:.3f}, upload+plan {:.3f}, enqueue {:.3f}, "
                 "wait {:.3f}; GPU {:.3f}",
                 steps_ + 1, steps_ + n_, per(0), per(1), per(2), per(3), per(4), per(5));
    steps_ += n_;
    n_ = 0;
    for (double& m : ms_) m = 0.0;
  }
  bool on_;
  cudaStream_t s_;
  cudaEvent_t gpu_[2][2] = {};
  Clock::time_point t_, last_end_;
  double ms_[6] = {};
  int64_t steps_ = 0;
  int n_ = 0;
};

int select_device(int device) {
  HS_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

void check_supported(const ModelConfig& c) {
  if (c.d_model > cuda::kMaxModelDim)
    throw std::invalid_argument("CUDA backend: d_model " + std::to_string(c.d_model) + " is above the supported " +
                                std::to_string(cuda::kMaxModelDim));
  if (c.head_dim > cuda::kMaxHeadDim)
    throw std::invalid_argument("CUDA backend: head_dim " + std::to_string(c.head_dim) + " is above the supported " +
                                std::to_string(cuda::kMaxHeadDim));
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || c.n_heads / c.n_kv_heads > 32)
    throw std::invalid_argument("CUDA backend: " + std::to_string(c.n_heads) + " query heads over " +
                                std::to_string(c.n_kv_heads) + " KV heads is not a supported grouping (at most 32)");
  if (c.rope_dims > c.head_dim || c.rope_dims % 2 != 0)
    throw std::invalid_argument("CUDA backend: rope_dims " + std::to_string(c.rope_dims) + " does not fit head_dim " +
                                std::to_string(c.head_dim));
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<const ModelWeights> w, int device);
  ~CudaBackend() override { cudaSetDevice(device_); }  // members free their memory on our device

  std::string name() const override { return "cuda"; }
  const ModelConfig& config() const override { return c_; }
  int64_t page_bytes(int32_t block_size) const override {
    return int64_t{2} * block_size * c_.head_dim * static_cast<int64_t>(sizeof(bf16));
  }
  void configure_kv(const ShardPlan& plan, int32_t n_pages) override;
  bool samples_tokens() const override { return true; }
  void forward(const Batch& batch, const KvStepMeta& meta, Logits& out) override {
    launch(batch, meta, out);
    collect(out);
  }
  // HEADSHARD_CUDA_OVERLAP=0: the engine runs one step at a time (for comparisons).
  bool overlaps_steps() const override { return overlap_; }
  void launch(const Batch& batch, const KvStepMeta& meta, Logits& out) override;
  void collect(Logits& out) override;

 private:
  // Copies back the logits rows of the chunks that want them (not sampled here, not skipped).
  void copy_logits(const Batch& batch, Logits& out);
  // Enqueues the forward pass of a staged step on the stream (no host synchronization, no
  // allocation: it is what decode graphs capture).
  void record_step(const cuda::StepShape& s);
  void attention(int layer, const cuda::StepShape& s);
  // Grows the activation buffers; true when one moved.
  bool reserve_activations(int n_tokens, int n_rows);

  std::shared_ptr<const ModelWeights> w_;
  const ModelConfig& c_;
  int device_;
  Stream stream_;
  std::unique_ptr<cuda::Gemm> gemm_;
  cuda::DeviceWeights dw_;
  DeviceRope rope_global_, rope_local_;

  ShardPlan plan_;
  int32_t n_pages_ = 0;
  bool configured_ = false;
  DeviceBuffer<bf16> pages_;   // the page pool: page p = K [B][D] then V [B][D]
  DeviceBuffer<int4> shards_;  // per (layer, KV head), layer-major: {sink, local, stride, offset}
  cuda::StepInputs inputs_;
  bool sharded_kernels_ = false;  // the optimized kernels run the attention
  cuda::ShardedAttentionRunner sharded_;

  // Activations, [tokens][width] row-major.
  DeviceBuffer<float> x_;       // residual stream [T][d_model]
  DeviceBuffer<half16> h_;      // normed input of the next GEMM [T][d_model]
  DeviceBuffer<float> qkv_;     // fused Q/K/V projection [T][q_dim + 2 kv_dim]; Q roped in place
  DeviceBuffer<bf16> q_;        // sharded kernels: the roped Q as bf16 [T][q_dim]
  DeviceBuffer<bf16> att_;      // attention output [T][q_dim]
  DeviceBuffer<half16> att16_;  // the same as fp16, the output projection's input (FP16 GEMMs)
  DeviceBuffer<float> o_;       // Gemma: projection before its post-norm [T][d_model]
  DeviceBuffer<float> gu_;      // fused gate/up projection [T][d_ff][2: gate, up]
  DeviceBuffer<half16> act_;    // gated activation [T][d_ff]
  DeviceBuffer<half16> hrows_;  // final-normed rows that need logits [R][d_model]
  DeviceBuffer<float> logits_;  // [R][vocab]

  cuda::DeviceSampler sampler_;
  // Steps in flight: launched_ - collected_ (at most 2). uploaded_ follows the last launch's
  // copies from pinned memory (staging the next step waits for it); done_[i] the end of the steps
  // launched as i, i + 2, ...
  int64_t launched_ = 0, collected_ = 0;
  Event uploaded_, done_[2];
  bool overlap_ = !env_is("HEADSHARD_CUDA_OVERLAP", "0");
  StepTimer timer_{stream_.s};
  cuda::DecodeGraphs graphs_;
  bool graphs_enabled_ = !env_is("HEADSHARD_CUDA_GRAPHS", "0");
  // HEADSHARD_ATTENTION=simple keeps the simple kernel (for comparisons); otherwise the sharded
  // kernels run wherever they support the shape.
  bool simple_attention_ = env_is("HEADSHARD_ATTENTION", "simple");
  bool fuse_row_ = !env_is("HEADSHARD_CUDA_FUSE", "0");  // see record_step
  bool fuse_act_ = !env_is("HEADSHARD_CUDA_FUSE_ACT", "0");  // see record_step
  uint64_t generation_ = 1;  // changes whenever a buffer a graph captured moves
};

CudaBackend::CudaBackend(std::shared_ptr<const ModelWeights> w, int device)
    : w_(std::move(w)), c_(w_->config), device_(select_device(device)) {
  check_supported(c_);
  // Each kernel is scheduled while the one before it runs (programmatic dependent launch), so that
  // its launch latency hides behind that kernel's tail; HEADSHARD_CUDA_PDL=0 for comparisons.
  kernels::set_programmatic_launch(!env_is("HEADSHARD_CUDA_PDL", "0"));
  // The sharded decode streams pages with the copy engine; for comparisons,
  // HEADSHARD_CUDA_DECODE=cp.async, tma-shared (two blocks per multiprocessor for every grid),
  // tma-unstaggered (plans without the stagger: DecodePlanOptions::stagger), tma-nolone (no
  // lone plans of long lists: DecodePlanOptions::lone_min_tokens), tma-notwostage (no two-stage
  // plans of long items: DecodePlanOptions::two_stage_min_item_tokens), tma-shortsplits (splits
  // shorter than DecodePlanOptions::min_wave_split_tokens in plans of more than one wave),
  // tma-notiles (the copy engine's instances where the 128-token-tile kernel runs otherwise) or
  // tma-wholewaves (plans of more than four waves estimated in whole waves: decode variant 11).
  constexpr std::pair<const char*, int> kDecodeVariants[] = {
      {"cp.async", 1},       {"tma-shared", 2},      {"tma-unstaggered", 5}, {"tma-nolone", 6},
      {"tma-notwostage", 7}, {"tma-shortsplits", 8}, {"tma-notiles", 10},    {"tma-wholewaves", 11}};
  int decode_variant = 0;
  for (const auto& [name, variant] : kDecodeVariants)
    if (env_is("HEADSHARD_CUDA_DECODE", name)) decode_variant = variant;
  kernels::set_kernel_variant(decode_variant, 0);
  // HEADSHARD_CUDA_GEMV_SPLITS: how many warps may share a row of the single-row kernel (1 for
  // comparisons; gemv.h's gemv_config).
  // HEADSHARD_CUDA_GEMV_BLOCK=G (0: off) and HEADSHARD_CUDA_GEMV_BLOCK_MIB: the block kernel's
  // rows a group and the largest matrix it serves (gemv.h's gemv_block_rows), for comparisons.
  const char* splits = std::getenv("HEADSHARD_CUDA_GEMV_SPLITS");
  const char* block = std::getenv("HEADSHARD_CUDA_GEMV_BLOCK");
  const char* block_mib = std::getenv("HEADSHARD_CUDA_GEMV_BLOCK_MIB");
  gemm_ = std::make_unique<cuda::Gemm>(stream_.s, !env_is("HEADSHARD_CUDA_GEMV", "0"),
                                       splits ? std::clamp(std::atoi(splits), 1, cuda::kMaxGemvSplits)
                                              : cuda::kMaxGemvSplits,
                                       block ? std::atoi(block) : cuda::kGemvBlockRows,
                                       block_mib ? int64_t{std::atoi(block_mib)} << 20 : cuda::kGemvBlockMaxBytes);
  // Llama's attention pre-norm weights go into wqkv, so that a single row's QKV projection reads the
  // residual stream and applies the norm itself (record_step): one norm kernel fewer a layer, 0.4%
  // faster at batch 1 (kernels/NOTES.md, session 60). HEADSHARD_CUDA_FOLD_NORM=0 keeps the norm
  // kernels; =1 folds ffn_norm into wgu too, which was 2.1% slower (session 58: each gate/up warp
  // sums x^2 again). Gemma 3 keeps a kernel between the projections for its post-norms anyway.
  const bool fold_attn = c_.arch == Arch::Llama && !env_is("HEADSHARD_CUDA_FOLD_NORM", "0");
  dw_ = cuda::upload_weights(*w_, gemm_type(c_), stream_.s, fold_attn,
                             fold_attn && env_is("HEADSHARD_CUDA_FOLD_NORM", "1"));
  spdlog::info("CUDA GEMMs in {}", dw_.type == cuda::GemmType::FP16 ? "fp16" : "bf16");
  // The same tables as the CPU backend: scaled frequencies on global layers only.
  rope_global_.upload(make_rope_table(c_, c_.rope_base, w_->rope_freq_factors, true), stream_.s);
  rope_local_.upload(make_rope_table(c_, c_.rope_base_local, {}, false), stream_.s);
}

void CudaBackend::configure_kv(const ShardPlan& plan, int32_t n_pages) {
  plan.validate_for(c_);
  if (n_pages < 0) throw std::invalid_argument("CUDA backend: negative page count");
  HS_CUDA_CHECK(cudaSetDevice(device_));
  HS_CUDA_CHECK(cudaStreamSynchronize(stream_.s));
  graphs_.clear();
  ++generation_;
  configured_ = false;
  // A pool of the same size is kept (an engine built again on this backend, as each rep of
  // bench_generate builds one): its contents mean nothing to the new cache either way.
  const size_t pool_elems = static_cast<size_t>(n_pages) * (page_bytes(plan.block_size()) / sizeof(bf16));
  if (pages_.size() != pool_elems) {
    pages_.allocate(0);  // free the old pool before asking for the new one
    try {
      pages_.allocate(pool_elems);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error("CUDA backend: cannot allocate the KV page pool (" + std::to_string(n_pages) +
                               " pages of " + std::to_string(page_bytes(plan.block_size())) +
                               " bytes); lower --kv-memory. " + e.what());
    }
  }
  std::vector<int4> shards;
  shards.reserve(plan.heads().size());
  for (const HeadShard& h : plan.heads()) shards.push_back(make_int4(h.sink, h.local, h.stride, h.offset));
  shards_.allocate(shards.size());
  upload_now(shards_.get(), shards.data(), shards.size(), stream_.s);
  inputs_.forget_lists();
  // Every entry of a step's page lists is a distinct page, so n_pages entries always suffice.
  inputs_.reserve(kReserveTokens, static_cast<size_t>(c_.n_layers) * c_.n_kv_heads, static_cast<size_t>(n_pages));
  reserve_activations(kReserveTokens, kReserveRows);
  const std::string unsupported = cuda::ShardedAttentionRunner::unsupported(c_, plan.block_size());
  sharded_kernels_ = !simple_attention_ && unsupported.empty();
  if (sharded_kernels_) sharded_.configure(c_, plan.block_size());
  spdlog::info("CUDA attention: {}", sharded_kernels_     ? "sharded kernels"
                                     : simple_attention_ ? "simple kernel (HEADSHARD_ATTENTION=simple)"
                                                         : "simple kernel; the sharded kernels do not take " + unsupported);
  plan_ = plan;
  n_pages_ = n_pages;
  configured_ = true;
}

bool CudaBackend::reserve_activations(int n_tokens, int n_rows) {
  const size_t T = n_tokens, R = n_rows, d = c_.d_model, ff = c_.d_ff;
  bool moved = false;
  moved |= x_.grow_to(T * d);
  moved |= h_.grow_to(T * d);
  moved |= qkv_.grow_to(T * (c_.q_dim() + 2 * c_.kv_dim()));
  moved |= q_.grow_to(T * c_.q_dim());
  moved |= att_.grow_to(T * c_.q_dim());
  moved |= o_.grow_to(T * d);
  moved |= gu_.grow_to(T * 2 * ff);
  moved |= act_.grow_to(T * ff);
  if (dw_.type == cuda::GemmType::FP16) moved |= att16_.grow_to(T * c_.q_dim());
  moved |= hrows_.grow_to(R * d);
  moved |= logits_.grow_to(R * c_.vocab_size);
  return moved;
}

void CudaBackend::launch(const Batch& batch, const KvStepMeta& meta, Logits& out) {
  if (!configured_) throw std::logic_error("CUDA backend: configure_kv() must come before forward()");
  if (launched_ - collected_ >= 2) throw std::logic_error("CUDA backend: two steps are in flight already");
  HS_CUDA_CHECK(cudaSetDevice(device_));  // the engine thread may not be the one that built us
  bool decode_only = !batch.chunks.empty();
  for (const SeqChunk& ch : batch.chunks) decode_only = decode_only && ch.tokens.size() == 1;
  const int bucket =
      graphs_enabled_ && decode_only ? cuda::DecodeGraphs::bucket_for(static_cast<int>(batch.chunks.size())) : 0;

  timer_.begin();
  // The pinned staging buffers are free once the last launch's copies have run.
  if (launched_ > 0) HS_CUDA_CHECK(cudaEventSynchronize(uploaded_.e));
  const cuda::StepShape s = inputs_.stage(batch, meta, c_, n_pages_, plan_.block_size(), bucket, out,
                                          sampler_.has_staged() ? &sampler_.last_rows() : nullptr);
  sampler_.stage(batch, out);
  timer_.phase(1);
  const int slot = static_cast<int>(launched_ & 1);
  ++launched_;
  // Everything the step uploads goes up in one launch (model_kernels.h: HostCopies).
  cuda::HostCopies copies;
  if (inputs_.add_copies(copies)) ++generation_;
  if (sharded_kernels_ && sharded_.plan(s, inputs_, copies)) ++generation_;
  if (reserve_activations(s.n_tokens, s.n_rows)) ++generation_;
  sampler_.add_copies(copies);
  cuda::copy_from_host(copies, stream_.s);
  inputs_.finish_upload(stream_.s, sampler_.device_tokens());
  if (sharded_kernels_) sharded_.zero_counters(stream_.s);
  HS_CUDA_CHECK(cudaEventRecord(uploaded_.e, stream_.s));
  timer_.phase(2);
  timer_.gpu_begin(slot);
  if (bucket > 0) {
    // A graph bakes in the decode launch's grid, sized by the plan's capacity class (a power of
    // two, or the one-block-per-multiprocessor grid below the next one), and its instance.
    const unsigned cap = sharded_kernels_ ? static_cast<unsigned>(sharded_.capacity()) : 0;
    const int capacity_class = std::bit_width(cap) + (std::has_single_bit(cap) || cap == 0 ? 0 : 32);
    const int instance = sharded_kernels_ ? sharded_.decode_instance() : 0;
    graphs_.run((bucket * 64 + capacity_class) * 3 + instance, generation_, stream_.s, [&] { record_step(s); });
  } else
    record_step(s);
  sampler_.sample(logits_.get(), c_.vocab_size, stream_.s);
  out.data.resize(static_cast<size_t>(s.real_rows) * c_.vocab_size);
  copy_logits(batch, out);
  timer_.gpu_end(slot);
  HS_CUDA_CHECK(cudaEventRecord(done_[slot].e, stream_.s));
  timer_.phase(3);
}

void CudaBackend::collect(Logits& out) {
  if (collected_ == launched_) throw std::logic_error("CUDA backend: collect() without a launched step");
  const int slot = static_cast<int>(collected_ & 1);
  timer_.wait_begin();
  HS_CUDA_CHECK(cudaEventSynchronize(done_[slot].e));  // also reports any fault inside the step's kernels
  timer_.phase(4);
  ++collected_;
  sampler_.collect(out);
  timer_.end(slot);
}

void CudaBackend::copy_logits(const Batch& batch, Logits& out) {
  const size_t V = c_.vocab_size;
  int64_t run_begin = 0, run_end = 0;  // rows [run_begin, run_end) wait to be copied
  auto flush = [&] {
    if (run_end > run_begin)
      HS_CUDA_CHECK(cudaMemcpyAsync(out.data.data() + run_begin * V, logits_.get() + run_begin * V,
                                    (run_end - run_begin) * V * sizeof(float), cudaMemcpyDeviceToHost, stream_.s));
    run_begin = run_end = 0;
  };
  for (size_t c = 0; c < batch.chunks.size(); ++c) {
    const SeqChunk& ch = batch.chunks[c];
    if (ch.sample || ch.skip_logits) continue;
    const int64_t first = out.first_row[c], end = first + (ch.all_logits ? static_cast<int64_t>(ch.tokens.size()) : 1);
    if (first != run_end) {
      flush();
      run_begin = first;
    }
    run_end = end;
  }
  flush();
}

void CudaBackend::record_step(const cuda::StepShape& s) {
  const int T = s.n_tokens, d = c_.d_model, qd = c_.q_dim(), ff = c_.d_ff, H = c_.n_kv_heads;
  const int ld_qkv = qd + 2 * c_.kv_dim();
  const bool gemma = c_.arch == Arch::Gemma3;
  const float eps = c_.norm_eps;
  cudaStream_t st = stream_.s;

  const cuda::GemmType gt = dw_.type;
  // With a pre-norm's weights folded into the matrix that reads it (attn_norm into wqkv; ffn_norm into
  // wgu only with HEADSHARD_CUDA_FOLD_NORM=1), a single row's projection reads the residual stream x
  // and applies the norm itself, with no norm kernel before it; every other step runs the norm
  // kernel without the folded weight.
  const bool row_ok = gemm_->single_row_kernel() && cuda::gemv_supports(x_.get(), dw_.layers[0].wqkv.get(), d, T);
  const bool row_qkv = dw_.attn_norm_folded && row_ok, row_gu = dw_.ffn_norm_folded && row_ok;
  const cuda::GemvInput normed_x = cuda::GemvInput::rms_normed(x_.get(), eps);
  auto attn_w = [&](int l) { return dw_.attn_norm_folded ? nullptr : dw_.layers[l].attn_norm.get(); };
  cuda::embed_tokens(inputs_.tok_id(), dw_.token_embd.get(), gt, T, d, c_.embed_scale, x_.get(), st);
  if (!row_qkv) cuda::residual_norm(x_.get(), nullptr, nullptr, attn_w(0), h_.get(), gt, T, d, eps, st);
  for (int l = 0; l < c_.n_layers; ++l) {
    const cuda::DeviceLayer& L = dw_.layers[l];
    if (row_qkv) gemm_->linear_row(normed_x, L.wqkv.get(), gt, ld_qkv, d, qkv_.get());
    else gemm_->linear(h_.get(), d, L.wqkv.get(), gt, ld_qkv, d, T, qkv_.get(), ld_qkv);

    const DeviceRope& rope = c_.is_local(l) ? rope_local_ : rope_global_;
    cuda::QkvPrepParams prep{};
    prep.qkv = qkv_.get();
    prep.ld = ld_qkv;
    prep.n_tokens = T;
    prep.n_heads = c_.n_heads;
    prep.n_kv_heads = H;
    prep.head_dim = c_.head_dim;
    prep.pos = inputs_.tok_pos();
    prep.q_norm = gemma ? L.q_norm.get() : nullptr;
    prep.k_norm = gemma ? L.k_norm.get() : nullptr;
    prep.eps = eps;
    prep.inv_freq = rope.inv_freq.get();
    prep.rope_dims = c_.rope_dims;
    prep.mscale = rope.mscale;
    prep.neox = c_.rope_neox;
    prep.write_slots = inputs_.write_slots() + static_cast<int64_t>(l) * H * T;
    prep.pages = pages_.get();
    prep.block_size = plan_.block_size();
    prep.q_out = sharded_kernels_ ? q_.get() : nullptr;
    cuda::qkv_prep(prep, st);

    attention(l, s);
    // The attention kernels write bf16. FP16 GEMMs take a converted copy (exact in fp16's range),
    // except that the streaming kernel converts a single row as it reads it (HEADSHARD_CUDA_FUSE=0:
    // a copy there too, for comparisons).
    const half16* att = reinterpret_cast<const half16*>(att_.get());
    const bool bf16_row = fuse_row_ && gemm_->single_row_kernel() && cuda::gemv_supports(att, L.wo.get(), qd, T);
    if (gt == cuda::GemmType::FP16 && !bf16_row) {
      cuda::convert_bf16(att_.get(), att16_.get(), gt, static_cast<size_t>(T) * qd, st);
      att = att16_.get();
    }
    auto project = [&](float* y, float beta) {  // y (+)= att wo^T
      if (bf16_row) gemm_->linear_row({att, cuda::GemmType::BF16}, L.wo.get(), gt, d, qd, y, beta);
      else gemm_->linear(att, qd, L.wo.get(), gt, d, qd, T, y, d, beta);
    };

    // Output projection and residual: llama adds straight into x (beta = 1); Gemma norms first.
    if (gemma) {
      project(o_.get(), 0.0f);
      cuda::residual_norm(x_.get(), o_.get(), L.post_attn_norm.get(), L.ffn_norm.get(), h_.get(), gt, T, d, eps, st);
    } else {
      project(x_.get(), 1.0f);
      if (!row_gu)
        cuda::residual_norm(x_.get(), nullptr, nullptr, dw_.ffn_norm_folded ? nullptr : L.ffn_norm.get(), h_.get(), gt,
                            T, d, eps, st);
    }

    // A single row's gate/up projection applies the activation itself (one kernel fewer a layer;
    // HEADSHARD_CUDA_FUSE_ACT=0: apart, for comparisons).
    const cuda::GemvInput gu_in = row_gu ? normed_x : cuda::GemvInput{h_.get(), gt};
    if (fuse_act_ && gemm_->linear_row_gated_supported(ff, d) && cuda::gemv_supports(gu_in.x, L.wgu.get(), d, T)) {
      gemm_->linear_row_gated(gu_in, L.wgu.get(), gt, ff, d, act_.get(), gemma);
    } else {
      if (row_gu) gemm_->linear_row(normed_x, L.wgu.get(), gt, 2 * ff, d, gu_.get());
      else gemm_->linear(h_.get(), d, L.wgu.get(), gt, 2 * ff, d, T, gu_.get(), 2 * ff);
      cuda::gated_activation(gu_.get(), T, ff, gemma, act_.get(), gt, st);
    }
    // The next layer's pre-norm rides along with this layer's residual add.
    half16* next_h = l + 1 < c_.n_layers ? h_.get() : nullptr;
    const float* next_norm = next_h ? attn_w(l + 1) : nullptr;
    if (gemma) {
      gemm_->linear(act_.get(), ff, L.wdown.get(), gt, d, ff, T, o_.get(), d);
      cuda::residual_norm(x_.get(), o_.get(), L.post_ffw_norm.get(), next_norm, next_h, gt, T, d, eps, st);
    } else {
      gemm_->linear(act_.get(), ff, L.wdown.get(), gt, d, ff, T, x_.get(), d, 1.0f);
      if (!row_qkv) cuda::residual_norm(x_.get(), nullptr, nullptr, next_norm, next_h, gt, T, d, eps, st);
    }
  }
  // Final norm and logits only for the rows that were asked for.
  cuda::gather_norm(x_.get(), inputs_.row_tok(), dw_.output_norm.get(), hrows_.get(), gt, s.n_rows, d, eps, st);
  gemm_->linear(hrows_.get(), d, dw_.lm_head(), gt, c_.vocab_size, d, s.n_rows, logits_.get(), c_.vocab_size);
}

// The attention of one layer over the step: the page pool, the step's page lists and this layer's
// shards in; att_ (bf16) out.
void CudaBackend::attention(int layer, const cuda::StepShape& s) {
  const int4* shards = shards_.get() + static_cast<int64_t>(layer) * c_.n_kv_heads;
  if (sharded_kernels_) {
    sharded_.run(layer, q_.get(), att_.get(), pages_.get(), n_pages_, shards, inputs_, stream_.s);
    return;
  }
  cuda::PagedAttentionParams p{};
  p.q = qkv_.get();
  p.q_stride = c_.q_dim() + 2 * c_.kv_dim();
  p.out = att_.get();
  p.out_stride = c_.q_dim();
  p.pages = pages_.get();
  p.pos = inputs_.tok_pos();
  p.chunk = inputs_.tok_chunk();
  p.list_begin = inputs_.list_begin();
  p.list_end = inputs_.list_end();
  p.blocks = inputs_.blocks();
  p.page_ids = inputs_.pages();
  p.shards = shards;
  p.n_tokens = s.n_tokens;
  p.n_heads = c_.n_heads;
  p.n_kv_heads = c_.n_kv_heads;
  p.head_dim = c_.head_dim;
  p.block_size = plan_.block_size();
  p.n_layers = c_.n_layers;
  p.layer = layer;
  p.window = c_.is_local(layer) ? c_.sliding_window : 0;
  p.scale = c_.softmax_scale();
  cuda::paged_attention_simple(p, stream_.s);
}

}  // namespace

bool cuda_device_available() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: an answer, not an error to keep around
    return false;
  }
  return n > 0;
}

std::unique_ptr<Backend> make_cuda_backend(std::shared_ptr<const ModelWeights> w, int device) {
  if (!w) throw std::invalid_argument("CUDA backend: no weights (the model was loaded without them)");
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    throw std::runtime_error(std::string("CUDA backend: no usable GPU (") +
                             (e != cudaSuccess ? cudaGetErrorString(e) : "no devices") + ")");
  }
  if (device < 0 || device >= n)
    throw std::runtime_error("CUDA backend: device " + std::to_string(device) + " does not exist (" +
                             std::to_string(n) + " found)");
  return std::make_unique<CudaBackend>(std::move(w), device);
}

}  // namespace hs
