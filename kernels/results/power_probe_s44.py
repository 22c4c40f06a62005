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
import ctypes
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

secs = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5
lib = ba.load_lib(sys.argv[2] if len(sys.argv) > 2 else "build-kern/libheadshard_kernels.so")
power = ba.PowerLog()
stream = torch.cuda.current_stream().cuda_stream
print(f"{'shape':>10} {'kernel':>6} {'us/call':>9} {'W med':>6} {'MHz med':>8} {'MHz min':>8} {'capped':>7}")
for batch, ctx in ((16, 131072), (256, 4096), (16, 32768), (64, 4096)):
    q, k, v, pool, out = ba.decode_tensors(batch, ctx)
    nblk = ctx // ba.BLK
    indptr = np.arange(0, batch * ba.HKV * nblk + 1, nblk, dtype=np.int32)
    chunks = np.arange(batch, dtype=np.int32)
    blocks = torch.from_numpy(np.tile(np.arange(nblk, dtype=np.int32), batch * ba.HKV)).cuda()
    pages = torch.arange(batch * ba.HKV * nblk, dtype=torch.int32, device="cuda")
    d_indptr = torch.from_numpy(indptr).cuda()
    pos0 = torch.full((batch,), ctx - 1, dtype=torch.int32, device="cuda")
    tok0 = torch.arange(batch + 1, dtype=torch.int32, device="cuda")
    sh = torch.from_numpy(ba.shards_for("dense")).cuda()
    lib.hs_set_variant(0, 0)
    h = lib.hs_decode_plan(ba.np_ptr(indptr), ba.np_ptr(chunks), batch, 1, ba.HKV, ba.BLK, ba.GROUP, ba.D, 0, 0)
    a = ba.AttnArgs(q.data_ptr(), out.data_ptr(), pool.data_ptr(), d_indptr.data_ptr(), blocks.data_ptr(),
                    pages.data_ptr(), pos0.data_ptr(), tok0.data_ptr(), sh.data_ptr(), 0, 0, pool.shape[0], 1, 0,
                    ba.HKV, ba.GROUP, ba.D, ba.BLK, 0, 1.0 / math.sqrt(ba.D))
    q4 = q.view(batch, ba.HQ, 1, ba.D)

    def ours():
        lib.hs_decode_run(h, ctypes.byref(a), ctypes.c_void_p(stream))

    def cudnn():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            F.scaled_dot_product_attention(q4, k, v, enable_gqa=True)

    for name, fn in (("ours", ours), ("cudnn", cudnn), ("ours", ours), ("cudnn", cudnn)):
        r = ba.sustained(fn, secs, power, launch="host")
        n = r.get("samples", 0)
        print(f"{batch:>4}x{ctx:<6} {name:>6} {r['ms'] * 1e3:9.1f} {r.get('W', 0):6.0f} {r.get('MHz', 0):8.0f} "
              f"{r.get('MHz_min', 0):8.0f} {round(r.get('capped', 0) * n):>3}/{n:<3}", flush=True)
    lib.hs_decode_free(h)
    del q, k, v, pool, out, q4
    torch.cuda.empty_cache()
power.close()
