#!/usr/bin/env python3
"""Attention benchmark on the GPU: headshard's sharded paged kernels against torch's
scaled_dot_product_attention (each backend forced in turn) and FlexAttention with an equivalent
BlockMask, in one process on the same tensors (the page pool is filled from torch's K/V).

  python3 scripts/bench_attention.py --lib build-kern/libheadshard_kernels.so [--out DIR] [--quick]

Decode: 32 query / 8 KV heads, head dim 128, bf16, batch x context; plans dense and strided
(stride 8, local 16 blocks of 64, offsets spread over the KV heads). Prefill: batch 1, one chunk
of n tokens from position 0, dense and strided (stride 8 and 16, local 16). Bandwidth = bytes that
must be read (the K/V pages the plan's heads attend, plus Q and O) / time; for torch's dense
kernels the dense bytes. TFLOP/s counts the work done (4 * D flops per attended query-key pair).
A device-to-device copy measured in the same run is the bandwidth ceiling. Prefill times are
medians of CUDA-event-timed runs, each queued behind a 0.1 ms spin so that the host's launch time
is not timed, with the L2 as the run before left it; on the dense plan, ours and torch's kernels
take turns over --prefill-rounds rounds (peers first in even rounds, ours first in odd ones), and
each time is the median of its rounds' medians, since a kernel timed right after another's long
runs can run slower than when it goes first; the dense decode the same over --decode-rounds.
Decode times are medians of runs each after an L2 flush (--decode-flush): "read" sums a 256 MB
buffer, which leaves the L2 holding clean lines (as the GEMVs before attention leave it in the
engine); "zero" writes it, as triton.testing.do_bench does, which leaves the L2 full of dirty
lines that the timed kernel then writes back to memory (up to about 10 us more per call, ours and
torch's alike). By default both: the main table is the first kind's, a second table the other's.
Sustained decode (--decode-sustained S, dense shapes whose K/V are at least 4x the L2): ours and
torch's best backend each run back to back for S seconds, twice (ours, peer, peer, ours), with no
flush, replayed from CUDA graphs (--sustained-launch), while nvidia-smi samples the board. Run so,
these kernels held some H200s at their 700 W cap, as the engine's batch-1 steps do, and others not
(kernels/NOTES.md, sessions 44 and 45). --power-log samples the board during the flushed rounds
too: each round's JSON carries its SM and HBM clocks, power, temperatures and power-cap share, and a
table lists them per round.
"""
import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import threading
import time
import traceback
import warnings

import numpy as np
import torch
import torch.nn.functional as F

# SDPA warns about every backend it cannot use while the peers are probed, and FlexAttention about
# an old flag: the tables already say which backend ran or failed, and why.
warnings.filterwarnings("ignore", message=r".*(kernel not used because|has been runtime disabled|both fused kernels require)")
warnings.filterwarnings("ignore", message=r"_compile flag on create_block_mask", category=DeprecationWarning)

HQ, HKV, D, BLK = 32, 8, 128, 64
GROUP = HQ // HKV


class AttnArgs(ctypes.Structure):
    _fields_ = [("q", ctypes.c_void_p), ("out", ctypes.c_void_p), ("kv_pool", ctypes.c_void_p),
                ("indptr", ctypes.c_void_p), ("blocks", ctypes.c_void_p), ("pages", ctypes.c_void_p),
                ("chunk_pos0", ctypes.c_void_p), ("chunk_tok0", ctypes.c_void_p), ("shards", ctypes.c_void_p),
                ("q_row_stride", ctypes.c_int64), ("out_row_stride", ctypes.c_int64), ("kv_pool_pages", ctypes.c_int64),
                ("n_layers", ctypes.c_int32), ("layer", ctypes.c_int32), ("n_kv_heads", ctypes.c_int32),
                ("group", ctypes.c_int32), ("head_dim", ctypes.c_int32), ("block_size", ctypes.c_int32),
                ("window", ctypes.c_int32), ("scale", ctypes.c_float)]


def load_lib(path):
    lib = ctypes.CDLL(path)
    vp, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    lib.hs_decode_slots.argtypes = [i32]
    lib.hs_decode_plan.argtypes = [vp, vp, i32, i32, i32, i32, i32, i32, i32, i32]
    lib.hs_decode_plan.restype = vp
    lib.hs_decode_plan_info.argtypes = [vp, vp]
    lib.hs_decode_run.argtypes = [vp, ctypes.POINTER(AttnArgs), vp]
    lib.hs_decode_free.argtypes = [vp]
    lib.hs_prefill_plan.argtypes = [vp, i32, vp, vp, i32]
    lib.hs_prefill_plan.restype = vp
    lib.hs_prefill_run.argtypes = [vp, ctypes.POINTER(AttnArgs), vp]
    lib.hs_prefill_free.argtypes = [vp]
    lib.hs_prefill_set_order.argtypes = [vp, i32]
    lib.hs_set_variant.argtypes = [i32, i32]
    lib.hs_error_string.argtypes = [i32]
    lib.hs_error_string.restype = ctypes.c_char_p
    return lib


def np_ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def shards_for(kind, stride=8, local=16):
    if kind == "dense":
        return np.array([[0, 1, 1, 0]] * HKV, dtype=np.int32)
    return np.array([[0, local, stride, h % stride] for h in range(HKV)], dtype=np.int32)


def attended_blocks(c, sh):
    """Blocks 0..c the newest query (block c) attends under shard sh = (sink, local, stride, offset)."""
    sink, local, stride, off = (int(x) for x in sh)
    j = np.arange(c + 1)
    keep = (j < sink) | (c - j < local)
    if stride == 1:
        keep[:] = True
    elif stride > 1:
        keep |= (j + off) % stride == 0
    return j[keep]


class L2Flush:
    """Runs before each timed decode call: 'zero' writes a 256 MB buffer (triton.testing.do_bench's
    flush), 'read' sums it (the L2 is left holding clean lines)."""

    def __init__(self):
        self.buf = torch.ones(64 << 20, dtype=torch.int32, device="cuda")
        self.sink = torch.empty((), dtype=torch.int64, device="cuda")

    def __call__(self, kind):
        if kind == "zero":
            self.buf.zero_()
        elif kind == "read":
            torch.sum(self.buf, dim=0, dtype=torch.int64, out=self.sink)
        else:
            raise ValueError(f"unknown flush {kind!r}")


_FLUSH = []


