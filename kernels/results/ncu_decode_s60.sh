#!/usr/bin/env bash
# Session 60: ncu's full set of the dense decode at 16 sequences x 32k (lone grid, variant 0) and of
# cuDNN's SDPA kernel on the same tensors, so that the two can be compared section by section
# (the lone kernel trails cuDNN by 0.3-0.4% there on H100s and H200s).
#   OUT=/tmp/o HS_KERNEL_BUILD=.device/kx kernels/results/ncu_decode_s60.sh [BATCH CTX]
# Writes $OUT/ncu_{ours,cudnn}.ncu-rep, and their details and raw metrics as text.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-16} C=${2:-32768}
OUT=${OUT:-/tmp/ncu-out}
LIB=${HS_KERNEL_BUILD:-build-kern}/libheadshard_kernels.so
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
mkdir -p "$OUT"
for who in ours cudnn; do
  if [ $who = ours ]; then range="decode b$B ctx$C dense v0/"; else range="peer sdpa_cudnn/"; fi
  # The first launch in a range is the untimed warm-up; flush kernels in the range are taken too
  # (read them apart by name).
  timeout 240 "$NCU" --clock-control none --set full --import-source no --nvtx --nvtx-include "$range" \
      --launch-skip 1 --launch-count 4 -f -o "$OUT/ncu_$who" \
      python3 scripts/bench_attention.py --lib "$LIB" --out "$OUT/bench_$who" --skip-prefill \
        --decode-batches "$B" --decode-contexts "$C" --variants 0,0 --decode-rounds 1 --decode-flush read \
        --flex-budget-s 0 > "$OUT/ncu_$who.log" 2>&1
  echo "$who: ncu exit $? ($(grep -c '==PROF==' "$OUT/ncu_$who.log") profiler lines)"
  "$NCU" -i "$OUT/ncu_$who.ncu-rep" --page details --print-details all > "$OUT/ncu_$who.txt" 2>&1
  "$NCU" -i "$OUT/ncu_$who.ncu-rep" --page raw --csv > "$OUT/ncu_${who}_raw.csv" 2>&1
  grep -E '^  [A-Za-z_].*\(|Duration|DRAM Throughput|Memory Throughput' "$OUT/ncu_$who.txt" | head -24
done
