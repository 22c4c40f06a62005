#!/usr/bin/env python3
"""Session 44 probe (call H): ours (decode v0, dense) and cuDNN's SDPA, each back to back for a few seconds
on one shape, with the board's power and SM clock sampled (nvidia-smi every 50 ms): does either run at the
power cap? Run from the repository root:  python3 kernels/results/power_probe_s44.py [SECONDS] [LIB]
The session's numbers came from this script's first version (commit 281ef1e), whose own copy of
sustained() synchronized before each group of ten calls and so timed the host's delay in issuing each
group's first call (a Python call into torch's SDPA takes longer than ours through ctypes). On one
machine in session 45 that loop timed cuDNN 1.5-42 us a call (0.3-4.7%) above its flushed time, ours at
most 8.8 us (0.5%); with the calls queued behind a spin, or replayed from CUDA graphs, neither kernel's
sustained time exceeded its flushed time by more than 3.7 us but in one run of cuDNN whose host fell
behind (kernels/NOTES.md, session 45). This version calls bench_attention's PowerLog and sustained()
(calls from the host, queued); bench_attention.py --decode-sustained, the maintained form of the
measurement, replays CUDA graphs."""
import sys

import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

secs = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5
lib = ba.load_lib(sys.argv[2] if len(sys.argv) > 2 else "build-kern/libheadshard_kernels.so")
power = ba.PowerLog()
print(f"{'shape':>10} {'kernel':>6} {'us/call':>9} {'W med':>6} {'MHz med':>8} {'MHz min':>8} {'capped':>7}")
for batch, ctx in ((16, 131072), (256, 4096), (16, 32768), (64, 4096)):
    q, k, v, pool, out = ba.decode_tensors(batch, ctx)
    ours = ba.DenseDecode(lib, q, pool, out, batch, ctx)
    q4 = q.view(batch, ba.HQ, 1, ba.D)

    cudnn = ba.sdpa_decode(q4, k, v, SDPBackend.CUDNN_ATTENTION)

    for name, fn in (("ours", ours), ("cudnn", cudnn), ("ours", ours), ("cudnn", cudnn)):
        r = ba.sustained(fn, secs, power, launch="host")
        n = r.get("samples", 0)
        print(f"{batch:>4}x{ctx:<6} {name:>6} {r['ms'] * 1e3:9.1f} {r.get('W', 0):6.0f} {r.get('MHz', 0):8.0f} "
              f"{r.get('MHz_min', 0):8.0f} {round(r.get('capped', 0) * n):>3}/{n:<3}", flush=True)
    ours.free()
    del q, k, v, pool, out, q4
    torch.cuda.empty_cache()
power.close()
