// Prints, on the CPU, the decode plans main's planner makes for dense batches (32 q / 8 kv heads,
// pages of 64, the H200's 264 resident slots and 132 lone ones) under each shortest split
// (DecodePlanOptions::min_split_tokens, the benchmark's fourth variant field): the item count where
// it changes, L for a lone plan, T for a two-stage one; then decode variant 11's plan (whole waves
// in the estimate past four waves). Session 52 chose plan_sweep_s52.sh's variants from it. Build here (no GPU needed), from the repository root:
//   nvcc -O2 -std=c++17 -Ikernels -x cu -c kernels/attention_plan.cu -o /tmp/plan.o
//   g++ -O2 -std=c++17 -Ikernels -I/usr/local/cuda/include kernels/results/plan_print_s52.cpp /tmp/plan.o
//     -L/usr/local/cuda/lib64 -lcudart_static -ldl -lpthread -lrt -o /tmp/plan_print   (one line)
#include <cstdio>
#include <vector>

#include "sharded_attention.h"

namespace hs::kernels {
int prefill_block_m(int) { return 128; }  // plan_prefill's, not called here
}  // namespace hs::kernels

int main() {
  using namespace hs::kernels;
  const int kv_heads = 8, page = 64;
  for (int batch : {16, 24, 32, 40, 64, 80, 128, 160, 192, 224, 256})
    for (int ctx : {1024, 2048, 4096, 8192, 32768, 131072}) {
      const int pages = ctx / page;
      std::vector<int> indptr(batch * kv_heads + 1), chunks(batch);
      for (int i = 0; i <= batch * kv_heads; ++i) indptr[i] = i * pages;
      for (int i = 0; i < batch; ++i) chunks[i] = i;
      // The plan under a decode variant and a shortest split (0: the default).
      auto plan = [&](int variant, int min_split) {
        DecodePlanOptions o;
        o.slots = 264;
        o.lone_slots = 132;
        if (min_split) o.min_split_tokens = min_split;
        set_kernel_variant(variant, 0);
        DecodePlan p;
        plan_decode(indptr.data(), nullptr, chunks.data(), batch, 1, kv_heads, page, o, p);
        set_kernel_variant(0, 0);
        return p;
      };
      std::printf("%4d x %6d:", batch, ctx);
      int last = -1;
      for (int min_split : {0, 512, 1024, 2048, 4096, 8192, 16384, 32768}) {
        const DecodePlan p = plan(0, min_split);
        const int items = p.layer_begin[1];
        if (items != last) std::printf("  [%d] %d%s%s", min_split, items, p.lone ? "L" : "", p.two_stage ? "T" : "");
        last = items;
      }
      const DecodePlan p = plan(11, 0);  // whole waves in the estimate past four waves
      std::printf("   | v11 %d%s%s\n", p.layer_begin[1], p.lone ? "L" : "", p.two_stage ? "T" : "");
    }
}
