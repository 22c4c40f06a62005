#!/usr/bin/env python3
"""Session 46 probe: when each multiprocessor falls idle at the end of our dense decode and of cuDNN's.

For each shape and kernel (ours: decode variant 0, main's plan; cuDNN: torch's SDPA with the cuDNN backend),
each rep runs on a high-priority stream: the 256 MB read flush, a marker (t0), the kernel (between two CUDA
events), a marker (t1). A low-priority stream waits for the first marker, sleeps ~10 us (so that the kernel's
first wave is placed) and launches one spy block per multiprocessor (tail_spy_s46.cu): a spy block starts
only on a multiprocessor that holds none of the kernel's blocks, when none wait to start, and records when.
Prints, per kernel, the medians over the reps of: the kernel's event time, with the spies and (plain, in the
same reps' turns) without; t1 - t0; the time from t0 by which 1, 10, 25, 50, 75, 90 and all of the 132
multiprocessors had fallen idle; and the idle multiprocessor-time before t1 (sum over SMs of t1 - entry,
divided by the SM count: how much of the end the machine spent partly idle).
    python3 kernels/results/tail_spy_s46.py [--lib PATH] [--spy PATH] [--reps N] [--shapes 64x4096,...]
"""
import argparse
import ctypes
import json
import sys

import numpy as np
import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", default="build-kern/libheadshard_kernels.so")
ap.add_argument("--spy", default=".device/s46spy/libtail_spy.so")
ap.add_argument("--reps", type=int, default=20)
ap.add_argument("--shapes", default="64x4096,16x32768,64x32768,16x4096")
ap.add_argument("--smem-kb", type=int, default=200)
ap.add_argument("--variants", default="0", help="our decode variants, each planned and timed (0: main's)")
ap.add_argument("--json", default=None)
args = ap.parse_args()

lib = ba.load_lib(args.lib)
spy = ctypes.CDLL(args.spy)
vp = ctypes.c_void_p
spy.spy_setup.argtypes = [ctypes.c_int]
spy.spy_launch.argtypes = [vp, ctypes.c_ulonglong, ctypes.c_int, ctypes.c_int, vp]
spy.marker_launch.argtypes = [vp, vp]
smem = args.smem_kb << 10
assert spy.spy_setup(smem) == 0, "spy_setup failed"
n_sm = torch.cuda.get_device_properties(0).multi_processor_count
hi = torch.cuda.Stream(priority=-5)  # clamped to the highest priority
lo = torch.cuda.Stream(priority=0)
flush = ba.L2Flush()
marks = torch.zeros(2, dtype=torch.int64, device="cuda")
rec = torch.zeros(2 * n_sm, dtype=torch.int64, device="cuda")
QUANTS = (1, 10, 25, 50, 75, 90, 100)  # of the SMs idle, in percent


def one_rep(fn, spin_ns, with_spy):
    started = torch.cuda.Event()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    rec.zero_()
    torch.cuda.synchronize()
    with torch.cuda.stream(hi):
        flush("read")
        assert spy.marker_launch(ctypes.c_void_p(marks.data_ptr()), ctypes.c_void_p(hi.cuda_stream)) == 0
        started.record(hi)
        s.record(hi)
        fn()
        e.record(hi)
        assert spy.marker_launch(ctypes.c_void_p(marks.data_ptr() + 8), ctypes.c_void_p(hi.cuda_stream)) == 0
    if with_spy:
        with torch.cuda.stream(lo):
            lo.wait_event(started)
            torch.cuda._sleep(20000)  # about 10 us: the kernel's first wave is placed by then
            assert spy.spy_launch(ctypes.c_void_p(rec.data_ptr()), spin_ns, n_sm, smem,
                                  ctypes.c_void_p(lo.cuda_stream)) == 0
    torch.cuda.synchronize()
    t0, t1 = (int(x) for x in marks.cpu())
    out = {"event_us": s.elapsed_time(e) * 1e3, "t1_us": (t1 - t0) / 1e3}
    if with_spy:
        r = rec.cpu().numpy().reshape(n_sm, 2)
        out["entry_us"] = ((r[:, 0] - t0) / 1e3).tolist()
        out["smid"] = r[:, 1].astype(int).tolist()
    return out


