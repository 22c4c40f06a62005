#!/bin/bash
# Staged in session 52 (no device was lent that session; not yet run): main's decode plan against plans
# of fewer, longer items and against decode variant 11's (the estimate of a grid of more than four
# waves counting whole waves of the largest item), all on main's kernels, where the planner's estimate
# picks among grids of several waves. Each variant 0,0,0,S plans with no split shorter than S tokens
# (bench_attention.py's fourth variant field, DecodePlanOptions::min_split_tokens); the rows' items_*
# fields give each plan's items. On the CPU (plan_print_s52.cpp; 264 slots, 132 lone), dense:
# 24 x 4k 900 items -> 768 at S=512 -> 192 at 2048; 40 x 2k 772 -> 640 -> 320; 80 x 2k 1280 -> 640 at
# 2048 (behind cuDNN in session 51); 80 x 4k and 8k 1280 -> 640 at 4096 / 8192; 160 x 8k 2560 -> 1280
# at 8192; 192 x 8k 3072 -> 1536 at 8192 (behind cuDNN in session 51); 40 x 32k 2240 -> 960 lone at
# 8192 -> 640 -> 320; 128 x 32k 2048 lone -> 1024 at 32768. Variant 11 plans 40 x 4k and 8k 1280
# (main 960), 40 x 32k 640 lone (2240), 40 x 128k 2240 lone (1600), 80 x 32k 640 lone (1280), 80 x 128k
# 4480 lone (2560), 128 x 32k 1024 lone (2048), 160 x 8k 1280 (2560), 160 x 32k 1280 lone (2560),
# 192 x 8k 1536 (3072), and as main elsewhere.
# On the device, from the repository root, one part a call (about 300 s and 150 s):
#   bash kernels/results/plan_sweep_s52.sh BUILD a      BUILD: holds libheadshard_kernels.so
#   bash kernels/results/plan_sweep_s52.sh BUILD bc     (build-kern after scripts/gpu-check.sh)
set -u
B=${1:-build-kern}
PARTS=${2:-abc}
OUT=${OUT:-.}
nvidia-smi --query-gpu=name,serial,clocks.sm,temperature.gpu,power.draw --format=csv
bench() { PYTHONUNBUFFERED=1 python3 scripts/bench_attention.py --lib "$B/libheadshard_kernels.so" --skip-prefill \
  --no-flex-decode --decode-flush read --decode-rounds 7 "$@" 2>&1 | sed -n '/^== decode/,$p'; }
[[ $PARTS == *a* ]] && bench --out "$OUT/a" --decode-batches 24 40 80 160 192 --decode-contexts 1024 2048 4096 8192 \
  --variants 0,0 11,0 0,0,0,512 0,0,0,2048 0,0,0,4096 0,0,0,8192
[[ $PARTS == *b* ]] && bench --out "$OUT/b" --decode-batches 40 80 128 160 --decode-contexts 32768 \
  --variants 0,0 11,0 0,0,0,8192 0,0,0,16384 0,0,0,32768
[[ $PARTS == *c* ]] && bench --out "$OUT/c" --decode-batches 40 80 --decode-contexts 131072 --variants 0,0 11,0
exit 0