def median_time_ms(fn, flush=None, budget_ms=300.0):
    """Median of CUDA-event-timed runs: each after an L2 flush of that kind ('zero' or 'read',
    do_bench's method: 25 ms of warm-up, 100 ms of runs), or with the L2 as the last run left it
    (flush None)."""
    if flush:
        if not _FLUSH:
            _FLUSH.append(L2Flush())
        fl = _FLUSH[0]
        fn()
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(5):
            fl(flush)
            fn()
        e.record()
        torch.cuda.synchronize()
        est = max(s.elapsed_time(e) / 5, 1e-3)
        for _ in range(max(1, int(25 / est))):
            fl(flush)
            fn()
        n = max(1, int(100 / est))
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for a, b in ev:
            fl(flush)
            a.record()
            fn()
            b.record()
        torch.cuda.synchronize()
        return float(np.median([a.elapsed_time(b) for a, b in ev]))
    fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    fn()
    e.record()
    torch.cuda.synchronize()
    est = max(s.elapsed_time(e), 1e-3)
    n = int(min(max(budget_ms / est, 3), 50))
    ts = []
    for _ in range(n):
        torch.cuda._sleep(200_000)  # ~0.1 ms of spinning: the host's launch of fn is not timed
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    return float(np.median(ts))


def take_turns(rounds, time_peers, time_ours):
    """Rounds 1 to rounds - 1 of a side-by-side timing whose round 0 timed the peers, then ours: the
    peers go first in even rounds, ours in odd ones."""
    for r_ in range(1, rounds):
        for fn in (time_peers, time_ours) if r_ % 2 == 0 else (time_ours, time_peers):
            fn()


def ms_only(r):
    """A peer's result without its output: its "ms" and "ms_<flush>" times (and "board")."""
    return {key: x for key, x in r.items() if key.startswith("ms") or key == "board"}


def timed(fn, flushes, power=None):
    """{"ms": ...} with no flush (flushes empty), or the first flush kind's as "ms" and the others' as
    "ms_<kind>"; with a PowerLog, "board": the board's state while the first kind's runs went."""
    if not flushes:
        return {"ms": median_time_ms(fn)}
    t, board = {}, {}
    for kind in flushes:
        t0 = time.time()
        t[kind] = median_time_ms(fn, flush=kind)
        if power and kind == flushes[0]:
            board = power.between(t0, time.time())
    return {"ms": t[flushes[0]], **{"ms_" + kind: t[kind] for kind in flushes[1:]}, **({"board": board} if board else {})}


class PowerLog:
    """The board's state every 50 ms (nvidia-smi), read by a thread: SM and memory clocks, power,
    the power-cap flag, GPU and HBM temperatures; no samples where nvidia-smi is missing."""

    FIELDS = (("MHz", "clocks.sm"), ("mem_MHz", "clocks.mem"), ("W", "power.draw"),
              ("capped", "clocks_event_reasons.sw_power_cap"), ("C", "temperature.gpu"),
              ("mem_C", "temperature.memory"))

    def __init__(self):
        self.samples = []  # (time, {key: value}); a field nvidia-smi reports as N/A is left out
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=" + ",".join(f for _, f in self.FIELDS), "--format=csv,noheader,nounits",
                 "-lms", "50"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self.proc = None
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            x = {}
            for (key, _), v in zip(self.FIELDS, (v.strip() for v in line.split(","))):
                if key == "capped":
                    x[key] = float(v.lower() == "active")
                else:
                    try:
                        x[key] = float(v)
                    except ValueError:
                        pass
            if "W" in x:
                self.samples.append((time.time(), x))

    def between(self, t0, t1):
        """The medians of each field over the samples from t0 to t1 (the share of them at the power cap
        for "capped"), the lowest SM clock, and the sample count; {} without samples."""
        s = [x for t, x in self.samples if t0 <= t <= t1]
        if not s:
            return {}
        r = {key: float(np.median([x[key] for x in s if key in x])) for key, _ in self.FIELDS
             if key != "capped" and any(key in x for x in s)}
        return {**r, "capped": float(np.mean([x.get("capped", 0.0) for x in s])),
                "MHz_min": min(x.get("MHz", math.inf) for x in s), "samples": len(s)}

    def close(self):
        if self.proc:
            self.proc.terminate()


def sustained(fn, secs, power, launch="graph"):
    """fn back to back for secs seconds, no flush: the median ms of a call, and the board's state
    after the first 0.5 s. The calls replay from a CUDA graph of at least 5 ms of them, queued behind
    a spin, so that neither library's host-side cost of a call (a Python call into torch's SDPA
    costs more than one through ctypes) leaves the GPU idle or lands in the time. With launch "host",
    or where the capture fails ("launch" then says why), the calls run from the host."""
    n = max(10, math.ceil(5.0 / median_time_ms(fn)))

    def run():
        for _ in range(n):
            fn()
    if launch == "graph":
        g = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(g):
                run()
            run = g.replay
        except Exception as ex:  # noqa: BLE001
            torch.cuda.synchronize()
            launch = "host (graph capture failed: " + err_str(ex) + ")"
    run()
    torch.cuda.synchronize()
    ts, t0 = [], time.time()
    while time.time() - t0 < secs:
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(4)]
        torch.cuda._sleep(400_000)  # ~0.2 ms: the host queues the four groups meanwhile
        for a, b in ev:
            a.record()
            run()
            b.record()
        ev[-1][1].synchronize()
        ts += [a.elapsed_time(b) / n for a, b in ev]
    return {"ms": float(np.median(ts)), "calls_a_group": n, "launch": launch, **power.between(t0 + 0.5, time.time())}


def sdpa_decode(q4, k, v, be):
    """torch's SDPA on a decode's queries q4 (batch, HQ, 1, D) and keys and values k, v (decode_tensors'),
    with backend be alone: a closure that runs it on the current stream and returns its output."""
    from torch.nn.attention import sdpa_kernel

    def run():
        with sdpa_kernel([be]):
            return F.scaled_dot_product_attention(q4, k, v, enable_gqa=True)

    return run


def sustained_turns(lib, args, be, best, handle, q4, k, v):
    """{"sustained": [run, ...]}: ours (handle: a variant of decode_shape's) and torch's backend be (named
    best), each sustained() in the order ours, peer, peer, ours; or {"sustained_error": ...}."""
    peer = sdpa_decode(q4, k, v, be)
    dv, vkey, _, ours = handle
    lib.hs_set_variant(dv, 0)
    turns = (("ours_" + vkey, ours), (best, peer), (best, peer), ("ours_" + vkey, ours))
    try:
        return {"sustained": [{"kernel": name, **sustained(fn, args.decode_sustained, args.power, args.sustained_launch)}
                              for name, fn in turns]}
    except Exception as ex:  # noqa: BLE001
        return {"sustained_error": err_str(ex)}


