#include "backend/cuda/model_kernels.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/cuda_check.h"
#include "pdl.cuh"

namespace hs::cuda {

namespace {

using kernels::launch;
using kernels::pdl_begin;

// Float conversions from the two 16-bit types (to them: activation.cuh's from_float).
__device__ float to_float(bf16 v) { return __bfloat162float(v); }
__device__ float to_float(__half v) { return __half2float(v); }

// Calls f with a value of the 16-bit type that t names (f launches the kernel for that type).
template <typename F>
void with_type(GemmType t, F&& f) {
  if (t == GemmType::FP16) f(__half{});
  else f(bf16{});
}

constexpr int kRowThreads = 256;  // per-row kernels: one block per row
constexpr int kHeadThreads = 128;  // per-head kernels: one block per (token, head)

// The same for a row in memory.
__device__ float inv_rms(const float* v, int n, float eps) {
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += v[i] * v[i];
  return inv_rms_of(ss, n, eps);
}

template <typename In, typename Out>
__global__ void convert_kernel(const In* in, Out* out, size_t n) {
  pdl_begin();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<In, float>) out[i] = from_float<Out>(in[i]);
    else out[i] = from_float<Out>(to_float(in[i]));
  }
}

__global__ void scale_columns_kernel(float* v, size_t n, size_t first, int cols, const float* w) {
  pdl_begin();
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    v[i] *= w[(first + i) % cols];
}

// Loads in flight per thread in the row kernels below: a row of 4096 is two rounds of
// kRowThreads threads, not sixteen round trips to memory.
constexpr int kRowLoads = 8;

template <typename T>
__global__ void embed_kernel(const int32_t* ids, const T* table, int d, float scale, float* x) {
  pdl_begin();
  const int t = blockIdx.x;
  const T* e = table + static_cast<int64_t>(ids[t]) * d;
  float* row = x + static_cast<int64_t>(t) * d;
  for (int i0 = threadIdx.x; i0 < d; i0 += kRowLoads * blockDim.x) {
    float v[kRowLoads];
#pragma unroll
    for (int u = 0; u < kRowLoads; ++u) {
      const int i = i0 + u * blockDim.x;
      v[u] = i < d ? to_float(e[i]) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kRowLoads; ++u) {
      const int i = i0 + u * blockDim.x;
      if (i < d) row[i] = v[u] * scale;
    }
  }
}

// One block of kNormThreads per row; each thread keeps its kPer elements of the row in registers
// (x read once, written once), so a row costs one round trip to memory per pass, not d / threads.
constexpr int kNormThreads = 1024;

template <typename T, int kPer>
__global__ void __launch_bounds__(kNormThreads)
    residual_norm_kernel(float* x, const float* o, const float* o_weight, const float* h_weight, T* h_out, int d,
                         float eps) {
  // The norms' weights are no kernel's output: read while the kernel before this one ends, so that
  // after the wait only x (and o) cost a round trip to memory.
  float ow[kPer], hw[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    ow[j] = o_weight && i < d ? o_weight[i] : 0.0f;
    hw[j] = h_out && i < d ? (h_weight ? h_weight[i] : 1.0f) : 0.0f;
  }
  pdl_begin();
  const int64_t r = blockIdx.x;
  float* xr = x + r * d;
  float xv[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kNormThreads;
    xv[j] = i < d ? xr[i] : 0.0f;
  }
  auto rms_scale = [&](const float (&v)[kPer]) {
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) ss += v[j] * v[j];
    return inv_rms_of(ss, d, eps);
  };
  if (o) {
    float ov[kPer];
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = threadIdx.x + j * kNormThreads;
      ov[j] = i < d ? o[r * d + i] : 0.0f;
    }
    const float s = o_weight ? rms_scale(ov) : 1.0f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = threadIdx.x + j * kNormThreads;
      if (i < d) xr[i] = xv[j] += o_weight ? ov[j] * s * ow[j] : ov[j];
    }
  }
  if (h_out) {
    const float s = rms_scale(xv);
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = threadIdx.x + j * kNormThreads;
      if (i < d) h_out[r * d + i] = from_float<T>(xv[j] * s * hw[j]);
    }
  }
}

