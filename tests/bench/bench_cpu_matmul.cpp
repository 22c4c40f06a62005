// The CPU backend's linear layer (cpu::matmul, Y = X W^T) on packed weights, each type of
// simd::kReadable, against the same matrix dequantized to float32, side by side in one process:
// random blocks with sane scales, a few input-row counts (1: a single sequence's decode step).
// The two give the same floats bit for bit (test_packed_weights); this measures the time.
//   bench_cpu_matmul [--types Q4_0,Q2_K,...] [--shapes ROWSxCOLS[,...]] [--rows N[,N...]]
//                    [--reps R] [--json FILE]
// Prints medians (us per call, and GB/s of weight bytes; the two forms' reps in turns) and writes
// every rep as JSON.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../packed_matrix.h"
#include "backend/cpu/ops.h"
#include "bench_util.h"
#include "cli/args.h"
#include "model/dequant_simd.h"
#include "util/thread_pool.h"

namespace {

using Clock = std::chrono::steady_clock;

// How many calls of f make a rep of about 20 ms.
template <class F>
int calls_for(F& f) {
  f();  // warm: pages touched, threads awake
  const auto t0 = Clock::now();
  f();
  const double once = std::chrono::duration<double>(Clock::now() - t0).count();
  return std::max(1, static_cast<int>(0.02 / std::max(once, 1e-7)));
}
// Microseconds per call over `calls` calls.
template <class F>
double time_rep(F& f, int calls) {
  const auto t = Clock::now();
  for (int c = 0; c < calls; ++c) f();
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count() / calls;
}

// Reps of a and b in turns (this machine's speed drifts; turns keep the two comparable).
template <class A, class B>
std::pair<std::vector<double>, std::vector<double>> time_in_turns(int reps, A&& a, B&& b) {
  const int ca = calls_for(a), cb = calls_for(b);
  std::pair<std::vector<double>, std::vector<double>> us;
  for (int r = 0; r < reps; ++r) {
    us.first.push_back(time_rep(a, ca));
    us.second.push_back(time_rep(b, cb));
  }
  return us;
}

}  // namespace

int main(int argc, char** argv) try {
  hs::cli::Args a(argc, argv, 1, {"types", "shapes", "rows", "reps", "json"}, {});
  std::vector<hs::GgmlType> types;
  if (a.has("types")) {
    for (const std::string& name : hs::bench::split(a.str("types", ""), ',')) {
      bool found = false;
      for (hs::GgmlType t : hs::simd::kReadable)
        if (hs::ggml_type_name(t) == name) types.push_back(t), found = true;
      if (!found) throw std::invalid_argument("--types: " + name + " is not a packed type");
    }
  } else {
    types.assign(std::begin(hs::simd::kReadable), std::end(hs::simd::kReadable));
  }
  const auto row_counts = hs::bench::int_list(a.str("rows", "1,4,16"));
  const int reps = static_cast<int>(a.integer("reps", 7));
  if (!hs::simd::have_avx2()) throw std::runtime_error("this CPU lacks AVX2 and F16C: matrices are never packed here");

  nlohmann::json out = {{"threads", hs::ThreadPool::global().size()}, {"runs", nlohmann::json::array()}};
  std::printf("%d CPU threads; medians of %d reps; GB/s counts the weight bytes a call reads\n\n",
              hs::ThreadPool::global().size(), reps);
  std::printf("%-6s %12s %5s %12s %10s %12s %10s %8s\n", "type", "shape", "rows", "packed us", "GB/s", "float32 us",
              "GB/s", "ratio");
  for (const std::string& shape : hs::bench::split(a.str("shapes", "2048x2048,5632x2048,2048x5632"), ',')) {
    const auto dims = hs::bench::split(shape, 'x');
    if (dims.size() != 2) throw std::invalid_argument("--shapes: " + shape + " is not ROWSxCOLS");
    const int64_t rows = std::stoll(dims[0]), cols = std::stoll(dims[1]);
    for (hs::GgmlType type : types) {
      if (!hs::simd::reads_rows(type, cols)) {  // the loader would not keep it packed
        std::printf("%-6s %12s  skipped: %lld columns are not whole blocks\n", hs::ggml_type_name(type).c_str(),
                    shape.c_str(), static_cast<long long>(cols));
        continue;
      }
      const hs::Matrix packed = hs::test::random_packed(type, rows, cols, 7);
      hs::Matrix f32;
      f32.rows = rows;
      f32.cols = cols;
      f32.data.resize(rows * cols);
      packed.rows_f32(0, rows, f32.data.data());
      for (int n : row_counts) {
        std::vector<float> x(n * cols), y(n * rows);
        for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        const auto [tp, tf] = time_in_turns(reps, [&] { hs::cpu::matmul(x.data(), n, packed, y.data()); },
                                            [&] { hs::cpu::matmul(x.data(), n, f32, y.data()); });
        const double mp = hs::bench::median(tp), mf = hs::bench::median(tf);
        std::printf("%-6s %12s %5d %12.1f %10.1f %12.1f %10.1f %8.2f\n", hs::ggml_type_name(type).c_str(), shape.c_str(),
                    n, mp, packed.bytes() / mp / 1e3, mf, f32.bytes() / mf / 1e3, mf / mp);
        std::fflush(stdout);
        out["runs"].push_back({{"type", hs::ggml_type_name(type)}, {"rows", rows}, {"cols", cols}, {"input_rows", n},
                               {"packed_us", tp}, {"float32_us", tf}, {"packed_bytes", packed.bytes()},
                               {"float32_bytes", f32.bytes()}});
      }
    }
  }
  hs::bench::write_json(a.str("json", "bench_cpu_matmul.json"), out);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_matmul: %s\n", e.what());
  return 1;
}