def copy_bandwidth():
    n = 1 << 31  # 2 GiB each way
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    a.random_(0, 255)
    b = torch.empty_like(a)
    ms = median_time_ms(lambda: b.copy_(a), budget_ms=200)
    del a, b
    return 2 * n / (ms * 1e-3)


def err_str(ex):
    lines = str(ex).strip().splitlines()
    return f"{type(ex).__name__}: {lines[0][:160] if lines else ''}"


def rel_err(x, ref):
    x, ref = x.float(), ref.float()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


class Peers:
    """torch's SDPA backends and FlexAttention, with failures kept as strings."""

    def __init__(self, flex_budget_s):
        from torch.nn.attention import SDPBackend
        self.backends = [("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa_flash", SDPBackend.FLASH_ATTENTION),
                         ("sdpa_efficient", SDPBackend.EFFICIENT_ATTENTION)]
        self.flex_left = flex_budget_s
        self.power = None  # a PowerLog: the decode's timings record the board's state
        self.flex = None
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            self.create_block_mask = create_block_mask
            # Each shape and mask compiles FlexAttention anew. Past dynamo's limit (8 by default)
            # the call falls back to the unfused implementation, which materializes the scores:
            # the tables up to session 24 timed that at batch 64 and above.
            import torch._dynamo
            for key in ("recompile_limit", "cache_size_limit"):  # the name before torch 2.6
                if hasattr(torch._dynamo.config, key):
                    setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), 256))
            self.flex = torch.compile(flex_attention)
        except Exception as ex:  # noqa: BLE001
            self.flex_error = f"import failed: {ex}"

    def sdpa(self, q, k, v, causal, flushes=()):
        """Each backend's output and median ms: with no flush, or after each flush kind in flushes
        ("ms" the first kind's, "ms_<kind>" the others')."""
        from torch.nn.attention import sdpa_kernel
        res = {}
        for name, be in self.backends:
            torch.cuda.nvtx.range_push(f"peer {name}")  # for a profiler, as ours' ranges in decode_shape
            try:
                with sdpa_kernel([be]):
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)  # noqa: E731
                    out = fn()
                    torch.cuda.synchronize()
                    res[name] = {"out": out, **timed(fn, flushes, self.power)}
            except Exception as ex:  # noqa: BLE001
                res[name] = {"error": err_str(ex)}
                torch.cuda.synchronize()
            torch.cuda.nvtx.range_pop()
        return res

    def flex_run(self, q, k, v, mask_mod, q_len, kv_len, flush):
        if self.flex is None:
            return {"error": getattr(self, "flex_error", "unavailable")}
        if self.flex_left <= 0:
            return {"error": "skipped: flex time budget used up"}
        t0 = time.time()
        try:
            last = None
            for bs in (BLK, 128):
                try:
                    bm = None if mask_mod is None else self.create_block_mask(
                        mask_mod, None, HQ, q_len, kv_len, device="cuda", BLOCK_SIZE=bs, _compile=q_len > 1)
                    fn = lambda: self.flex(q, k, v, block_mask=bm, enable_gqa=True)  # noqa: E731
                    out = fn()
                    torch.cuda.synchronize()
                    ms = median_time_ms(fn, flush=flush)
                    return {"ms": ms, "out": out, "block": bs if mask_mod is not None else None}
                except Exception as ex:  # noqa: BLE001
                    last = ex
                    torch.cuda.synchronize()
                    if mask_mod is None:
                        break
            raise last
        except Exception as ex:  # noqa: BLE001
            return {"error": err_str(ex)}
        finally:
            self.flex_left -= time.time() - t0


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) for c, w in zip(cols, widths))


def run_decode(lib, args, peers, results, copy_bw):
    scale = 1.0 / math.sqrt(D)
    rows = []
    for batch in args.decode_batches:
        for ctx in args.decode_contexts:
            kv_bytes = batch * HKV * ctx * D * 2 * 2
            if 2 * kv_bytes > args.mem_limit_gb * 1e9:
                rows.append({"batch": batch, "ctx": ctx, "skipped": f"needs {2 * kv_bytes / 1e9:.0f} GB "
                             f"(torch K/V + page pool) > {args.mem_limit_gb} GB"})
                print(f"decode batch {batch} ctx {ctx}: skipped (memory)", flush=True)
                continue
            t_shape = time.time()
            try:
                decode_shape(lib, args, peers, rows, copy_bw, batch, ctx, scale)
            except Exception:  # noqa: BLE001
                err = traceback.format_exc()
                rows.append({"batch": batch, "ctx": ctx, "skipped": "error: " + err.strip().splitlines()[-1][:200]})
                print(err, file=sys.stderr, flush=True)
            torch.cuda.empty_cache()
            results["decode"] = rows
            print(f"  ({time.time() - t_shape:.1f} s)", flush=True)
    return rows