// Rows up to 2 * kRowLoads * kRowThreads long are held in registers (x read in one round trip,
// inv_rms's arithmetic in its order); longer ones take inv_rms and a second pass.
constexpr int kGatherPer = 2 * kRowLoads;

template <typename Out>
__global__ void gather_norm_kernel(const float* x, const int32_t* rows, const float* weight, Out* h_out, int d,
                                   float eps) {
  const bool held = d <= kGatherPer * static_cast<int>(blockDim.x);
  float w[kGatherPer];  // the weights are no kernel's output: read before the wait
#pragma unroll
  for (int j = 0; j < kGatherPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    w[j] = held && i < d ? weight[i] : 0.0f;
  }
  pdl_begin();
  const int64_t r = blockIdx.x;
  const float* xr = x + static_cast<int64_t>(rows[r]) * d;
  if (!held) {
    const float s = inv_rms(xr, d, eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) h_out[r * d + i] = from_float<Out>(xr[i] * s * weight[i]);
    return;
  }
  float v[kGatherPer];
#pragma unroll
  for (int j = 0; j < kGatherPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    v[j] = i < d ? xr[i] : 0.0f;
  }
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kGatherPer; ++j)
    if (threadIdx.x + j * blockDim.x < d) ss += v[j] * v[j];
  const float s = inv_rms_of(ss, d, eps);
#pragma unroll
  for (int j = 0; j < kGatherPer; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < d) h_out[r * d + i] = from_float<Out>(v[j] * s * w[j]);
  }
}

// One block per (token, head): heads [0, n_heads) are queries, the next n_kv_heads keys (whose
// values are stored alongside). Launched programmatically, a block first reads what earlier work
// wrote (its write slot, the position) and computes its RoPE angle while the projection before it
// ends, and lets the attention kernel launch before it waits: that kernel streams the older pages
// meanwhile, and waits for this one before it reads the queries or the new token's page.
static_assert(kMaxHeadDim / 2 <= kHeadThreads, "one RoPE pair per thread");
__global__ void qkv_prep_kernel(QkvPrepParams p) {
  __shared__ float v[kMaxHeadDim];
  const int t = blockIdx.x, head = blockIdx.y, D = p.head_dim;
  const bool is_q = head < p.n_heads;
  const int kv = head - p.n_heads;
  const int32_t slot = is_q ? -1 : p.write_slots[static_cast<int64_t>(kv) * p.n_tokens + t];
  const int half = p.rope_dims / 2, pair = threadIdx.x;  // the thread's RoPE pair
  float sn = 0.0f, cs = 0.0f;
  if (pair < half) {
    const float angle = static_cast<float>(p.pos[t]) * p.inv_freq[pair];  // float32 like the CPU table
    sincosf(angle, &sn, &cs);  // precise (large angles)
    cs *= p.mscale;
    sn *= p.mscale;
  }
  kernels::pdl_launch_dependents();
  kernels::pdl_wait();
  if (!is_q && slot < 0) return;  // a padding token: nothing to store, and no query reads it
  float* src = p.qkv + t * p.ld + (is_q ? head * D : p.n_heads * D + kv * D);
  const float* v_src = p.qkv + t * p.ld + (p.n_heads + p.n_kv_heads) * D + kv * D;
  constexpr int kPer = kMaxHeadDim / kHeadThreads;
  float values[kPer];  // the value head's, read with the key's
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kHeadThreads;
    if (i < D) v[i] = src[i];
    values[j] = !is_q && i < D ? v_src[i] : 0.0f;
  }
  __syncthreads();
  const float* norm_w = is_q ? p.q_norm : p.k_norm;
  if (norm_w) {
    const float s = inv_rms(v, D, p.eps);  // ends with a barrier: every thread has read v
    for (int i = threadIdx.x; i < D; i += blockDim.x) v[i] = v[i] * s * norm_w[i];
    __syncthreads();
  }
  if (pair < half) {  // each pair is owned by one thread, so it is rotated in place without a race
    const int a = p.neox ? pair : 2 * pair, b = p.neox ? pair + half : 2 * pair + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * cs - x1 * sn;
    v[b] = x0 * sn + x1 * cs;
  }
  __syncthreads();
  if (is_q) {
    if (p.q_out) {
      bf16* dst = p.q_out + static_cast<int64_t>(t) * p.n_heads * D + head * D;
      for (int i = threadIdx.x; i < D; i += blockDim.x) dst[i] = __float2bfloat16_rn(v[i]);
    } else {
      for (int i = threadIdx.x; i < D; i += blockDim.x) src[i] = v[i];
    }
    return;
  }
  const int B = p.block_size;
  bf16* k_row = p.pages + static_cast<int64_t>(slot / B) * 2 * B * D + static_cast<int64_t>(slot % B) * D;
  bf16* v_row = k_row + static_cast<int64_t>(B) * D;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = threadIdx.x + j * kHeadThreads;
    if (i < D) {
      k_row[i] = __float2bfloat16_rn(v[i]);
      v_row[i] = __float2bfloat16_rn(values[j]);
    }
  }
}