results = []
for shape in args.shapes.split(","):
    batch, ctx = (int(x) for x in shape.split("x"))
    torch.manual_seed(batch * 1000003 + ctx)
    q, k, v, pool, out = ba.decode_tensors(batch, ctx)
    kernels, items = {}, {}
    for dv in (int(x) for x in args.variants.split(",")):
        name = "ours" if dv == 0 else f"ours_v{dv}"
        kernels[name] = ba.DenseDecode(lib, q, pool, out, batch, ctx, variant=dv)
        items[name] = kernels[name].items
    q4 = q.view(batch, ba.HQ, 1, ba.D)

    cudnn = ba.sdpa_decode(q4, k, v, SDPBackend.CUDNN_ATTENTION)
    kernels["cudnn"] = cudnn
    est = ba.median_time_ms(cudnn, flush="read") * 1e3
    spin_ns = int(max(2 * est, 200) * 1e3)
    reps = {name: {"spy": [], "plain": []} for name in kernels}
    for fn in kernels.values():  # warm-up
        one_rep(fn, spin_ns, True)
    for r in range(args.reps):
        for name in (list(kernels) if r % 2 == 0 else list(kernels)[::-1]):
            reps[name]["spy"].append(one_rep(kernels[name], spin_ns, True))
            reps[name]["plain"].append(one_rep(kernels[name], spin_ns, False))
    print(f"\n{batch} x {ctx} (items: {items}), {args.reps} reps, us, medians over the reps; "
          f"SMs idle: time from t0 by which that share of the {n_sm} multiprocessors held no block for good")
    hdr = ["kernel", "event", "event (no spy)", "t1-t0"] + [f"{p}%" for p in QUANTS] + ["idle SM-time / SM"]
    print(ba.fmt_row(hdr, [8, 8, 14, 8] + [7] * len(QUANTS) + [17]))
    row = {"batch": batch, "ctx": ctx, "items": items}
    for name, rr in reps.items():
        qs = np.array([np.percentile(np.sort(x["entry_us"]), QUANTS) for x in rr["spy"]])
        idle = [float(np.mean(np.maximum(x["t1_us"] - np.array(x["entry_us"]), 0))) for x in rr["spy"]]
        per_sm = {}
        for x in rr["spy"]:
            for sm, t in zip(x["smid"], x["entry_us"]):
                per_sm.setdefault(sm, []).append(t)
        summary = {
            "event_us": float(np.median([x["event_us"] for x in rr["spy"]])),
            "event_plain_us": float(np.median([x["event_us"] for x in rr["plain"]])),
            "t1_us": float(np.median([x["t1_us"] for x in rr["spy"]])),
            "idle_quantiles_us": dict(zip(map(str, QUANTS), np.median(qs, axis=0).tolist())),
            "idle_sm_time_per_sm_us": float(np.median(idle)),
            "per_sm_idle_from_median_us": {str(sm): float(np.median(ts)) for sm, ts in sorted(per_sm.items())},
            "sms_seen": len(per_sm), "reps": rr}
        row[name] = summary
        print(ba.fmt_row([name, f"{summary['event_us']:.1f}", f"{summary['event_plain_us']:.1f}",
                          f"{summary['t1_us']:.1f}"] + [f"{x:.1f}" for x in np.median(qs, axis=0)] +
                         [f"{summary['idle_sm_time_per_sm_us']:.2f}"], [8, 8, 14, 8] + [7] * len(QUANTS) + [17]),
              flush=True)
    # The multiprocessors by when they fell idle (median over the reps), ours against cuDNN's.
    for name in kernels:
        m = row[name]["per_sm_idle_from_median_us"]
        order = sorted(m, key=m.get)
        print(f"  {name}: first idle SMs {', '.join(f'{s}@{m[s]:.0f}' for s in order[:12])}; "
              f"last {', '.join(f'{s}@{m[s]:.0f}' for s in order[-6:])}")
    results.append(row)
    for name in items:
        kernels[name].free()
    del q, k, v, pool, out, q4, kernels
    torch.cuda.empty_cache()
if args.json:
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "smem_kb": args.smem_kb,
                   "results": results}, f)
