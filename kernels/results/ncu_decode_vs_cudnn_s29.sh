#!/bin/bash
# Prepared in session 29, run in session 30 (call A; with the per-SM active-cycle metrics added;
# its output is ncu_decode_vs_cudnn_s30.csv): ncu on ours and cuDNN's dense decode at the shapes
# main loses. Run from the repository root on the GPU machine with the kernels built in .device/km
# (or edit the path); the python half is ncu_decode_vs_cudnn_s29.py.
set -u
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"; $NCU --version | tail -1
M=gpu__time_duration.sum,sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,sm__cycles_elapsed.max,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sectors_op_read.sum,lts__t_sector_hit_rate.pct,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic,launch__shared_mem_per_block_static,launch__occupancy_limit_shared_mem,launch__waves_per_multiprocessor,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,dram__cycles_elapsed.avg.per_second
timeout 220 $NCU --clock-control none --nvtx --nvtx-include "prof/" --metrics $M --csv --print-units base \
  python3 kernels/results/ncu_decode_vs_cudnn_s29.py .device/km/libheadshard_kernels.so > $OUT/ncu.csv 2> $OUT/ncu.err
echo "ncu rc $?"; grep -E '^shape' $OUT/ncu.csv; tail -5 $OUT/ncu.err
python3 - <<PY
import csv, io
rows=[l for l in open("$OUT/ncu.csv") if l.startswith('"')]
r=list(csv.DictReader(io.StringIO("".join(rows))))
cur=None
for x in r:
    key=(x["ID"], x["Kernel Name"][:70])
    if key!=cur: print("--", x["ID"], x["Kernel Name"][:110]); cur=key
    print("   ", x["Metric Name"], x["Metric Value"])
PY