template <typename T>
__global__ void gated_kernel(const float* gu, int64_t n, int d_ff, bool gelu, T* out) {
  pdl_begin();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / d_ff, c = i % d_ff;
    out[i] = from_float<T>(gated_value(gu[t * 2 * d_ff + 2 * c], gu[t * 2 * d_ff + 2 * c + 1], gelu));
  }
}

__global__ void scatter_kernel(const int32_t* c, int n, int32_t* blocks, int32_t* pages) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  blocks[c[3 * i]] = c[3 * i + 1];
  pages[c[3 * i]] = c[3 * i + 2];
}

__global__ void take_sampled_kernel(const int32_t* pairs, int n, const int32_t* sampled, int32_t* ids) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) ids[pairs[2 * i]] = sampled[pairs[2 * i + 1]];
}

__global__ void copy_from_host_kernel(HostCopies c) {
  const HostCopies::Copy& k = c.copy[blockIdx.y];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < k.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    k.dst[i] = k.src[i];
}

// Grid for a grid-stride loop over n elements: enough blocks to fill the device, no more.
unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

}  // namespace

template <typename In>
void launch_convert(const In* in, half16* out, GemmType t, size_t n, cudaStream_t s) {
  if (n == 0) return;
  with_type(t, [&](auto tag) {
    using T = decltype(tag);
    HS_CUDA_CHECK(launch(convert_kernel<In, T>, grid_for(static_cast<int64_t>(n), 256), 256, 0, s, in,
                         reinterpret_cast<T*>(out), n));
  });
}

void convert_f32(const float* in, half16* out, GemmType t, size_t n, cudaStream_t s) { launch_convert(in, out, t, n, s); }

void convert_bf16(const bf16* in, half16* out, GemmType t, size_t n, cudaStream_t s) { launch_convert(in, out, t, n, s); }

void scale_columns(float* v, size_t n, size_t first, int cols, const float* w, cudaStream_t s) {
  if (n == 0) return;
  HS_CUDA_CHECK(launch(scale_columns_kernel, grid_for(static_cast<int64_t>(n), 256), 256, 0, s, v, n, first, cols, w));
}

void embed_tokens(const int32_t* ids, const half16* table, GemmType tt, int n_tokens, int d, float scale, float* x,
                  cudaStream_t s) {
  if (n_tokens == 0) return;
  with_type(tt, [&](auto tag) {
    using T = decltype(tag);
    HS_CUDA_CHECK(
        launch(embed_kernel<T>, n_tokens, kRowThreads, 0, s, ids, reinterpret_cast<const T*>(table), d, scale, x));
  });
}

