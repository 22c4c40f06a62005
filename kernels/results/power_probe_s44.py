#!/usr/bin/env python3
"""Session 44 probe (call H): ours (decode v0, dense) and cuDNN's SDPA, each back to back for a few seconds
on one shape, with the board's power and SM clock sampled (nvidia-smi every 50 ms): does either run at the
power cap? Run from the repository root:  python3 kernels/results/power_probe_s44.py [SECONDS] [LIB]
(bench_attention.py --decode-sustained is the maintained form of this measurement)."""
import ctypes, math, subprocess, sys, threading, time
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, "scripts")
import bench_attention as ba
from torch.nn.attention import sdpa_kernel, SDPBackend

lib = ba.load_lib(sys.argv[2] if len(sys.argv) > 2 else "build-kern/libheadshard_kernels.so")
samples = []
smi = subprocess.Popen(["nvidia-smi", "--query-gpu=clocks.sm,power.draw,clocks_event_reasons.sw_power_cap",
                        "--format=csv,noheader,nounits", "-lms", "50"], stdout=subprocess.PIPE, text=True)
def reader():
    for line in smi.stdout:
        p = [x.strip() for x in line.split(",")]
        try:
            samples.append((time.time(), float(p[0]), float(p[1]), p[2]))
        except (ValueError, IndexError):
            pass
threading.Thread(target=reader, daemon=True).start()
stream = torch.cuda.current_stream().cuda_stream
scale = 1.0 / math.sqrt(ba.D)
SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 2.5
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
                    ba.HKV, ba.GROUP, ba.D, ba.BLK, 0, scale)
    q4 = q.view(batch, ba.HQ, 1, ba.D)
    def ours():
        lib.hs_decode_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
    def cudnn():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            F.scaled_dot_product_attention(q4, k, v, enable_gqa=True)
    ref = None
    for name, fn in (("ours", ours), ("cudnn", cudnn), ("ours", ours), ("cudnn", cudnn)):
        fn(); torch.cuda.synchronize()
        t0 = time.time(); n = 0; times = []
        while time.time() - t0 < SECS:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(10):
                fn()
            e.record(); e.synchronize()
            times.append(s.elapsed_time(e) / 10 * 1e3)
        t1 = time.time()
        w = [x for x in samples if t0 + 0.5 <= x[0] <= t1]
        cap = sum(1 for x in w if x[3].lower().startswith("active")) if w else 0
        print(f"{batch:>4}x{ctx:<6} {name:>6} {np.median(times):9.1f} {np.median([x[2] for x in w]) if w else 0:6.0f} "
              f"{np.median([x[1] for x in w]) if w else 0:8.0f} {min([x[1] for x in w]) if w else 0:8.0f} {cap:>3}/{len(w):<3}",
              flush=True)
    lib.hs_decode_free(h)
    del q, k, v, pool, out, q4
    torch.cuda.empty_cache()
smi.terminate()
