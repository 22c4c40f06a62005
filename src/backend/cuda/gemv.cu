#include "backend/cuda/gemv.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/row_math.cuh"
#include "pdl.cuh"

namespace hs::cuda {

namespace {

constexpr int kWarps = 8;  // per block
constexpr int kVec = 8;    // 16-bit elements per 16-byte load

// Eight 16-bit floats, as float pairs.
__device__ void unpack(const uint4& v, __half, float2 (&f)[4]) {
  const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = __half22float2(h[j]);
}
__device__ void unpack(const uint4& v, __nv_bfloat16, float2 (&f)[4]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int j = 0; j < 4; ++j) f[j] = __bfloat1622float2(h[j]);
}

// acc += the dot product of eight weights (one 16-byte load) and eight unpacked inputs, in the
// order every single-row kernel here uses: the fused kernels below must add exactly as
// gemv_kernel does.
template <typename T>
__device__ __forceinline__ void accumulate(float& acc, const float2 (&xf)[4], const uint4& wv) {
  float2 wf[4];
  unpack(wv, T{}, wf);
#pragma unroll
  for (int j = 0; j < 4; ++j) acc += wf[j].x * xf[j].x + wf[j].y * xf[j].y;
}

// One warp per R consecutive weight rows; lane l takes elements [8 l, 8 l + 8) of each
// 256-element stretch, and issues the loads of U stretches of every row before it uses any, so
// that U * R 16-byte loads per lane are in flight. The weights stream through without L1
// allocation; x stays cached.
template <typename T, int R, int U>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const uint4* __restrict__ x, const uint4* __restrict__ W, int m, int k_vec, float* __restrict__ y,
                float beta) {
  kernels::pdl_begin();
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * R;
  if (row0 >= m) return;
  float acc[R] = {};
  const uint4* w[R];
#pragma unroll
  for (int r = 0; r < R; ++r) w[r] = W + static_cast<int64_t>(min(row0 + r, m - 1)) * k_vec;
  for (int i0 = lane; i0 < k_vec; i0 += 32 * U) {
    uint4 xv[U], wv[U][R];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = i0 + 32 * u;
      const bool in = i < k_vec;
      xv[u] = in ? __ldg(x + i) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = in ? __ldcs(w[r] + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float2 xf[4];
      unpack(xv[u], T{}, xf);
#pragma unroll
      for (int r = 0; r < R; ++r) accumulate<T>(acc[r], xf, wv[u][r]);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float v = acc[r];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0 && row0 + r < m) y[row0 + r] = beta != 0.0f ? v + beta * y[row0 + r] : v;
  }
}

template <typename T, int R, int U>
void launch(const half16* x, const half16* W, int m, int k, float* y, float beta, cudaStream_t s) {
  constexpr int per_block = kWarps * R;
  HS_CUDA_CHECK(kernels::launch(gemv_kernel<T, R, U>, (m + per_block - 1) / per_block, kWarps * 32, 0, s,
                                reinterpret_cast<const uint4*>(x), reinterpret_cast<const uint4*>(W), m, k / kVec,
                                y, beta));
}

// The kernel for a configuration, as a launcher of one 16-bit type.
template <typename T>
using Launcher = void (*)(const half16*, const half16*, int, int, float*, float, cudaStream_t);

template <typename T>
Launcher<T> launcher(const GemvConfig& c) {
  switch (c.rows_per_warp * 100 + c.loads_per_lane) {
    case 102: return launch<T, 1, 2>;
    case 104: return launch<T, 1, 4>;
    case 108: return launch<T, 1, 8>;
    case 116: return launch<T, 1, 16>;
    case 202: return launch<T, 2, 2>;
    case 204: return launch<T, 2, 4>;
    case 208: return launch<T, 2, 8>;
    default:
      throw std::invalid_argument("gemv: no kernel for " + std::to_string(c.rows_per_warp) + " rows per warp and " +
                                  std::to_string(c.loads_per_lane) + " loads per lane");
  }
}

// ---- Fused single-row GEMVs --------------------------------------------------------------------
// A block stages the whole input row once, as the GEMM type, in shared memory (from a 16-bit x, a
// bf16 x rounded to the GEMM type as convert_bf16 rounds it, or the float residual row normed as
// residual_norm does), then its warps take the weight rows of groups of kFusedWarps rows, one row
// per warp, exactly as gemv_kernel<T, 1, U> does (same lanes, loads and additions, so the same bits).
// The grid is at most as many blocks as the device holds at once, so the staging is paid per
// resident block, not per row group.

constexpr int kFusedWarps = 16;  // per block
constexpr int kFusedLoads = kGemvConfig.loads_per_lane;
static_assert(kGemvConfig.rows_per_warp == 1, "the fused GEMVs reproduce the one-row-per-warp kernel");

