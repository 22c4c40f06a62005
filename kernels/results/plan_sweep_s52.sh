#!/bin/bash
# Staged in session 52 (no device was lent that session; not yet run): main's decode plan against plans
# of fewer, longer items, on main's kernels, where the planner's estimate picks among grids of several
# waves. Each variant 0,0,0,S plans with no split shorter than S tokens (bench_attention.py's fourth
# variant field, DecodePlanOptions::min_split_tokens); the rows' items_* fields give each plan's items.
# On the CPU (plan_print_s52.cpp; 264 slots, 132 lone), dense: 24 x 4k 900 items -> 768 at S=512 ->
# 192 at 2048; 40 x 2k 772 -> 640 -> 320; 80 x 2k 1280 -> 640 at 2048 (the shape behind cuDNN in
# session 51); 80 x 4k and 8k 1280 -> 640 at 4096 / 8192; 160 x 8k 2560 -> 1280 at 8192; 192 x 8k
# 3072 -> 1536 at 8192 (behind cuDNN in session 51); 40 x 32k 2240 -> 960 lone at 8192 -> 640 -> 320;
# 128 x 32k 2048 lone -> 1024 at 32768. 224 and 256 sequences at 1k-8k plan whole lists already.
# On the device, from the repository root: bash kernels/results/plan_sweep_s52.sh [BUILD]
# (BUILD holds libheadshard_kernels.so, e.g. build-kern after scripts/gpu-check.sh; about 400 s).
set -u
B=${1:-build-kern}
OUT=${OUT:-.}
nvidia-smi --query-gpu=name,serial,clocks.sm,temperature.gpu,power.draw --format=csv
bench() { PYTHONUNBUFFERED=1 python3 scripts/bench_attention.py --lib "$B/libheadshard_kernels.so" --skip-prefill \
  --no-flex-decode --decode-flush read --decode-rounds 7 "$@" 2>&1 | sed -n '/^== decode/,$p'; }
bench --out "$OUT/a" --decode-batches 24 40 80 160 192 --decode-contexts 1024 2048 4096 8192 \
  --variants 0,0 0,0,0,512 0,0,0,2048 0,0,0,4096 0,0,0,8192
bench --out "$OUT/b" --decode-batches 40 80 128 160 --decode-contexts 32768 \
  --variants 0,0 0,0,0,8192 0,0,0,16384 0,0,0,32768
