#!/bin/bash
# Session 51's calls 1 and 2: the tiles kernel on every grid that is not lone (variant 17), side by side
# with 1783cc8's rule (v0: two-stage grids of at most four waves) and cuDNN. Here (no GPU needed):
#   git worktree add /tmp/wide 1783cc8 && cd /tmp/wide && git apply kernels/results/tiles128_wide_s51.patch
#   cmake -S kernels -B kb -DCMAKE_BUILD_TYPE=Release && cmake --build kb -j2
#   mkdir -p /work/main/.device/wide && cp kb/libheadshard_kernels.so kb/test_sharded_attention \
#     scripts/bench_attention.py /work/main/.device/wide/
# then on the device, from the repository root (carry .device/wide): bash kernels/results/tiles128_wide_s51.sh
# .device/wide   (the suite with variant 17 in every loop, then about 360 s of benchmarks). The patch's
# benchmark records the plan's lone and two-stage flags, as main's does since a186fc8.
set -u
W=${1:?the directory with libheadshard_kernels.so, test_sharded_attention and bench_attention.py of the patched tree}
OUT=${OUT:-.}
nvidia-smi --query-gpu=name,serial,clocks.sm,temperature.gpu,power.draw --format=csv
timeout 240 "$W/test_sharded_attention" --gtest_brief=1 2>&1 | tail -2
bench() { PYTHONUNBUFFERED=1 python3 "$W/bench_attention.py" --lib "$W/libheadshard_kernels.so" --skip-prefill \
  --no-flex-decode --decode-flush read --variants 0,0 17,0 "$@" 2>&1 | sed -n '/^== decode/,$p'; }
bench --out "$OUT/a" --decode-rounds 7 --decode-batches 32 64 80 128 192 256 --decode-contexts 1024 2048 4096 8192 32768
bench --out "$OUT/b" --decode-rounds 11 --decode-batches 16 24 32 40 64 80 160 192 224 256 \
  --decode-contexts 1024 2048 4096 8192 32768
bench --out "$OUT/c" --decode-rounds 11 --decode-batches 16 64 --decode-contexts 131072
