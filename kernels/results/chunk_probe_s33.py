#!/usr/bin/env python3
"""Session 33 probe (not part of the build; run from the repository root; calls D and E): one
prefill chunk of C tokens at the end of an n-token context (the engine prefills in chunks of 2048),
dense and strided plans, two kernel libraries alternating (rounds of median_time_ms after a 'read'
L2 flush); checks that the libraries' outputs are bitwise equal. 32 q / 8 kv heads, D 128, B 64."""
import argparse, ctypes, sys
import numpy as np
import torch
sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", nargs=2, required=True)
ap.add_argument("--tokens", type=int, nargs="*", default=[32768, 131072])
ap.add_argument("--chunk", type=int, default=2048)
ap.add_argument("--rounds", type=int, default=3)
args = ap.parse_args()
libs = [ba.load_lib(x) for x in args.lib]
stream = torch.cuda.current_stream().cuda_stream
HQ, HKV, D, BLK, G = ba.HQ, ba.HKV, ba.D, ba.BLK, ba.GROUP
C = args.chunk
for n in args.tokens:
    torch.manual_seed(n)
    nblk = n // BLK
    q = torch.randn(C, HQ, D, dtype=torch.bfloat16, device="cuda")
    pool = torch.randn(HKV * nblk, 2, BLK, D, dtype=torch.bfloat16, device="cuda")
    outs = [torch.empty(C, HQ * D, dtype=torch.bfloat16, device="cuda") for _ in libs]
    dev = lambda x: torch.from_numpy(x).cuda()  # noqa: E731
    indptr = dev((np.arange(HKV + 1) * nblk).astype(np.int32))
    blocks = dev(np.tile(np.arange(nblk, dtype=np.int32), HKV))
    pages = dev(np.arange(HKV * nblk, dtype=np.int32))
    pos0_h, tok0_h = np.array([n - C], np.int32), np.array([0, C], np.int32)
    pos0, tok0 = dev(pos0_h), dev(tok0_h)
    hs = [lib.hs_prefill_plan(ba.np_ptr(np.zeros(1, np.int32)), 1, ba.np_ptr(pos0_h), ba.np_ptr(tok0_h), D) for lib in libs]
    for plan in ("dense", "strided8"):
        sh = dev(ba.shards_for("dense" if plan == "dense" else "strided", stride=8))
        fns = []
        for lib, h, out in zip(libs, hs, outs):
            a = ba.AttnArgs(q.data_ptr(), out.data_ptr(), pool.data_ptr(), indptr.data_ptr(), blocks.data_ptr(),
                            pages.data_ptr(), pos0.data_ptr(), tok0.data_ptr(), sh.data_ptr(), 0, 0, pool.shape[0], 1,
                            0, HKV, G, D, BLK, 0, D ** -0.5)

            def f(lib=lib, h=h, a=a):
                lib.hs_set_variant(0, 0)
                rc = lib.hs_prefill_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
                if rc:
                    raise RuntimeError(lib.hs_error_string(rc).decode())
            fns.append(f)
        for o, f in zip(outs, fns):
            o.fill_(float("nan"))
            f()
        torch.cuda.synchronize()
        same = bool(torch.equal(outs[0], outs[1])) and bool(torch.isfinite(outs[0]).all())
        ts = [[], []]
        for r in range(args.rounds):
            for i in (range(2) if r % 2 == 0 else (1, 0)):
                ts[i].append(ba.median_time_ms(fns[i], flush="read"))
        m = [float(np.median(t)) for t in ts]
        print(f"n {n:6d} chunk {C} {plan:8s} lib0 {m[0] * 1e3:8.1f} us  lib1 {m[1] * 1e3:8.1f} us  "
              f"lib1/lib0 {m[1] / m[0]:.4f}  outputs equal {same}  rounds {[[round(x * 1e3, 1) for x in t] for t in ts]}",
              flush=True)
    for lib, h in zip(libs, hs):
        lib.hs_prefill_free(h)
    del q, pool, outs
    torch.cuda.empty_cache()
