#!/usr/bin/env python3
"""Session 46 probe: does where a decode's buffers land in device memory move its time?

cuDNN's flushed time at 16 x 32k differed between processes of one machine in session 45 (465.9 and 471.1 us,
alternating between four processes that allocated the same way), by more than the margin between it and our
dense decode. This probe allocates N copies of each shape's tensors in one process (queries, keys, values,
the page pool holding the same keys and values, the output), each behind a spacer of a random size that is
kept alive, so that every copy lands elsewhere. Then, in R rounds, it times our decode (variant 0, main's
plan) on each copy's pool and cuDNN's SDPA on each copy's keys and values, one after the other, each run
after the 256 MB read flush (bench_attention's method, 100 ms of runs, median), and prints per copy and over
the copies. Run from the repository root:
    python3 kernels/results/placement_probe_s46.py [--lib PATH] [--copies N] [--rounds R] [--json FILE]
"""
import argparse
import json
import sys

import numpy as np
import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", default="build-kern/libheadshard_kernels.so")
ap.add_argument("--copies", type=int, default=6)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--shapes", default="16x32768,64x4096,64x32768,16x4096")
ap.add_argument("--json", default=None)
args = ap.parse_args()
lib = ba.load_lib(args.lib)
rng = np.random.default_rng(46)
results = []
for shape in args.shapes.split(","):
    batch, ctx = (int(x) for x in shape.split("x"))
    copies, spacers = [], []
    for i in range(args.copies):
        spacers.append(torch.empty(int(rng.integers(1, 512)) << 20, dtype=torch.uint8, device="cuda"))
        torch.manual_seed(batch * 1000003 + ctx)  # the same values in every copy
        q, k, v, pool, out = ba.decode_tensors(batch, ctx)
        ours = ba.DenseDecode(lib, q, pool, out, batch, ctx)
        q4 = q.view(batch, ba.HQ, 1, ba.D)

        cudnn = ba.sdpa_decode(q4, k, v, SDPBackend.CUDNN_ATTENTION)

        ours()
        ref = cudnn().reshape(batch, ba.HQ * ba.D)
        torch.cuda.synchronize()
        err = ba.rel_err(out, ref)
        copies.append(dict(ours=ours, cudnn=cudnn, keep=(q, k, v, pool, out, q4), err=err,
                           addr={"pool": pool.data_ptr(), "k": k.data_ptr(), "v": v.data_ptr()},
                           spacer_mib=spacers[-1].numel() >> 20, t={"ours": [], "cudnn": []}))
    for r in range(args.rounds):
        for c in copies:
            for name in (("ours", "cudnn") if r % 2 == 0 else ("cudnn", "ours")):
                c["t"][name].append(ba.median_time_ms(c[name], flush="read") * 1e3)
    print(f"\n{batch} x {ctx}: {args.copies} copies, {args.rounds} rounds, us (median of the rounds)")
    print(f"{'copy':>4} {'pool addr':>14} {'k addr':>14} {'ours':>8} {'cuDNN':>8} {'cuDNN/ours':>10} {'rel err':>8}")
    rows = []
    for i, c in enumerate(copies):
        o, d = float(np.median(c["t"]["ours"])), float(np.median(c["t"]["cudnn"]))
        rows.append({"copy": i, "ours_us": o, "cudnn_us": d, "ours_rounds": c["t"]["ours"],
                     "cudnn_rounds": c["t"]["cudnn"], "rel_err": c["err"], "spacer_mib": c["spacer_mib"],
                     **{"addr_" + k_: hex(x) for k_, x in c["addr"].items()}})
        print(f"{i:>4} {c['addr']['pool']:>#14x} {c['addr']['k']:>#14x} {o:8.1f} {d:8.1f} {d / o:10.4f} {c['err']:8.1e}")
    ours_all = [x["ours_us"] for x in rows]
    cudnn_all = [x["cudnn_us"] for x in rows]
    summary = {"batch": batch, "ctx": ctx, "copies": rows,
               "ours_median_us": float(np.median(ours_all)), "cudnn_median_us": float(np.median(cudnn_all)),
               "ours_range_us": [min(ours_all), max(ours_all)], "cudnn_range_us": [min(cudnn_all), max(cudnn_all)]}
    print(f"over copies: ours median {summary['ours_median_us']:.1f} (range {min(ours_all):.1f}-{max(ours_all):.1f}), "
          f"cuDNN median {summary['cudnn_median_us']:.1f} (range {min(cudnn_all):.1f}-{max(cudnn_all):.1f}), "
          f"cuDNN/ours {summary['cudnn_median_us'] / summary['ours_median_us']:.4f}", flush=True)
    results.append(summary)
    for c in copies:
        c["ours"].free()
    del copies, spacers
    torch.cuda.empty_cache()
if args.json:
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "results": results}, f, indent=1)
