#!/usr/bin/env python3
"""Session 38 experiment (kernels/NOTES.md; needs a kernel build of decode_timeline_tail_s38.patch with
-DHS_DECODE_TIMELINE, applied at b7fc025): per-block timeline of the copy-engine decode, dense plan,
after a read flush, next to cuDNN's time on the same tensors. Writes raw timelines to
OUT/timeline_<batch>x<ctx>_<variant>_<keep>_<k>.npz and prints a summary."""
import argparse
import ctypes
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_attention as ba  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shapes", nargs="+", default=["64x4096", "64x32768"])
    ap.add_argument("--configs", nargs="+", default=["0:0:1"], help="variant:keep:k (s38_tail.py)")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    lib = ba.load_lib(args.lib)
    lib.hs_set_decode_timeline.argtypes = [ctypes.c_void_p]
    lib.hs_set_tail.argtypes = [ctypes.c_int, ctypes.c_int]
    from decode_tail_s38 import DenseDecode, keep_of
    stream = torch.cuda.current_stream().cuda_stream
    flush = ba.L2Flush()
    os.makedirs(args.out, exist_ok=True)
    for shape in args.shapes:
        batch, ctx = (int(x) for x in shape.split("x"))
        torch.manual_seed(1)
        prob = DenseDecode(batch, ctx)
        a, indptr, chunks, out, cudnn = prob.a, prob.indptr, prob.chunks, prob.out, prob.cudnn

        t_cudnn = ba.median_time_ms(cudnn, flush="read") * 1e3
        for cfg in args.configs:
            var, keep_s, kk = cfg.split(":")
            var, kk = int(var), int(kk)
            lib.hs_set_variant(var, 0)
            info = np.zeros(6, dtype=np.int32)
            lib.hs_set_tail(0, 0)
            h = lib.hs_decode_plan(ba.np_ptr(indptr), ba.np_ptr(chunks), batch, 1, ba.HKV, ba.BLK, ba.GROUP, ba.D, 0, 0)
            lib.hs_decode_plan_info(h, ba.np_ptr(info))
            lib.hs_decode_free(h)
            lib.hs_set_tail(keep_of(keep_s, int(info[0]), lib.hs_decode_slots(ba.D)), kk)
            h = lib.hs_decode_plan(ba.np_ptr(indptr), ba.np_ptr(chunks), batch, 1, ba.HKV, ba.BLK, ba.GROUP, ba.D, 0, 0)
            lib.hs_set_tail(0, 0)
            lib.hs_decode_plan_info(h, ba.np_ptr(info))
            n_items = int(info[0])

            def ours():
                rc = lib.hs_decode_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
                if rc:
                    raise RuntimeError(lib.hs_error_string(rc).decode())

            lib.hs_set_decode_timeline(None)
            t_plain = ba.median_time_ms(ours, flush="read") * 1e3
            buf = torch.zeros(args.runs, n_items, 8, dtype=torch.int64, device="cuda")
            ev = []
            for r in range(args.runs):
                flush("read")
                lib.hs_set_decode_timeline(ctypes.c_void_p(buf[r].data_ptr()))
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                ours()
                e.record()
                ev.append((s, e))
            torch.cuda.synchronize()
            lib.hs_set_decode_timeline(None)
            ev_us = np.array([s.elapsed_time(e) * 1e3 for s, e in ev])
            tl = buf.cpu().numpy()
            np.savez_compressed(os.path.join(args.out, f"timeline_{batch}x{ctx}_{cfg.replace(':', '_')}.npz"), tl=tl, ev_us=ev_us,
                                t_plain=t_plain, t_cudnn=t_cudnn)
            spans = (tl[:, :, 5].max(1) - tl[:, :, 1].min(1)) / 1e3
            print(f"{batch}x{ctx} {cfg}: items {n_items}, plain {t_plain:.1f} us, cuDNN {t_cudnn:.1f} us, "
                  f"timed runs {np.median(ev_us):.1f} us, block span {np.median(spans):.1f} us", flush=True)
            lib.hs_decode_free(h)
        del prob, out
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