enum class In { Half16, Bf16, Norm };
enum class Out { Y, Gated };

struct FusedArgs {
  const void* x;
  const float* norm_weight;
  float eps;
  const uint4* W;
  int m, k;
  float* y;
  float beta;
  void* act;
  bool gelu;
};

// Shared memory: x as the GEMM type [k], then (Norm) the squares' partial sums.
size_t fused_smem_bytes(In in, int k) {
  return static_cast<size_t>(k) * sizeof(half16) +
         (in == In::Norm ? (rowmath::kNormThreads + 32) * sizeof(float) : 0);
}

// xs[i] = T(rms_norm(x) * w)[i], i < d, with residual_norm_kernel<T, kNormPer>'s arithmetic: the
// partial sums of its kNormThreads threads, then block_sum's two butterflies, emulated by this
// block's warps (each butterfly leaves the same bits in every lane, since float addition commutes).
template <typename T>
__device__ void stage_norm(const float* x, const float* __restrict__ w, int d, float eps, T* xs,
                           float* partial) {
  using namespace rowmath;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int t = threadIdx.x; t < kNormThreads; t += blockDim.x) {
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < kNormPer; ++j) {
      const int i = t + j * kNormThreads;
      const float v = i < d ? x[i] : 0.0f;
      ss += v * v;
    }
    partial[t] = ss;
  }
  __syncthreads();
  float* warp_sums = partial + kNormThreads;
  for (int vw = warp; vw < kNormThreads / 32; vw += kFusedWarps) {
    const float v = warp_sum(partial[vw * 32 + lane]);
    if (lane == 0) warp_sums[vw] = v;
  }
  __syncthreads();
  const float s = rms_scale_of(warp_sum(warp_sums[lane]), d, eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x) xs[i] = from_float<T>(x[i] * s * w[i]);
}

// Barrier 1 + p for the two warps 2p and 2p + 1 (barrier 0 is __syncthreads').
__device__ __forceinline__ void pair_barrier(int p) {
  asm volatile("bar.sync %0, 64;\n" ::"r"(1 + p) : "memory");
}
static_assert(kFusedWarps / 2 + 1 <= 16, "one hardware barrier per pair of warps");

template <typename T, In in, Out out>
__global__ void __launch_bounds__(kFusedWarps * 32) gemv_fused_kernel(FusedArgs a) {
  extern __shared__ uint4 smem[];
  __shared__ float row_sums[2][kFusedWarps];
  kernels::pdl_begin();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int k_vec = a.k / kVec;
  T* xs = reinterpret_cast<T*>(smem);
  if constexpr (in == In::Half16) {
    const uint4* x = static_cast<const uint4*>(a.x);
    for (int i = threadIdx.x; i < k_vec; i += blockDim.x) smem[i] = x[i];
  } else if constexpr (in == In::Bf16) {
    const __nv_bfloat16* x = static_cast<const __nv_bfloat16*>(a.x);
    for (int i = threadIdx.x; i < a.k; i += blockDim.x) xs[i] = rowmath::from_float<T>(rowmath::to_float(x[i]));
  } else {
    stage_norm(static_cast<const float*>(a.x), a.norm_weight, a.k, a.eps, xs,
               reinterpret_cast<float*>(smem + k_vec));
  }
  __syncthreads();

  // Gated: logical row r is gate row r / 2 for even r, up row r / 2 for odd r, so that a pair
  // meets in one block; act[r / 2] = T(act(gate) * up).
  const int half = a.m / 2;
  const int groups = (a.m + kFusedWarps - 1) / kFusedWarps;
  for (int g = blockIdx.x; g < groups; g += gridDim.x) {  // every warp of the block the same times
    const int r = g * kFusedWarps + warp;
    float v = 0.0f;
    if (r < a.m) {
      const int wrow = out == Out::Gated ? (r & 1) * half + (r >> 1) : r;
      const uint4* w = a.W + static_cast<int64_t>(wrow) * k_vec;
      for (int i0 = lane; i0 < k_vec; i0 += 32 * kFusedLoads) {
        uint4 xv[kFusedLoads], wv[kFusedLoads];
#pragma unroll
        for (int u = 0; u < kFusedLoads; ++u) {
          const int i = i0 + 32 * u;
          const bool inside = i < k_vec;
          xv[u] = inside ? smem[i] : make_uint4(0, 0, 0, 0);
          wv[u] = inside ? __ldcs(w + i) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < kFusedLoads; ++u) {
          float2 xf[4];
          unpack(xv[u], T{}, xf);
          accumulate<T>(v, xf, wv[u]);
        }
      }
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    if constexpr (out == Out::Y) {
      if (lane == 0 && r < a.m) a.y[r] = a.beta != 0.0f ? v + a.beta * a.y[r] : v;
    } else {
      // The pair of warps meets at its own barrier (not the block's, so that other pairs stream
      // on); the sums are double-buffered, so a warp that runs ahead cannot overwrite a sum its
      // partner has not read.
      float* sums = row_sums[(g / gridDim.x) & 1];
      if (lane == 0) sums[warp] = v;
      pair_barrier(warp / 2);
      const int i = g * (kFusedWarps / 2) + warp / 2;
      if ((warp & 1) == 0 && lane == 0 && i < half)
        static_cast<T*>(a.act)[i] = rowmath::from_float<T>(rowmath::gated(sums[warp], sums[warp + 1], a.gelu));
    }
  }
}

// Blocks of `kernel` (with `smem` dynamic bytes) the current device holds at once; cached.
int resident_blocks(const void* kernel, size_t smem) {
  static std::mutex mu;
  static std::map<std::tuple<int, const void*, size_t>, int> cache;
  int dev = 0;
  HS_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  auto [it, fresh] = cache.try_emplace({dev, kernel, smem}, 0);
  if (fresh) {
    int sms = 0, per_sm = 0;
    HS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    HS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kFusedWarps * 32, smem));
    it->second = std::max(1, sms * per_sm);
  }
  return it->second;
}

