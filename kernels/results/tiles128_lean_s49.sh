#!/bin/bash
# Session 49's unrun device call, for the next GPU session. Here (no GPU needed):
#   git worktree add /tmp/lean HEAD && cd /tmp/lean && git apply kernels/results/tiles128_lean_s49.patch
#   cmake -S kernels -B kb -DCMAKE_BUILD_TYPE=Release && cmake --build kb -j2
#   mkdir -p /work/main/.device/lean && cp kb/libheadshard_kernels.so kb/test_sharded_attention /work/main/.device/lean/
# then on the device, from the repository root (carry .device/lean):
#   bash kernels/results/tiles128_lean_s49.sh .device/lean            (about 300 s)
# Variants (decode_tiles128_kernel's comments in the patch): 0 main; 10 full pages; 12 = 10 + Lazy;
# 13 = 0 + Lazy; 15 = 12 + Lean (the queries in registers, ldmatrix at [reg + imm], kept() once an
# entry); 16 = 15 on every grid at head dim 128 and pages of 64.
set -u
L=${1:?the directory with libheadshard_kernels.so and test_sharded_attention of the patched tree}
OUT=${OUT:-.}
nvidia-smi --query-gpu=serial,clocks.max.sm,power.limit,temperature.gpu --format=csv,noheader
(cd "$L" && timeout 240 ./test_sharded_attention 2>&1 | tail -3)  # variants 14 and 16 in every loop
bench() { python3 scripts/bench_attention.py --lib "$L/libheadshard_kernels.so" --skip-prefill --no-flex-decode \
  --decode-flush read "$@" 2>&1 | sed -n '/^== decode/,$p' | head -20; }
mkdir -p "$OUT/twostage" "$OUT/every"
bench --out "$OUT/twostage" --decode-batches 48 64 96 128 --decode-contexts 4096 --decode-rounds 11 \
  --variants 0,0 10,0 12,0 13,0 15,0
bench --out "$OUT/every" --decode-batches 16 64 80 256 --decode-contexts 4096 32768 --decode-rounds 7 --variants 0,0 16,0
timeout 150 ncu --clock-control none --nvtx --nvtx-include prof/ --metrics smsp__inst_executed.sum,gpu__time_duration.sum \
  --csv python3 kernels/results/ncu_mem_s47.py "$L/libheadshard_kernels.so" 0 10 12 13 15 2>&1 | grep -v '^==PROF==' |
  python3 -c '
import csv, sys
for r in csv.reader(l for l in sys.stdin if l.startswith("\"")):
    if len(r) > 16 and r[0] != "ID": print(r[0], r[6][:70], r[14], r[16])'
