#!/usr/bin/env python3
"""Session 39 experiment (build: decode_meta_warm_s39.patch, which applies at 6ddfbdb): the dense
decode after a read flush with its metadata (work items, list entries, offsets, positions, shards)
read back into the L2 before the timed launch ("warm"), against the same with as many bytes of
unrelated buffers read ("cold": the benchmark's condition), and cuDNN, in alternating rounds on the
same tensors: the upper bound of what keeping the metadata in the L2 (a persisting access-policy
window) could give at each shape.
    python3 kernels/results/decode_meta_warm_s39.py --lib <patched libheadshard_kernels.so> \
        --shapes 64x4096 32x4096 256x4096 64x32768 --rounds 5"""
import argparse
import ctypes
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, HERE)
import bench_attention as ba  # noqa: E402
from decode_tail_s38 import DenseDecode  # noqa: E402


class Raw:
    def __init__(self, ptr, nbytes):
        self.__cuda_array_interface__ = {"shape": (nbytes // 4,), "typestr": "<i4", "data": (ptr, False), "version": 3}


def timed(fn, before, flush, n):
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for a, b in ev:
        flush("read")
        before()
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    return float(np.median([a.elapsed_time(b) for a, b in ev])) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--shapes", nargs="+", default=["64x4096", "32x4096", "64x32768"])
    ap.add_argument("--variants", nargs="+", type=int, default=[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    lib = ba.load_lib(args.lib)
    lib.hs_decode_plan_items.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)]
    stream = torch.cuda.current_stream().cuda_stream
    flush = ba.L2Flush()
    sink = torch.empty((), dtype=torch.int64, device="cuda")
    for shape in args.shapes:
        batch, ctx = (int(x) for x in shape.split("x"))
        torch.manual_seed(batch + ctx)
        prob = DenseDecode(batch, ctx)
        n_run = max(20, int(100e3 / (ctx / 4096 * 250)))
        rows = {"cuDNN": []}
        runs = []
        for var in args.variants:
            lib.hs_set_variant(var, 0)
            h = lib.hs_decode_plan(ba.np_ptr(prob.indptr), ba.np_ptr(prob.chunks), batch, 1, ba.HKV, ba.BLK, ba.GROUP,
                                   ba.D, 0, 0)
            ptr, n = ctypes.c_void_p(), ctypes.c_int()
            lib.hs_decode_plan_items(h, ctypes.byref(ptr), ctypes.byref(n))
            meta = prob.keep + [torch.as_tensor(Raw(ptr.value, n.value * 32), device="cuda")]
            decoys = [torch.ones_like(t) for t in meta]

            def ours(h=h, var=var, a=prob.a):
                lib.hs_set_variant(var, 0)
                rc = lib.hs_decode_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
                if rc:
                    raise RuntimeError(lib.hs_error_string(rc).decode())

            def touch(ts):
                return lambda: [torch.sum(t.reshape(-1), dim=0, dtype=torch.int64, out=sink) for t in ts]

            for kind, ts in (("cold", decoys), ("warm", meta)):
                rows[f"v{var} {kind}"] = []
                runs.append((f"v{var} {kind}", ours, touch(ts)))
            ours()
        runs.append(("cuDNN", prob.cudnn, touch(decoys)))
        for _ in range(2):  # warm-up
            for name, fn, before in runs:
                timed(fn, before, flush, 3)
        for _ in range(args.rounds):
            for name, fn, before in runs:
                rows.setdefault(name, []).append(timed(fn, before, flush, n_run))
        c = np.median(rows["cuDNN"])
        print(f"== {batch} x {ctx} ({n_run} runs a round, median of {args.rounds} rounds), us", flush=True)
        for name, ts in rows.items():
            m = np.median(ts)
            print(f"  {name:10s} {m:8.1f}   cuDNN/this {c / m:.4f}   rounds {', '.join(f'{x:.1f}' for x in ts)}", flush=True)
        del prob, meta, decoys
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
