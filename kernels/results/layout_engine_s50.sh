#!/bin/bash
# Session 50's prepared device call: does the engine's page layout cost decode time? Here (no GPU):
#   build/bench_kv_layout --seqs 64 --context 4096 --json .device/layout_s50.json        (main's stack pool)
#   a scratch tree with results/pool_lowest_s50.patch (the lowest-page-first pool), its bench_kv_layout with the
#   same flags --json /tmp/lowest.json, then its scenarios appended as NAME-lowest:
#   python3 -c 'import json; f=".device/layout_s50.json"; a=json.load(open(f)); b=json.load(open("/tmp/lowest.json"))
#     [s.update(name=s["name"]+"-lowest") or a["scenarios"].append(s) for s in b["scenarios"]]; json.dump(a, open(f, "w"))'
# then on the device, from the repository root (carry .device/layout_s50.json and a kernels library):
#   bash kernels/results/layout_engine_s50.sh LIB .device/layout_s50.json        (about 60 s)
# Dense prefill and decode lay out the same under either pool; churn differs (82.3% adjacent entries over
# 2,066 2 MiB regions with the stack, 88.9% over 512 lowest first).
set -u
LIB=${1:?libheadshard_kernels.so}
F=${2:?bench_kv_layout JSON}
OUT=${OUT:-.}
probe() { python3 kernels/results/layout_probe_s48.py --lib "$LIB" --shapes 64x4096 --rounds 7 --layout-file "$F" "$@"; }
# Each engine pool spans its highest page (up to 48 GB): two of them an invocation.
probe --layouts contig,engine:prefill,engine:decode --json "$OUT/layout_grow.json"
probe --layouts contig,engine:churn,engine:churn-lowest --json "$OUT/layout_churn.json"
