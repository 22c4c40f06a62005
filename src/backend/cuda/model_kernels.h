// The transformer's elementwise and per-row kernels for the CUDA backend (everything but the
// GEMMs and attention), each the device twin of a step of the CPU forward pass
// (src/backend/cpu/cpu_backend.cpp, ops.h). A narrow launch API: raw device pointers, sizes and
// a stream; launches are asynchronous and checked for launch errors (std::runtime_error).
// Float32 throughout; 16-bit floats only where a result feeds a GEMM (GemmType) or a KV page
// (bf16).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace hs::cuda {

using bf16 = __nv_bfloat16;

// The 16-bit float type of the GEMM operands (the weights and the activations that feed them),
// stored as raw 16-bit words: FP16 keeps three more mantissa bits than BF16, BF16 has float32's
// range (which Gemma's activations need).
enum class GemmType { BF16, FP16 };
using half16 = uint16_t;

// Largest head dimension the per-head kernels (and the simple attention) handle.
constexpr int kMaxHeadDim = 256;
// Largest model width residual_norm handles.
constexpr int kMaxModelDim = 32768;

// out[i] = in[i] as type t, round to nearest even: weight upload.
void convert_f32(const float* in, half16* out, GemmType t, size_t n, cudaStream_t s);
// out[i] = in[i] as type t (bf16 to fp16: exact within fp16's range).
void convert_bf16(const bf16* in, half16* out, GemmType t, size_t n, cudaStream_t s);
// v[i] *= w[(first + i) % cols] for i < n: the columns of a stretch of a row-major matrix with
// `cols` columns that begins at its element `first` scaled by w (a norm's weight folded into the
// matrix that reads the norm's output).
void scale_columns(float* v, size_t n, size_t first, int cols, const float* w, cudaStream_t s);

// x[t][:] = table[ids[t]][:] * scale for t < n_tokens (the scaled embedding lookup).
void embed_tokens(const int32_t* ids, const half16* table, GemmType tt, int n_tokens, int d, float scale, float* x,
                  cudaStream_t s);

// Per row r < n_rows of width d, in order:
//   when o:      x[r] += o_weight ? rms_norm(o[r]) * o_weight : o[r]   (Gemma's post-norms, residual)
//   when h_out:  h_out[r] = ht(rms_norm(x[r]) * h_weight)              (the next pre-norm; no
//                weight: 1, the weight folded into the next matrix)
// rms_norm(v) = v / sqrt(mean(v^2) + eps). One launch does a residual add and the next norm.
void residual_norm(float* x, const float* o, const float* o_weight, const float* h_weight, half16* h_out, GemmType ht,
                   int n_rows, int d, float eps, cudaStream_t s);

// h_out[r] = ht(rms_norm(x[rows[r]]) * weight) for r < n_rows: the final norm on the rows that
// need logits only.
void gather_norm(const float* x, const int32_t* rows, const float* weight, half16* h_out, GemmType ht, int n_rows,
                 int d, float eps, cudaStream_t s);

// The attention input stage of one layer, over the fused QKV projection qkv [T][ld] (float32;
// query heads at column h*D, key heads at n_heads*D + h*D, value heads after the keys):
//   Gemma's q/k norms (rms_norm(head) * q_norm / k_norm; skipped when the weight is null), then
//   RoPE at pos[t] on the first rope_dims dims (neox: pairs (i, i + rope_dims/2), else (2i, 2i+1);
//   angle pos * inv_freq[i], cos and sin times mscale), queries rewritten in place; keys and values
//   stored as bf16 into the page pool at write_slots[h * T + t] (page * B + slot; a negative slot
//   is a padding token and is not stored). Page layout: page p = K [B][D] then V [B][D].
struct QkvPrepParams {
  float* qkv;
  int64_t ld;
  int n_tokens, n_heads, n_kv_heads, head_dim;
  const int32_t* pos;
  const float* q_norm;  // [D] or null
  const float* k_norm;  // [D] or null
  float eps;
  const float* inv_freq;  // [rope_dims / 2]
  int rope_dims;
  float mscale;
  bool neox;
  const int32_t* write_slots;  // this layer's slots: [kv_head * n_tokens + t]
  bf16* pages;
  int block_size;
  bf16* q_out = nullptr;  // when set, the roped Q goes here as bf16 [T][n_heads * D] instead of back into qkv
};
void qkv_prep(const QkvPrepParams& p, cudaStream_t s);

// blocks[c[3i]] = c[3i + 1] and pages[c[3i]] = c[3i + 2] for i < n: a step's changed page-list
// entries into the device's list arena (StepInputs).
void scatter_list_entries(const int32_t* c, int n, int32_t* blocks, int32_t* pages, cudaStream_t s);

// ids[pairs[2i]] = sampled[pairs[2i + 1]] for i < n: tokens the step before sampled, into a step's
// token ids (steps launched in flight, Backend::kFromPreviousStep).
void take_sampled_tokens(const int32_t* pairs, int n, const int32_t* sampled, int32_t* ids, cudaStream_t s);

// Copies of int32 arrays from page-locked host memory (PinnedBuffer: with unified addressing the
// GPU reads it directly) into device memory, the ones up to 128 KiB made by one kernel launch,
// longer ones by the copy engine. Each cudaMemcpyAsync is a copy-engine operation that holds the
// stream a few microseconds however few bytes it moves, and a step uploads about a dozen small
// arrays (kernels/NOTES.md, session 21), all of them (the inputs, the attention's plan, the
// sampler's rows) in one launch (session 30). The sources must stay unchanged until the copies
// have run (an event after them).
struct HostCopies {
  static constexpr int kMax = 24;
  struct Copy {
    const int32_t* src;
    int32_t* dst;
    int64_t n;  // elements
  };
  Copy copy[kMax];
  int n = 0;
  // Throws std::logic_error past kMax copies; empty copies are dropped.
  void add(const int32_t* src, int32_t* dst, int64_t count);
  // n records of a type made of 32-bit words (work items, sampler rows), moved as those words.
  template <typename T>
  void add_records(const T* src, T* dst, size_t count) {
    static_assert(sizeof(T) % sizeof(int32_t) == 0 && alignof(T) >= alignof(int32_t));
    add(reinterpret_cast<const int32_t*>(src), reinterpret_cast<int32_t*>(dst),
        static_cast<int64_t>(count * (sizeof(T) / sizeof(int32_t))));
  }
};
void copy_from_host(const HostCopies& c, cudaStream_t s);

// out[t][i] = ot(act(gu[t][2 i]) * gu[t][2 i + 1]) with act = gelu_tanh (Gemma) or silu (llama):
// the gated MLP over the fused gate/up projection gu [T][2 * d_ff].
void gated_activation(const float* gu, int n_tokens, int d_ff, bool gelu, half16* out, GemmType ot, cudaStream_t s);

}  // namespace hs::cuda
