# Session 47: where the event-timed decode spends its time. The benchmark times each run from an event
# recorded after the L2 flush to one after the kernel; ncu (one launch, its own cache flush) measured our
# 64 x 4k kernel 0.9% faster than cuDNN's, while the events have it 0.4-0.5% slower. Here the same loop
# as bench_attention.median_time_ms (read flush, event, kernel, event) runs under torch.profiler (CUPTI),
# which gives every kernel's own start and end on the device: the kernel's duration, the gap between the
# flush's last kernel and the decode's first, and the event time, side by side for ours (v0) and cuDNN.
#   python3 kernels/results/gap_probe_s47.py LIB [--reps N] [--shapes 64x4096 ...] [--json OUT]
import argparse
import json
import sys

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.nn.attention import SDPBackend

sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("lib")
ap.add_argument("--reps", type=int, default=100)
ap.add_argument("--shapes", nargs="*", default=["64x4096", "16x32768", "16x4096", "256x4096"])
ap.add_argument("--variants", type=int, nargs="*", default=[0])
ap.add_argument("--json")
args = ap.parse_args()
lib = ba.load_lib(args.lib)
flush = ba.L2Flush()


def profile(fn, reps):
    for _ in range(20):
        flush("read")
        fn()
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for a, b in ev:
            flush("read")
            a.record()
            fn()
            b.record()
        torch.cuda.synchronize()
    kern = sorted((e for e in prof.events() if e.device_type == DeviceType.CUDA),
                  key=lambda e: e.time_range.start)
    return [a.elapsed_time(b) * 1e3 for a, b in ev], kern


rows = []
for shape in args.shapes:
    batch, ctx = (int(x) for x in shape.split("x"))
    q, k, v, pool, out = ba.decode_tensors(batch, ctx)
    cudnn = ba.sdpa_decode(q.view(batch, ba.HQ, 1, ba.D), k, v, SDPBackend.CUDNN_ATTENTION)
    runs = [(f"ours_v{v_}", ba.DenseDecode(lib, q, pool, out, batch, ctx, variant=v_)) for v_ in args.variants]
    runs.append(("cudnn", cudnn))
    for name, fn in runs:
        event_us, kern = profile(fn, args.reps)
        # The flush ends with a kernel named "...reduce..."; the kernel right after it is the decode's
        # (ours is one kernel; in call E each run had exactly one such pair, runs == reps).
        is_flush = ["reduce" in e.name.lower() for e in kern]
        dur, gap, names = [], [], set()
        for i, e in enumerate(kern):
            if is_flush[i] or i == 0 or not is_flush[i - 1]:
                continue
            dur.append(e.time_range.end - e.time_range.start)
            gap.append(e.time_range.start - kern[i - 1].time_range.end)
            names.add(e.name[:90])
        # Every kernel of the last run, in order (the flush's too), for the record.
        last = [e.name[:60] for e in kern[-round(len(kern) / args.reps):]]
        row = {"shape": shape, "kernel": name, "names": sorted(names), "kernels_per_run": len(kern) / args.reps,
               "last_run": last,
               "event_us": float(np.median(event_us)), "kernel_us": float(np.median(dur)),
               "gap_after_flush_us": float(np.median(gap)), "runs": len(dur)}
        rows.append(row)
        print(f"{shape:9s} {name:9s} event {row['event_us']:8.1f}  kernel {row['kernel_us']:8.1f}  "
              f"gap after flush {row['gap_after_flush_us']:5.2f}  kernels/run {row['kernels_per_run']:.1f}  "
              f"{'; '.join(row['names'])}", flush=True)
    for name, fn in runs:
        if hasattr(fn, "free"):
            fn.free()
    del q, k, v, pool, out, runs
    torch.cuda.empty_cache()
if args.json:
    json.dump({"torch": torch.__version__, "rows": rows}, open(args.json, "w"), indent=1)