template <typename T, In in, Out out>
void run_fused(const FusedArgs& a, cudaStream_t s) {
  auto* kernel = gemv_fused_kernel<T, in, out>;
  const size_t smem = fused_smem_bytes(in, a.k);
  const int groups = (a.m + kFusedWarps - 1) / kFusedWarps;
  const int grid = std::min(groups, resident_blocks(reinterpret_cast<const void*>(kernel), smem));
  HS_CUDA_CHECK(kernels::launch(kernel, grid, kFusedWarps * 32, smem, s, a));
}

template <typename T, In in>
void run_fused(const FusedArgs& a, bool gated, cudaStream_t s) {
  if (gated) run_fused<T, in, Out::Gated>(a, s);
  else run_fused<T, in, Out::Y>(a, s);
}

template <typename T>
void run_fused(const FusedArgs& a, In in, bool gated, cudaStream_t s) {
  switch (in) {
    case In::Half16: return run_fused<T, In::Half16>(a, gated, s);
    case In::Bf16: return run_fused<T, In::Bf16>(a, gated, s);
    case In::Norm: return run_fused<T, In::Norm>(a, gated, s);
  }
}

In to_in(FusedGemv::Input i) {
  return i == FusedGemv::Input::Norm ? In::Norm : i == FusedGemv::Input::Bf16 ? In::Bf16 : In::Half16;
}

}  // namespace

bool gemv_supports(const half16* X, const half16* W, int k, int n) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return n == 1 && k % kVec == 0 && aligned(X) && aligned(W);
}

void gemv(const half16* x, const half16* W, GemmType t, int m, int k, float* y, float beta, cudaStream_t s,
          const GemvConfig& config) {
  if (t == GemmType::FP16) launcher<__half>(config)(x, W, m, k, y, beta, s);
  else launcher<__nv_bfloat16>(config)(x, W, m, k, y, beta, s);
}

}  // namespace hs::cuda

namespace hs::cuda {

bool gemv_fused_supports(const FusedGemv& f, const half16* W, int m, int k) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (!f.x || k <= 0 || k % kVec != 0 || !aligned(f.x) || !aligned(W)) return false;
  if ((f.act != nullptr) == (f.y != nullptr)) return false;  // exactly one output
  if (f.act && m % 2 != 0) return false;
  if (f.y && f.beta != 0.0f && f.beta != 1.0f) return false;
  if (f.input == FusedGemv::Input::Norm &&
      (!f.norm_weight || k > rowmath::kNormThreads * rowmath::kNormPer))
    return false;
  return fused_smem_bytes(to_in(f.input), k) <= 48 * 1024;  // no opt-in to larger shared memory
}

void gemv_fused(const FusedGemv& f, const half16* W, GemmType t, int m, int k, cudaStream_t s) {
  if (!gemv_fused_supports(f, W, m, k)) throw std::invalid_argument("gemv_fused: unsupported operands");
  const FusedArgs a{f.x, f.norm_weight, f.eps, reinterpret_cast<const uint4*>(W), m, k, f.y, f.beta, f.act, f.gelu};
  if (t == GemmType::FP16) run_fused<__half>(a, to_in(f.input), f.act != nullptr, s);
  else run_fused<__nv_bfloat16>(a, to_in(f.input), f.act != nullptr, s);
}

}  // namespace hs::cuda
