#!/usr/bin/env python3
"""Session 33 probe (not part of the build; run from the repository root): dense causal prefill,
batch 1, 32 q / 8 kv heads, D 128, ours (each library of --lib, each prefill variant of --variants)
and cuDNN's SDPA. Call A ran it on an experimental build whose prefill variants 3 and 4 were the
KV-head-major order (one and two KV heads at a time), call B on main's library and 1de23d6's
(kernels/NOTES.md, session 33; the tables are in prefill_order_s33.txt).
  --mode ncu:   one call each inside NVTX range "prof" (for ncu --nvtx-include prof/)
  --mode power: each run back to back for --secs, marks for scripts/power_log.py, ms per call printed
"""
import argparse, ctypes, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", required=True, nargs="+")
ap.add_argument("--mode", choices=["ncu", "power"], required=True)
ap.add_argument("--tokens", type=int, nargs="*", default=[32768])
ap.add_argument("--variants", type=int, nargs="*", default=[0])
ap.add_argument("--secs", type=float, default=3.0)
ap.add_argument("--marks", default="marks.tsv")
args = ap.parse_args()
libs = [ba.load_lib(x) for x in args.lib]
stream = torch.cuda.current_stream().cuda_stream
HQ, HKV, D, BLK, G = ba.HQ, ba.HKV, ba.D, ba.BLK, ba.GROUP
marks = open(args.marks, "w") if args.mode == "power" else None
for n in args.tokens:
    nblk = (n + BLK - 1) // BLK
    q, k, v, pool = ba.prefill_tensors(n)
    out = torch.empty(n, HQ * D, dtype=torch.bfloat16, device="cuda")
    dev = lambda x: torch.from_numpy(x).cuda()  # noqa: E731
    indptr = dev((np.arange(HKV + 1) * nblk).astype(np.int32))
    blocks = dev(np.tile(np.arange(nblk, dtype=np.int32), HKV))
    pages = dev(np.arange(HKV * nblk, dtype=np.int32))
    pos0_h, tok0_h = np.zeros(1, np.int32), np.array([0, n], np.int32)
    pos0, tok0 = dev(pos0_h), dev(tok0_h)
    sh = dev(ba.shards_for("dense"))
    hs = [lib.hs_prefill_plan(ba.np_ptr(np.zeros(1, np.int32)), 1, ba.np_ptr(pos0_h), ba.np_ptr(tok0_h), D) for lib in libs]
    a = ba.AttnArgs(q.data_ptr(), out.data_ptr(), pool.data_ptr(), indptr.data_ptr(), blocks.data_ptr(),
                    pages.data_ptr(), pos0.data_ptr(), tok0.data_ptr(), sh.data_ptr(), 0, 0, pool.shape[0], 1, 0,
                    HKV, G, D, BLK, 0, D ** -0.5)
    qt = q.view(1, n, HQ, D).transpose(1, 2).contiguous()

    def cudnn():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(qt, k, v, is_causal=True, enable_gqa=True)

    def ours_fn(li, var):
        lib, h = libs[li], hs[li]

        def f():
            lib.hs_set_variant(0, var)
            rc = lib.hs_prefill_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
            if rc:
                raise RuntimeError(lib.hs_error_string(rc).decode())
        return f

    ref = cudnn().transpose(1, 2).reshape(n, HQ * D).float()
    runs = [(f"lib{li} v{x}", ours_fn(li, x)) for li in range(len(libs)) for x in args.variants] + [("cudnn", cudnn)]
    for name, fn in runs[:-1]:
        out.fill_(float("nan"))
        fn()
        torch.cuda.synchronize()
        err = ((out.float() - ref).norm() / ref.norm()).item()
        print(f"{n} {name}: rel err vs cuDNN {err:.2e}, finite {bool(torch.isfinite(out).all())}", flush=True)
    del ref
    if args.mode == "ncu":
        for name, fn in runs:
            fn(); torch.cuda.synchronize()
            torch.cuda.nvtx.range_push("prof"); fn(); torch.cuda.nvtx.range_pop()
            torch.cuda.synchronize()
    else:
        for rnd in range(2):
            for name, fn in runs:
                for _ in range(3):
                    fn()
                torch.cuda.synchronize()
                label = f"{n} {name} {rnd}"
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                marks.write(f"{time.time():.6f} start {label}\n"); marks.flush()
                t, calls = time.time(), 0
                e0.record()
                while time.time() - t < args.secs:
                    fn(); calls += 1
                    if calls % 4 == 0:
                        torch.cuda.synchronize()
                e1.record(); e1.synchronize()
                marks.write(f"{time.time():.6f} end {label}\n"); marks.flush()
                print(f"{label}: {calls} calls, {e0.elapsed_time(e1) / calls:.3f} ms a call", flush=True)
                time.sleep(1.0)
    for lib, h in zip(libs, hs):
        lib.hs_prefill_free(h)
    del q, k, v, pool, out, qt
    torch.cuda.empty_cache()
