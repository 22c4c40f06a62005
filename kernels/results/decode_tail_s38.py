#!/usr/bin/env python3
"""Session 38 experiment (kernels/NOTES.md; needs a kernel build of decode_timeline_tail_s38.patch, applied
at b7fc025): decode plans whose last items are cut into k parts (hs_set_tail), on the
shared instance (v0) and lone blocks for every grid (v6), dense, against cuDNN in alternating
rounds on the same tensors. Prints a table and writes OUT/tail.json."""
import argparse
import ctypes
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import bench_attention as ba  # noqa: E402


class DenseDecode:
    """bench_attention's dense decode of one shape: its tensors, the C API's arguments over them
    (a), the host list offsets and chunk ids to plan, and cuDNN's decode of the same tensors."""

    def __init__(self, batch, ctx):
        nblk = ctx // ba.BLK
        self.q, self.k, self.v, self.pool, self.out = ba.decode_tensors(batch, ctx)
        self.keep = [torch.full((batch,), ctx - 1, dtype=torch.int32, device="cuda"),
                     torch.arange(batch + 1, dtype=torch.int32, device="cuda"),
                     torch.from_numpy(np.tile(np.arange(nblk, dtype=np.int32), batch * ba.HKV)).cuda(),
                     torch.arange(batch * ba.HKV * nblk, dtype=torch.int32, device="cuda")]
        self.indptr = np.concatenate([[0], np.cumsum(np.full(batch * ba.HKV, nblk))]).astype(np.int32)
        self.chunks = np.arange(batch, dtype=np.int32)
        d_indptr, sh = torch.from_numpy(self.indptr).cuda(), torch.from_numpy(ba.shards_for("dense")).cuda()
        self.keep += [d_indptr, sh]
        pos0, tok0, blocks, pages = self.keep[:4]
        self.a = ba.AttnArgs(self.q.data_ptr(), self.out.data_ptr(), self.pool.data_ptr(), d_indptr.data_ptr(),
                             blocks.data_ptr(), pages.data_ptr(), pos0.data_ptr(), tok0.data_ptr(), sh.data_ptr(), 0, 0,
                             self.pool.shape[0], 1, 0, ba.HKV, ba.GROUP, ba.D, ba.BLK, 0, 1.0 / math.sqrt(ba.D))
        self.q4 = self.q.view(batch, ba.HQ, 1, ba.D)

    def cudnn(self):
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(self.q4, self.k, self.v, enable_gqa=True)


def keep_of(spec, n, slots):
    """'0': nothing cut; 'S': one wave kept; 'L': all but the last wave; 'H': half the last wave; an int."""
    last = n - (math.ceil(n / slots) - 1) * slots
    return {"0": 0, "S": slots, "L": n - last, "H": n - last // 2}.get(spec) if not spec.isdigit() else int(spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", nargs="+", default=["64x4096", "64x32768"])
    ap.add_argument("--configs", nargs="+", default=["0:0:1", "0:S:2", "0:S:4", "0:L:4", "6:0:1", "6:L:4", "6:L:8"],
                    help="variant:keep:k")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    lib = ba.load_lib(args.lib)
    lib.hs_set_tail.argtypes = [ctypes.c_int, ctypes.c_int]
    stream = torch.cuda.current_stream().cuda_stream
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for shape in args.shapes:
        batch, ctx = (int(x) for x in shape.split("x"))
        torch.manual_seed(batch + ctx)
        prob = DenseDecode(batch, ctx)
        a, indptr, chunks, out, cudnn = prob.a, prob.indptr, prob.chunks, prob.out, prob.cudnn

        ref = cudnn().reshape(batch, ba.HQ * ba.D).float()
        handles = []
        for cfg in args.configs:
            var, keep_s, kk = cfg.split(":")
            var, kk = int(var), int(kk)
            lib.hs_set_variant(var, 0)
            lib.hs_set_tail(0, 0)
            info = np.zeros(6, dtype=np.int32)
            h0 = lib.hs_decode_plan(ba.np_ptr(indptr), ba.np_ptr(chunks), batch, 1, ba.HKV, ba.BLK, ba.GROUP, ba.D, 0, 0)
            lib.hs_decode_plan_info(h0, ba.np_ptr(info))
            n0 = int(info[0])
            lib.hs_decode_free(h0)
            slots = lib.hs_decode_slots(ba.D)
            keep = keep_of(keep_s, n0, slots)
            lib.hs_set_tail(keep, kk)
            h = lib.hs_decode_plan(ba.np_ptr(indptr), ba.np_ptr(chunks), batch, 1, ba.HKV, ba.BLK, ba.GROUP, ba.D, 0, 0)
            lib.hs_set_tail(0, 0)
            lib.hs_decode_plan_info(h, ba.np_ptr(info))

            def ours(h=h):
                rc = lib.hs_decode_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
                if rc:
                    raise RuntimeError(lib.hs_error_string(rc).decode())

            out.fill_(float("nan"))
            ours()
            torch.cuda.synchronize()
            err = float((out.float() - ref).norm() / ref.norm())
            handles.append(dict(cfg=cfg, var=var, keep=keep, k=kk, items=int(info[0]), h=h, fn=ours, err=err, t=[]))
        t_cudnn = []
        for _ in range(args.rounds):
            t_cudnn.append(ba.median_time_ms(cudnn, flush="read") * 1e3)
            for hd in handles:
                lib.hs_set_variant(hd["var"], 0)
                hd["t"].append(ba.median_time_ms(hd["fn"], flush="read") * 1e3)
        c = float(np.median(t_cudnn))
        print(f"== {batch} x {ctx}: cuDNN {c:.1f} us (rounds {', '.join(f'{x:.1f}' for x in t_cudnn)})", flush=True)
        for hd in handles:
            m = float(np.median(hd["t"]))
            print(f"  v{hd['var']} keep {hd['keep']:5d} k {hd['k']}  items {hd['items']:5d}  {m:8.1f} us  "
                  f"cuDNN/ours {c / m:.3f}  rel err {hd['err']:.1e}", flush=True)
            rows.append(dict(batch=batch, ctx=ctx, cfg=hd["cfg"], variant=hd["var"], keep=hd["keep"], k=hd["k"],
                             items=hd["items"], us=m, rounds=hd["t"], cudnn_us=c, rel_err_vs_cudnn=hd["err"]))
            lib.hs_decode_free(hd["h"])
        del prob, out, ref
        torch.cuda.empty_cache()
    with open(os.path.join(args.out, "tail.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
