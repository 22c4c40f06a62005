// The single-row linear layers (decode of one sequence) at a model's shapes: the streaming kernel
// of gemv.h in each configuration, and cuBLAS, side by side in one run.
//   bench_gemv [--shapes MxK[,MxK...]] [--configs R:U[:S]|b:G[,...]] [--calls N] [--reps R] [--json FILE]
//              [--no-cublas]
// Shapes default to Llama-3.1-8B's (QKV, output, gate/up, down, LM head); configurations to every
// per-warp kernel gemv.h has (R rows per warp, U loads in flight per lane and row, S warps sharing
// a row) and the block kernel with G rows at a time (b:G; left out where k has no such kernel).
// Each timed run launches N calls back to back, each on its own copy of the weights (copies enough
// to be 4x the L2), and reports the median over R runs of the time per call; bandwidth is the
// weight bytes over it. A device-to-device copy of 1 GiB in the same run gives the ceiling (bytes
// read and written). --no-cublas leaves cuBLAS out (a run that times one kernel alone, as
// gpu-engine-check.sh's power stage does).
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "cli/args.h"

#ifdef HEADSHARD_WITH_CUDA
#include <cuda_runtime.h>

#include <stdexcept>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/gemv.h"
#include "sharded_attention.h"

namespace {

using hs::bench::median;
using hs::bench::split;

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    HS_CUDA_CHECK(cudaEventCreate(&a));
    HS_CUDA_CHECK(cudaEventCreate(&b));
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Median milliseconds of f() over reps runs (one warm-up first).
  template <typename F>
  double median_ms(int reps, F&& f) {
    f();
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      HS_CUDA_CHECK(cudaEventRecord(a));
      f();
      HS_CUDA_CHECK(cudaEventRecord(b));
      HS_CUDA_CHECK(cudaEventSynchronize(b));
      float t = 0;
      HS_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
      ms.push_back(t);
    }
    return median(ms);
  }
};

}  // namespace

int main(int argc, char** argv) try {
  hs::cli::Args a(argc, argv, 1, {"shapes", "configs", "calls", "reps", "json"}, {"no-cublas"});
  const auto shapes = split(a.str("shapes", "6144x4096,4096x4096,28672x4096,4096x14336,128256x4096"), ',');
  const auto configs = split(a.str("configs", "1:2,1:4,1:8,1:16,2:2,2:4,2:8,1:2:2,1:2:4,1:4:2,b:2,b:4,b:8"), ',');
  const int calls = static_cast<int>(a.integer("calls", 64));
  const int reps = static_cast<int>(a.integer("reps", 5));
  hs::kernels::set_programmatic_launch(true);  // as the backend launches them

  int dev = 0, l2 = 0;
  HS_CUDA_CHECK(cudaGetDevice(&dev));
  HS_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  Timer timer;
  nlohmann::json out = {{"l2_bytes", l2}, {"calls", calls}, {"reps", reps}, {"results", nlohmann::json::array()}};

  const size_t copy_bytes = size_t{1} << 30;
  hs::cuda::DeviceBuffer<uint8_t> src, dst;
  src.allocate(copy_bytes);
  dst.allocate(copy_bytes);
  const double copy_ms = timer.median_ms(reps, [&] {
    HS_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), copy_bytes, cudaMemcpyDeviceToDevice));
  });
  const double copy_tbs = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e12;
  out["copy_tb_per_s"] = copy_tbs;
  std::printf("device copy of 1 GiB: %.3f ms, %.2f TB/s (read + write)\n\n", copy_ms, copy_tbs);
  std::printf("%-12s %-8s %10s %8s %9s\n", "shape", "kernel", "us/call", "TB/s", "vs copy");

  hs::cuda::Gemm cublas(nullptr, false);
  for (const std::string& shape : shapes) {
    const auto x_at = shape.find('x');
    if (x_at == std::string::npos) throw std::invalid_argument("--shapes takes MxK");
    const int m = std::stoi(shape.substr(0, x_at)), k = std::stoi(shape.substr(x_at + 1));
    const size_t w_bytes = size_t(m) * k * 2;
    const int copies = static_cast<int>(std::max<size_t>(1, (4 * size_t(l2) + w_bytes - 1) / w_bytes));
    hs::cuda::DeviceBuffer<hs::cuda::half16> w, x;
    hs::cuda::DeviceBuffer<float> y;
    w.allocate(w_bytes / 2 * copies);
    x.allocate(k);
    y.allocate(m);
    // Small values (a byte pattern), so that the sums stay finite.
    HS_CUDA_CHECK(cudaMemset(w.get(), 0x1c, w_bytes * copies));
    HS_CUDA_CHECK(cudaMemset(x.get(), 0x1c, size_t(k) * 2));
    auto row = [&](const std::string& kernel, auto&& one_call) {
      const double ms = timer.median_ms(reps, [&] {
        for (int c = 0; c < calls; ++c) one_call(w.get() + size_t(c % copies) * m * k);
      });
      const double us = 1e3 * ms / calls, tbs = w_bytes / (us * 1e-6) / 1e12;
      std::printf("%-12s %-8s %10.2f %8.2f %8.0f%%\n", shape.c_str(), kernel.c_str(), us, tbs, 100 * tbs / copy_tbs);
      std::fflush(stdout);
      out["results"].push_back({{"m", m}, {"k", k}, {"kernel", kernel}, {"us_per_call", us}, {"tb_per_s", tbs}});
    };
    const hs::cuda::GemvConfig used = cublas.gemv_config_for(m, k);  // Gemm's defaults
    for (const std::string& c : configs) {
      const auto colon = c.find(':'), colon2 = c.find(':', colon + 1);
      if (colon == std::string::npos) throw std::invalid_argument("--configs takes R:U[:S] or b:G");
      const bool block = c.substr(0, colon) == "b";
      if (block && !hs::cuda::gemv_config(k, 1, std::stoi(c.substr(colon + 1))).block_rows) continue;
      const hs::cuda::GemvConfig cfg =
          block ? hs::cuda::GemvConfig{0, 0, 1, std::stoi(c.substr(colon + 1))}
                : hs::cuda::GemvConfig{std::stoi(c.substr(0, colon)), std::stoi(c.substr(colon + 1)),
                                       colon2 == std::string::npos ? 1 : std::stoi(c.substr(colon2 + 1))};
      row(c + (cfg == used ? "*" : ""), [&](const hs::cuda::half16* wc) {
        hs::cuda::gemv(x.get(), wc, hs::cuda::GemmType::FP16, m, k, y.get(), 0.0f, nullptr, cfg);
      });
    }
    if (!a.has("no-cublas"))
      row("cublas", [&](const hs::cuda::half16* wc) {
        cublas.linear(x.get(), k, wc, hs::cuda::GemmType::FP16, m, k, 1, y.get(), m);
      });
  }
  std::printf("\n* the configuration Gemm uses (Gemm::gemv_config_for)\n");
  hs::bench::write_json(a.str("json", "bench_gemv.json"), out);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gemv: %s\n", e.what());
  return 1;
}

#else

int main() {
  std::printf("bench_gemv: headshard was built without the CUDA backend\n");
  return 0;
}

#endif