void residual_norm(float* x, const float* o, const float* o_weight, const float* h_weight, half16* h_out, GemmType ht,
                   int n_rows, int d, float eps, cudaStream_t s) {
  if (n_rows == 0 || (!o && !h_out)) return;
  with_type(ht, [&](auto tag) {
    using T = decltype(tag);
    T* h = reinterpret_cast<T*>(h_out);
    auto* kernel =
        d <= 8 * kNormThreads ? residual_norm_kernel<T, 8> : residual_norm_kernel<T, kMaxModelDim / kNormThreads>;
    HS_CUDA_CHECK(launch(kernel, n_rows, kNormThreads, 0, s, x, o, o_weight, h_weight, h, d, eps));
  });
}

void gather_norm(const float* x, const int32_t* rows, const float* weight, half16* h_out, GemmType ht, int n_rows,
                 int d, float eps, cudaStream_t s) {
  if (n_rows == 0) return;
  with_type(ht, [&](auto tag) {
    using T = decltype(tag);
    HS_CUDA_CHECK(launch(gather_norm_kernel<T>, n_rows, kRowThreads, 0, s, x, rows, weight,
                         reinterpret_cast<T*>(h_out), d, eps));
  });
}

void qkv_prep(const QkvPrepParams& p, cudaStream_t s) {
  if (p.n_tokens == 0) return;
  const dim3 grid(p.n_tokens, p.n_heads + p.n_kv_heads);
  HS_CUDA_CHECK(launch(qkv_prep_kernel, grid, kHeadThreads, 0, s, p));
}

void scatter_list_entries(const int32_t* c, int n, int32_t* blocks, int32_t* pages, cudaStream_t s) {
  if (n == 0) return;
  scatter_kernel<<<(n + 255) / 256, 256, 0, s>>>(c, n, blocks, pages);
  HS_CUDA_CHECK_LAUNCH();
}

void take_sampled_tokens(const int32_t* pairs, int n, const int32_t* sampled, int32_t* ids, cudaStream_t s) {
  if (n == 0) return;
  take_sampled_kernel<<<(n + 255) / 256, 256, 0, s>>>(pairs, n, sampled, ids);
  HS_CUDA_CHECK_LAUNCH();
}

void HostCopies::add(const int32_t* src, int32_t* dst, int64_t count) {
  if (count <= 0) return;
  if (n == kMax) throw std::logic_error("HostCopies: more than " + std::to_string(kMax) + " copies");
  copy[n++] = Copy{src, dst, count};
}

void copy_from_host(const HostCopies& c, cudaStream_t s) {
  // Arrays above 128 KiB (batches of many sequences, long prefill chunks) stay on the copy engine,
  // as before the kernel (its reads across the bus were timed only up to 106 KB).
  constexpr int64_t kKernelMax = 32768;
  HostCopies small;
  int64_t longest = 0;
  for (int i = 0; i < c.n; ++i) {
    const HostCopies::Copy& k = c.copy[i];
    if (k.n > kKernelMax) {
      HS_CUDA_CHECK(cudaMemcpyAsync(k.dst, k.src, k.n * sizeof(int32_t), cudaMemcpyHostToDevice, s));
      continue;
    }
    small.add(k.src, k.dst, k.n);
    longest = std::max(longest, k.n);
  }
  if (small.n == 0) return;
  const dim3 grid(grid_for(longest, 256), static_cast<unsigned>(small.n));
  copy_from_host_kernel<<<grid, 256, 0, s>>>(small);
  HS_CUDA_CHECK_LAUNCH();
}

void gated_activation(const float* gu, int n_tokens, int d_ff, bool gelu, half16* out, GemmType ot, cudaStream_t s) {
  const int64_t n = static_cast<int64_t>(n_tokens) * d_ff;
  if (n == 0) return;
  with_type(ot, [&](auto tag) {
    using T = decltype(tag);
    HS_CUDA_CHECK(launch(gated_kernel<T>, grid_for(n, 256), 256, 0, s, gu, n, d_ff, gelu, reinterpret_cast<T*>(out)));
  });
}

}  // namespace hs::cuda