def decode_tensors(batch, ctx):
    """Random queries, keys and values of a decode shape, the page pool that holds the keys and
    values (list (b, h) in pages [(b * HKV + h) * nblk, ... + nblk)), and an output buffer."""
    nblk = ctx // BLK
    q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(batch, HKV, ctx, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn(batch, HKV, ctx, D, dtype=torch.bfloat16, device="cuda")
    pool = torch.empty(batch * HKV * nblk, 2, BLK, D, dtype=torch.bfloat16, device="cuda")
    pv = pool.view(batch, HKV, nblk, 2, BLK, D)
    pv[:, :, :, 0].copy_(k.view(batch, HKV, nblk, BLK, D))
    pv[:, :, :, 1].copy_(v.view(batch, HKV, nblk, BLK, D))
    out = torch.empty(batch, HQ * D, dtype=torch.bfloat16, device="cuda")
    return q, k, v, pool, out


def decode_run(lib, h, a):
    """Our decode of plan h on AttnArgs a, launched on the current stream (a CUDA graph's capture
    stream in sustained())."""
    rc = lib.hs_decode_run(h, ctypes.byref(a), ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
    if rc:
        raise RuntimeError(lib.hs_error_string(rc).decode())


class DenseDecode:
    """Our dense decode of decode_tensors' q, pool and out, planned once for a decode variant (the
    probes in kernels/results/ time it): calling it launches it on the current stream."""

    def __init__(self, lib, q, pool, out, batch, ctx, variant=0):
        nblk = ctx // BLK
        indptr = np.arange(0, batch * HKV * nblk + 1, nblk, dtype=np.int32)
        self.lib, self.variant = lib, variant
        self.meta = [torch.from_numpy(indptr).cuda(),  # kept alive: the launches read them
                     torch.from_numpy(np.tile(np.arange(nblk, dtype=np.int32), batch * HKV)).cuda(),
                     torch.arange(batch * HKV * nblk, dtype=torch.int32, device="cuda"),
                     torch.full((batch,), ctx - 1, dtype=torch.int32, device="cuda"),
                     torch.arange(batch + 1, dtype=torch.int32, device="cuda"),
                     torch.from_numpy(shards_for("dense")).cuda()]
        lib.hs_set_variant(variant, 0)
        self.h = lib.hs_decode_plan(np_ptr(indptr), np_ptr(np.arange(batch, dtype=np.int32)), batch, 1, HKV, BLK,
                                    GROUP, D, 0, 0)
        if not self.h:
            raise RuntimeError("hs_decode_plan failed")
        info = np.zeros(6, dtype=np.int32)
        lib.hs_decode_plan_info(self.h, np_ptr(info))
        self.items = int(info[0])
        self.args = AttnArgs(q.data_ptr(), out.data_ptr(), pool.data_ptr(), *(t.data_ptr() for t in self.meta), 0, 0,
                             pool.shape[0], 1, 0, HKV, GROUP, D, BLK, 0, 1.0 / math.sqrt(D))

    def __call__(self):
        self.lib.hs_set_variant(self.variant, 0)
        decode_run(self.lib, self.h, self.args)

    def free(self):
        self.lib.hs_decode_free(self.h)


def decode_shape(lib, args, peers, rows, copy_bw, batch, ctx, scale):
    torch.manual_seed(batch * 1000003 + ctx)
    nblk = ctx // BLK
    q, k, v, pool, out = decode_tensors(batch, ctx)
    pos0 = np.full(batch, ctx - 1, dtype=np.int32)
    tok0 = np.arange(batch + 1, dtype=np.int32)
    d_pos0 = torch.from_numpy(pos0).cuda()
    d_tok0 = torch.from_numpy(tok0).cuda()
    chunks = np.arange(batch, dtype=np.int32)
    q4 = q.view(batch, HQ, 1, D)
    c = (ctx - 1) // BLK
    for plan in ("dense", "strided"):
        sh = shards_for(plan)
        kept = [attended_blocks(c, sh[h]) for h in range(HKV)]
        if plan == "dense":
            ppool = pool
            blocks = np.tile(np.arange(nblk, dtype=np.int32), batch * HKV)
            pages = np.arange(batch * HKV * nblk, dtype=np.int32)
            if args.decode_pages == "shuffled":  # page i of the lists at a random place in the pool
                pages = np.random.default_rng(batch * 7919 + ctx).permutation(len(pages)).astype(np.int32)
                ppool = torch.empty_like(pool)
                ppool[torch.from_numpy(pages.astype(np.int64)).cuda()] = pool
            lens = np.full(batch * HKV, nblk, dtype=np.int64)
        else:
            per_head = [kb.astype(np.int32) for kb in kept]
            blocks = np.concatenate([per_head[h] for b in range(batch) for h in range(HKV)])
            src = np.concatenate([(b * HKV + h) * nblk + per_head[h] for b in range(batch) for h in range(HKV)])
            ppool = pool[torch.from_numpy(src.astype(np.int64)).cuda()]
            pages = np.arange(len(src), dtype=np.int32)
            lens = np.array([len(per_head[h]) for b in range(batch) for h in range(HKV)], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        d_indptr = torch.from_numpy(indptr).cuda()
        d_blocks = torch.from_numpy(blocks).cuda()
        d_pages = torch.from_numpy(pages).cuda()
        d_sh = torch.from_numpy(sh).cuda()
        n_att = int(sum(len(kb) for kb in kept)) * batch  # attended pages (all heads)
        bytes_ours = n_att * 2 * BLK * D * 2 + 2 * batch * HQ * D * 2
        flops = 4.0 * n_att * BLK * GROUP * D
        row = {"batch": batch, "ctx": ctx, "plan": plan, "bytes": bytes_ours}
        # References first: torch's dense kernels (dense plan) or a masked SDPA on a few sequences.
        ref, nref = None, batch
        rounds = args.decode_rounds if plan == "dense" and not args.ours_only else 1
        peer_t = {}  # backend -> its rounds' times ({"ms": ..., "ms_<flush>": ...} each)
        if plan == "dense":
            res = peers.sdpa(q4, k, v, causal=False, flushes=args.decode_flush) if not args.ours_only else {}
            for name, r in res.items():
                if "error" in r:
                    row[name + "_ms"] = None
                    row[name + "_error"] = r["error"]
                else:
                    peer_t[name] = [ms_only(r)]
            ok = [(r["ms"], name) for name, r in res.items() if "ms" in r]
            if ok:
                ref = res[min(ok)[1]]["out"].reshape(batch, HQ * D)
            del res
        if ref is None:
            nref = min(batch, 4)
            allowed = torch.zeros(HQ, ctx, dtype=torch.bool, device="cuda")
            for hh in range(HQ):
                kb = torch.from_numpy(kept[hh // GROUP].astype(np.int64)).cuda()
                idx = (kb[:, None] * BLK + torch.arange(BLK, device="cuda")[None, :]).reshape(-1)
                allowed[hh, idx[idx <= ctx - 1]] = True
            try:
                ref = F.scaled_dot_product_attention(q4[:nref], k[:nref], v[:nref], attn_mask=allowed.view(1, HQ, 1, ctx),
                                                     enable_gqa=True).reshape(nref, HQ * D)
            except Exception as ex:  # noqa: BLE001
                row["ref_error"] = err_str(ex)
            del allowed
        # Ours, every variant: planned once, timed in each round.
        ours_t, handles = {}, []  # variant key -> its rounds' times
        for dv, slots, min_split in dict.fromkeys((dv, slots, ms) for dv, _, slots, ms in args.variants):
            lib.hs_set_variant(dv, 0)
            t_plan = time.perf_counter()
            h = lib.hs_decode_plan(np_ptr(indptr), np_ptr(chunks), batch, 1, HKV, BLK, GROUP, D, slots, min_split)
            plan_us = (time.perf_counter() - t_plan) * 1e6
            if not h:
                raise RuntimeError("hs_decode_plan failed")
            info = np.zeros(6, dtype=np.int32)
            lib.hs_decode_plan_info(h, np_ptr(info))
            a = AttnArgs(q.data_ptr(), out.data_ptr(), ppool.data_ptr(), d_indptr.data_ptr(), d_blocks.data_ptr(),
                         d_pages.data_ptr(), d_pos0.data_ptr(), d_tok0.data_ptr(), d_sh.data_ptr(), 0, 0,
                         ppool.shape[0], 1, 0, HKV, GROUP, D, BLK, 0, scale)

            def ours(h=h, a=a):
                decode_run(lib, h, a)

            vkey = f"v{dv}" + (f"_slots{slots}" if slots else "") + (f"_split{min_split}" if min_split else "")
            handles.append((dv, vkey, h, ours))
            out.fill_(float("nan"))
            ours()
            torch.cuda.synchronize()
            if not torch.isfinite(out).all():
                raise RuntimeError(f"decode output not finite (batch {batch} ctx {ctx} {plan} variant {dv})")
            if ref is not None:
                row["rel_err_" + vkey] = rel_err(out[:nref], ref)
            row["items_" + vkey] = int(info[0])
            row["lone_" + vkey], row["two_stage_" + vkey] = bool(info[4]), bool(info[5])
            row["plan_us_" + vkey] = plan_us
            row["largest_item_pages_" + vkey] = int(info[2])

        def time_ours():
            for dv, vkey, h, ours in handles:
                lib.hs_set_variant(dv, 0)
                # A named range, so that a profiler can take this shape's kernel alone:
                # ncu --nvtx --nvtx-include "decode b1 ctx32768 strided v0/" ...
                torch.cuda.nvtx.range_push(f"decode b{batch} ctx{ctx} {plan} {vkey}")
                ours_t.setdefault(vkey, []).append(timed(ours, args.decode_flush, args.power))
                torch.cuda.nvtx.range_pop()

        def time_peers():
            for name, r in peers.sdpa(q4, k, v, causal=False, flushes=args.decode_flush).items():
                if name in peer_t and "ms" in r:
                    peer_t[name].append(ms_only(r))

        time_ours()  # round 0: the peers went first, above
        take_turns(rounds, time_peers, time_ours)

        def medians(ts):  # {"ms": median, "ms_<flush>": median, ...} over the rounds
            return {key: float(np.median([t[key] for t in ts])) for key in ts[0] if key.startswith("ms")}

        for name, ts in peer_t.items():
            row.update({name + "_" + key: x for key, x in medians(ts).items()})
            if rounds > 1:
                row[name + "_ms_rounds"] = ts
        ok = [(row[name + "_ms"], name) for name in peer_t]
        if ok:
            best = min(ok)
            row["torch_best"], row["torch_best_ms"] = best[1], best[0]
            kv_bytes = batch * HKV * ctx * D * 4
            row["torch_best_TBps"] = (kv_bytes + 2 * batch * HQ * D * 2) / (best[0] * 1e-3) / 1e12
            if args.decode_sustained > 0 and kv_bytes >= 4 * torch.cuda.get_device_properties(0).L2_cache_size:
                row.update(sustained_turns(lib, args, dict(peers.backends)[best[1]], best[1], handles[0], q4, k, v))
        for _, _, h, _ in handles:
            lib.hs_decode_free(h)
        for vkey, ts in ours_t.items():
            t = medians(ts)
            row.update({"ours_" + key + "_" + vkey: x for key, x in t.items()})
            if rounds > 1:
                row["ours_rounds_" + vkey] = ts
            for key, x in t.items():  # the best variant under each extra flush
                if key != "ms" and ("ours_" + key not in row or x < row["ours_" + key]):
                    row["ours_" + key] = x
            ms = t["ms"]
            if "ours_ms" not in row or ms < row["ours_ms"]:
                row.update({"ours_ms": ms, "ours_variant": vkey[1:], "items": row["items_" + vkey],
                            "largest_item_pages": row["largest_item_pages_" + vkey],
                            "ours_TBps": bytes_ours / (ms * 1e-3) / 1e12, "ours_TFLOPs": flops / (ms * 1e-3) / 1e12})
        row["rel_err"] = max(v for k_, v in row.items() if k_.startswith("rel_err_v")) if ref is not None else None
        if plan == "dense":
            fr = peers.flex_run(q4, k, v, None, 1, ctx, flush=args.decode_flush[0]) if args.flex_decode else {
                "error": "not run (--no-flex-decode)"}
        else:
            offs = torch.tensor([int(s[3]) for s in sh], device="cuda")

            def strided_mask(b, hh, qi, kv, c=c, offs=offs):
                j = kv // BLK
                return ((c - j) < 16) | (((j + offs[hh // GROUP]) % 8) == 0)

            fr = peers.flex_run(q4, k, v, strided_mask, 1, ctx, flush=args.decode_flush[0]) if args.flex_decode else {
                "error": "not run (--no-flex-decode)"}
        if "ms" in fr:
            row["flex_ms"] = fr["ms"]
            row["flex_block"] = fr.get("block")
            row["flex_rel_err_vs_ours"] = rel_err(fr["out"].reshape(batch, HQ * D), out)
        else:
            row["flex_error"] = fr["error"]
        row["copy_TBps"] = copy_bw / 1e12
        rows.append(row)
        del ppool, d_indptr, d_blocks, d_pages, ref
        ms = row["ours_ms"]
        print(f"decode batch {batch:4d} ctx {ctx:6d} {plan:8s} ours {ms * 1e3:8.1f} us  "
              f"{row['ours_TBps']:.2f} TB/s  items {row['items']}  "
              f"torch best {row.get('torch_best_ms', float('nan')) * 1e3:8.1f} us  "
              f"flex {row.get('flex_ms', float('nan')) * 1e3:8.1f} us", flush=True)
    del q, k, v, pool, out


def strided_pairs(n, sh):
    """Attended (query, key) pairs of one KV head for a causal prefill of n tokens from 0."""
    sink, local, stride, off = (int(x) for x in sh)
    nb = (n + BLK - 1) // BLK
    total = 0
    for i in range(nb):
        qn = min(BLK, n - i * BLK)
        # earlier blocks j < i attended by block i
        if stride == 1:
            nj = i
        else:
            j = np.arange(i)
            keep = (j < sink) | (i - j < local)
            if stride > 1:
                keep |= (j + off) % stride == 0
            nj = int(keep.sum())
        total += nj * BLK * qn + qn * (qn + 1) // 2
    return total


def run_prefill(lib, args, peers, results):
    stream = torch.cuda.current_stream().cuda_stream
    scale = 1.0 / math.sqrt(D)
    rows = []
    for n in args.prefill_tokens:
        t_shape = time.time()
        try:
            prefill_shape(lib, args, peers, rows, n, stream, scale)
        except Exception:  # noqa: BLE001
            err = traceback.format_exc()
            rows.append({"tokens": n, "plan": "-", "skipped": "error: " + err.strip().splitlines()[-1][:200]})
            print(err, file=sys.stderr, flush=True)
        torch.cuda.empty_cache()
        results["prefill"] = rows
        print(f"  ({time.time() - t_shape:.1f} s)", flush=True)
    return rows


def prefill_tensors(n):
    """Batch-1 prefill inputs of n tokens (seeded by n): q [n, HQ, D], k and v [1, HKV, n, D], and the
    page pool [HKV * pages, 2 (K, V), BLK, D] holding k and v, KV head h in pages h * pages onwards."""
    torch.manual_seed(n)
    nblk = (n + BLK - 1) // BLK
    q = torch.randn(n, HQ, D, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(1, HKV, n, D, dtype=torch.bfloat16, device="cuda")
    v = torch.randn(1, HKV, n, D, dtype=torch.bfloat16, device="cuda")
    pool = torch.zeros(HKV * nblk, 2, BLK, D, dtype=torch.bfloat16, device="cuda")
    pv = pool.view(HKV, nblk, 2, BLK, D)
    for part, x in enumerate((k, v)):
        pv[:, :, part].copy_(F.pad(x[0], (0, 0, 0, nblk * BLK - n)).view(HKV, nblk, BLK, D))
    return q, k, v, pool


def prefill_shape(lib, args, peers, rows, n, stream, scale):
    nblk = (n + BLK - 1) // BLK
    q, k, v, pool = prefill_tensors(n)
    out = torch.empty(n, HQ * D, dtype=torch.bfloat16, device="cuda")
    indptr = (np.arange(HKV + 1) * nblk).astype(np.int32)
    blocks = np.tile(np.arange(nblk, dtype=np.int32), HKV)
    pages = np.arange(HKV * nblk, dtype=np.int32)
    pos0 = np.zeros(1, dtype=np.int32)
    tok0 = np.array([0, n], dtype=np.int32)
    d = {name: torch.from_numpy(x).cuda() for name, x in
         (("indptr", indptr), ("blocks", blocks), ("pages", pages), ("pos0", pos0), ("tok0", tok0))}
    chunk_ids = np.zeros(1, dtype=np.int32)
    h = lib.hs_prefill_plan(np_ptr(chunk_ids), 1, np_ptr(pos0), np_ptr(tok0), D)
    qt = q.view(1, n, HQ, D).transpose(1, 2).contiguous()
    sdpa_res = None
    flash_dense_ms = None  # torch's flash kernel on the dense problem, for the strided rows' ratio
    for plan, stride in (("dense", 1), ("strided8", 8), ("strided16", 16)):
        sh = shards_for("dense" if stride == 1 else "strided", stride=stride)
        d_sh = torch.from_numpy(sh).cuda()
        a = AttnArgs(q.data_ptr(), out.data_ptr(), pool.data_ptr(), d["indptr"].data_ptr(),
                     d["blocks"].data_ptr(), d["pages"].data_ptr(), d["pos0"].data_ptr(), d["tok0"].data_ptr(),
                     d_sh.data_ptr(), 0, 0, pool.shape[0], 1, 0, HKV, GROUP, D, BLK, 0, scale)
        pairs = sum(strided_pairs(n, sh[hh]) for hh in range(HKV)) * GROUP
        flops = 4.0 * D * pairs
        row = {"tokens": n, "plan": plan, "work_flops": flops}
        offs = torch.tensor([int(x[3]) for x in sh], device="cuda")

        def mm(b, hh, qi, kv, offs=offs, stride=stride):
            if stride == 1:
                return kv <= qi
            j, i = kv // BLK, qi // BLK
            return (kv <= qi) & (((i - j) < 16) | (((j + offs[hh // GROUP]) % stride) == 0))

        # Reference: torch's dense causal kernels, or a masked SDPA on the last rows (most keys).
        ref, rows_ref = None, slice(0, n)
        rounds = args.prefill_rounds if plan == "dense" and not args.ours_only else 1
        peer_ms = {}  # backend -> its rounds' ms
        if plan == "dense" and not args.ours_only:
            sdpa_res = peers.sdpa(qt, k, v, causal=True)
            for name, r in sdpa_res.items():
                if "ms" in r:
                    peer_ms[name] = [r["ms"]]
                else:
                    row[name + "_ms"] = None
                    row[name + "_error"] = r["error"]
            ref = next((r["out"] for r in sdpa_res.values() if "out" in r), None)
            if ref is not None:
                ref = ref.transpose(1, 2).reshape(n, HQ * D)
            for r in sdpa_res.values():
                r.pop("out", None)
        if ref is None:
            nr = min(n, 512)
            rows_ref = slice(n - nr, n)
            qi = torch.arange(n - nr, n, device="cuda")[:, None]
            kv = torch.arange(n, device="cuda")[None, :]
            mask = torch.stack([mm(0, hh, qi, kv) for hh in range(HQ)])[None]  # [1, HQ, nr, n]
            ref = F.scaled_dot_product_attention(qt[:, :, n - nr:], k, v, attn_mask=mask, enable_gqa=True)
            ref = ref.transpose(1, 2).reshape(nr, HQ * D)
            del mask
        ours_ms = {}  # variant -> its rounds' ms

        def time_ours(first=False):
            for pv_ in dict.fromkeys(pv_ for _, pv_, _, _ in args.variants):
                lib.hs_set_variant(0, pv_)

                def ours():
                    rc = lib.hs_prefill_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
                    if rc:
                        raise RuntimeError(lib.hs_error_string(rc).decode())

                vkey = f"v{pv_}"
                if first:
                    out.fill_(float("nan"))
                    ours()
                    torch.cuda.synchronize()
                    if not torch.isfinite(out).all():
                        raise RuntimeError(f"prefill output not finite (n {n} {plan} variant {pv_})")
                    row["rel_err_" + vkey] = rel_err(out[rows_ref], ref)
                torch.cuda.nvtx.range_push(f"prefill n{n} {plan} {vkey}")  # as the decode's, for a profiler
                ours_ms.setdefault(pv_, []).append(median_time_ms(ours))
                torch.cuda.nvtx.range_pop()

        def time_peers():
            for name, r in peers.sdpa(qt, k, v, causal=True).items():
                if name in peer_ms and "ms" in r:
                    peer_ms[name].append(r["ms"])

        time_ours(True)  # round 0: the peers went first, above
        take_turns(rounds, time_peers, time_ours)
        for name, ms_ in peer_ms.items():
            ms = float(np.median(ms_))
            row.update({name + "_ms": ms, name + "_ms_rounds": ms_, name + "_TFLOPs": flops / (ms * 1e-3) / 1e12})
            if name == "sdpa_flash":
                flash_dense_ms = ms
        if flash_dense_ms is not None:
            row["sdpa_flash_dense_ms"] = flash_dense_ms
        for pv_, ms_ in ours_ms.items():
            ms = float(np.median(ms_))
            row["ours_ms_v" + str(pv_)] = ms
            if rounds > 1:
                row[f"ours_ms_v{pv_}_rounds"] = ms_
            if "ours_ms" not in row or ms < row["ours_ms"]:
                row.update({"ours_ms": ms, "ours_variant": pv_, "ours_TFLOPs": flops / (ms * 1e-3) / 1e12})
        row["rel_err"] = max(v_ for k_, v_ in row.items() if k_.startswith("rel_err_v"))
        del ref
        fr = peers.flex_run(qt, k, v, mm, n, n, flush=None) if args.flex_prefill else {
            "error": "not run (--no-flex-prefill)"}
        if "ms" in fr:
            row["flex_ms"] = fr["ms"]
            row["flex_block"] = fr.get("block")
            row["flex_TFLOPs"] = flops / (fr["ms"] * 1e-3) / 1e12
            del fr
        else:
            row["flex_error"] = fr["error"]
        rows.append(row)
        print(f"prefill n {n:6d} {plan:9s} ours {row['ours_ms']:9.3f} ms {row['ours_TFLOPs']:6.1f} TFLOP/s  "
              f"flex {row.get('flex_ms', float('nan')):9.3f} ms  rel err {row['rel_err']:.2e}", flush=True)
    lib.hs_prefill_free(h)
    del q, k, v, pool, out, qt, d, sdpa_res


def by_variant(r, prefix):
    """A decode row's times (us) of the keys that start with prefix, in the order the variants ran."""
    return " / ".join(f"{r[k] * 1e3:.1f}" if r[k] else "fail" for k in r if k.startswith(prefix))


def print_tables(results):
    cb = results.get("copy_TBps")
    print(f"\n== device copy bandwidth (read + write): {cb:.2f} TB/s" if cb else "")
    dec = results.get("decode", [])
    if dec:
        print("\n== decode: 32 q / 8 kv heads, D=128, B=64, bf16; times in us; BW = bytes that must be read / time")
        print("   us by variant, in the order run: " + ", ".join(
            dict.fromkeys(k[len("ours_ms_"):] for r in dec for k in r if k.startswith("ours_ms_v"))))
        w = [6, 7, 8, 9, 7, 7, 6, 4, 15, 9, 9, 9, 9, 8, 9]
        print(fmt_row(["batch", "ctx", "plan", "ours_us", "TB/s", "TFLOP/s", "items", "var", "us by variant", "cudnn",
                       "flash", "effic", "flex", "best_TBs", "rel_err"], w))
        for r in dec:
            if "skipped" in r:
                print(fmt_row([r["batch"], r["ctx"], "-", "skipped: " + r["skipped"]], w[:4]))
                continue
            def us(key):
                x = r.get(key)
                return f"{x * 1e3:.1f}" if x else "fail"
            err = r.get("rel_err")
            print(fmt_row([r["batch"], r["ctx"], r["plan"], f"{r['ours_ms'] * 1e3:.1f}", f"{r['ours_TBps']:.2f}",
                           f"{r['ours_TFLOPs']:.1f}", r["items"], r.get("ours_variant", "-"),
                           by_variant(r, "ours_ms_v"),
                           us("sdpa_cudnn_ms") if r["plan"] == "dense" else "-",
                           us("sdpa_flash_ms") if r["plan"] == "dense" else "-",
                           us("sdpa_efficient_ms") if r["plan"] == "dense" else "-",
                           us("flex_ms"), f"{r['torch_best_TBps']:.2f}" if r.get("torch_best_TBps") else "-",
                           f"{err:.1e}" if err is not None else "-"], w))
    for kind in results.get("decode_flush", ["zero"])[1:]:
        print(f"\n== decode timed after the '{kind}' flush (the table above: after "
              f"'{results['decode_flush'][0]}'); us, and BW on the same bytes")
        w = [6, 7, 8, 9, 7, 15, 9, 9, 8]
        print(fmt_row(["batch", "ctx", "plan", "ours_us", "TB/s", "us by variant", "cudnn", "flash", "vs_best"], w))
        for r in dec:
            if "skipped" in r or not r.get("ours_ms_" + kind):
                continue
            x = r["ours_ms_" + kind]
            peers_ms = [r.get(f"sdpa_{b}_ms_{kind}") for b in ("cudnn", "flash", "efficient")]
            best = min((m for m in peers_ms if m), default=None)
            print(fmt_row([r["batch"], r["ctx"], r["plan"], f"{x * 1e3:.1f}", f"{r['bytes'] / (x * 1e-3) / 1e12:.2f}",
                           by_variant(r, f"ours_ms_{kind}_v"),
                           *(f"{m * 1e3:.1f}" if m else "-" for m in peers_ms[:2]),
                           f"{best / x:.2f}x" if best else "-"], w))
    sus = [r for r in dec if r.get("sustained")]
    if sus:
        print("\n== decode sustained (dense): each kernel back to back with no flush, in the order ours, peer, peer,"
              " ours;\n   us a call (the mean of its two runs); per run the board's median W, SM MHz and HBM degrees C,"
              " and the share of samples at the power cap;\n   calls launched by:",
              ", ".join(sorted({x.get("launch", "?") for r in sus for x in r["sustained"]})))
        w = [6, 7, 9, 7, 9, 9, 27, 27, 27, 27]
        print(fmt_row(["batch", "ctx", "ours_us", "peer", "peer_us", "peer/ours", "ours 1", "peer 1", "peer 2",
                       "ours 2"], w))

        def power(x):
            hbm = f" {x['mem_C']:.0f} C" if "mem_C" in x else ""
            return f"{x['W']:.0f} W {x['MHz']:.0f} MHz{hbm} {x['capped']:.0%}" if "W" in x else "-"
        for r in sus:
            t = r["sustained"]
            ours_ms, peer_ms = (t[0]["ms"] + t[3]["ms"]) / 2, (t[1]["ms"] + t[2]["ms"]) / 2
            print(fmt_row([r["batch"], r["ctx"], f"{ours_ms * 1e3:.1f}", t[1]["kernel"].replace("sdpa_", ""),
                           f"{peer_ms * 1e3:.1f}", f"{peer_ms / ours_ms:.3f}", *(power(x) for x in t)], w))
    boards = [r for r in dec if any("board" in t for t in r.get("ours_rounds_v0", []))]
    if boards:
        print("\n== decode rounds with the board's state (--power-log): per round, us, and the medians over its runs"
              " of\n   SM MHz / HBM degrees C / W, ours (v0) then torch's best backend")
        w = [6, 7, 44, 44]
        print(fmt_row(["batch", "ctx", "ours v0", "peer"], w))

        def rounds(ts):
            return " ".join(f"{t['ms'] * 1e3:.1f}@{t['board'].get('MHz', 0):.0f}/{t['board'].get('mem_C', 0):.0f}/"
                            f"{t['board'].get('W', 0):.0f}" if t.get("board") else f"{t['ms'] * 1e3:.1f}" for t in ts)
        for r in boards:
            print(fmt_row([r["batch"], r["ctx"], rounds(r["ours_rounds_v0"]),
                           rounds(r.get(r.get("torch_best", "") + "_ms_rounds", []))], w))
    pre = results.get("prefill", [])
    if pre:
        print("\n== prefill: batch 1, 32 q / 8 kv heads, D=128, B=64, causal; times in ms; TFLOP/s on work done")
        w = [7, 10, 9, 8, 4, 9, 9, 9, 9, 8, 9, 9]
        print(fmt_row(["tokens", "plan", "ours_ms", "TFLOP/s", "var", "cudnn", "flash", "effic", "flex", "flexTF",
                       "x_flash", "rel_err"], w))
        for r in pre:
            if "skipped" in r:
                print(fmt_row([r["tokens"], "-", "skipped: " + r["skipped"]], w[:3]))
                continue

            def ms(key):
                x = r.get(key)
                return f"{x:.3f}" if x else ("-" if r["plan"] != "dense" and "sdpa" in key else "fail")
            err = r.get("rel_err")
            fl = r.get("sdpa_flash_ms") or r.get("sdpa_flash_dense_ms")  # torch flash on the dense problem
            print(fmt_row([r["tokens"], r["plan"], f"{r['ours_ms']:.3f}", f"{r['ours_TFLOPs']:.1f}",
                           r.get("ours_variant", "-"),
                           ms("sdpa_cudnn_ms"), ms("sdpa_flash_ms"), ms("sdpa_efficient_ms"), ms("flex_ms"),
                           f"{r['flex_TFLOPs']:.1f}" if r.get("flex_TFLOPs") else "-",
                           f"{fl / r['ours_ms']:.2f}" if fl else "-",
                           f"{err:.1e}" if err is not None else "-"], w))
    fails = [(k, r.get(k)) for r in dec + pre for k in r if k.endswith("_error")]
    if fails:
        print("\n== peer failures (first of each):")
        seen = set()
        for k, e in fails:
            if (k, e) not in seen:
                seen.add((k, e))
                print(f"  {k}: {e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build-kern/libheadshard_kernels.so")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true", help="a few shapes only")
    ap.add_argument("--decode-batches", type=int, nargs="*", default=[1, 16, 64, 256])
    ap.add_argument("--decode-contexts", type=int, nargs="*", default=[4096, 32768, 131072])
    ap.add_argument("--prefill-tokens", type=int, nargs="*", default=[8192, 32768, 131072])
    ap.add_argument("--mem-limit-gb", type=float, default=100.0)
    ap.add_argument("--flex-budget-s", type=float, default=150.0)
    ap.add_argument("--no-flex-decode", dest="flex_decode", action="store_false")
    ap.add_argument("--no-flex-prefill", dest="flex_prefill", action="store_false")
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--ours-only", action="store_true", help="no torch peers (references still computed)")
    ap.add_argument("--variants", nargs="*", default=["0,0", "1,2"],
                    help="kernel variants to time, 'decode,prefill[,slots[,min_split]]' each (slots: the decode "
                         "plan's resident-block count, 0 = the kernel's; negative: plan one block per multiprocessor for "
                         "at most that many items; min_split: the plan's shortest split in tokens, 0 = the default "
                         "256, larger to try plans of fewer, longer items); the best is reported")
    ap.add_argument("--skip-prefill", action="store_true")
    ap.add_argument("--decode-pages", choices=["lists", "shuffled"], default="lists",
                    help="dense decode's pool: each list's pages in a row (default), or every page at a random place")
    ap.add_argument("--prefill-rounds", type=int, default=2,
                    help="rounds in which ours and torch's kernels take turns on the dense prefill (see above)")
    ap.add_argument("--decode-rounds", type=int, default=3,
                    help="rounds in which ours and torch's kernels take turns on the dense decode (as the prefill's; "
                         "the median of three sets one slow round aside)")
    ap.add_argument("--decode-sustained", type=float, default=0.0, metavar="S",
                    help="seconds of each sustained run (dense decode, ours and torch's best backend, twice each); "
                         "0 (default): none")
    ap.add_argument("--sustained-launch", choices=["graph", "host"], default="graph",
                    help="the sustained runs' calls replayed from CUDA graphs (default), or called from the host "
                         "(queued behind a short spin; the launch gaps between calls then count)")
    ap.add_argument("--power-log", action="store_true",
                    help="sample the board (nvidia-smi) during the decode: each flushed round's times carry its median "
                         "SM and memory clocks, power, temperatures and power-cap share (JSON); --decode-sustained "
                         "implies it")
    ap.add_argument("--decode-flush", nargs="+", choices=["zero", "read"], default=["read", "zero"],
                    help="L2 flush before each timed decode run; the first kind's times fill the main table")
    args = ap.parse_args()
    args.variants = [tuple(int(x) for x in (v + ",0,0").split(",")[:4]) for v in args.variants]
    if args.ours_only:
        args.flex_decode = args.flex_prefill = False
    if args.quick:
        args.decode_batches, args.decode_contexts, args.prefill_tokens = [1, 16], [32768], [8192]
    torch.backends.cuda.matmul.allow_tf32 = False
    lib = load_lib(args.lib)
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
               "cudnn": torch.backends.cudnn.version(), "decode_slots": lib.hs_decode_slots(D)}
    t0 = time.time()
    results["copy_TBps"] = copy_bandwidth() / 1e12
    print(f"copy bandwidth {results['copy_TBps']:.2f} TB/s; decode slots {results['decode_slots']}; "
          f"torch {results['torch']}, cuDNN {results['cudnn']}", flush=True)
    peers = Peers(args.flex_budget_s)
    args.power = PowerLog() if (args.decode_sustained > 0 or args.power_log) and not args.skip_decode else None
    peers.power = args.power
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bench_attention.json")
    try:
        if not args.skip_decode:
            results["decode_flush"] = args.decode_flush
            run_decode(lib, args, peers, results, results["copy_TBps"] * 1e12)
        if not args.skip_prefill:
            run_prefill(lib, args, peers, results)
    except Exception:  # noqa: BLE001
        results["error"] = traceback.format_exc()
        print(results["error"], file=sys.stderr, flush=True)
    finally:
        results["seconds"] = time.time() - t0
        if args.power:
            args.power.close()
        with open(path, "w") as f:
            json.dump(results, f, indent=1, default=str)
        print_tables(results)
        print(f"\nwrote {path} ({results['seconds']:.0f} s)")
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
