#!/usr/bin/env python3
"""Session 48 probe: does the order of a decode's pages in the pool move its time?

bench_attention's pool holds each (sequence, KV head) list's pages back to back, so each block streams one
contiguous 2 MB run at 4k. An engine's pool does not look like that: a sequence grown by decode takes a page
every 64 tokens, between the other sequences' pages, and after churn the free list is in any order. Session
46's placement probe moved whole buffers (no change); this one keeps the buffers and moves the pages.

For each shape it builds the benchmark's tensors once and then one pool a layout, holding the same keys and
values with the list entries pointing at them:
  contig      page j of list l at l * n + j (bench_attention's pool; n pages a list)
  items       page j of list l at j * L + l (L lists: page j of every list side by side, as decode grows them)
  heads       within a sequence, page j of KV head h at j * H + h (torch's [batch, seq, head, dim] order)
  random      a random permutation of the pages (seeded)
  engine:NAME the pages the engine's pool gave the lists in bench_kv_layout's scenario NAME (--layout-file;
              session 49): the pool spans the highest of them, every layer's pages interleaved
  split       contig's page order, but every page's K in the pool's first half and its V in the second (as
              torch's K and V tensors, or vLLM's key and value caches); needs a library built with
              session 48's experiment (HS_EXP_KV_SPLIT=1 at launch makes the decode read that layout)
  split_heads heads' page order, split as above
and times our decode (variant 0, or --variant) on each, with cuDNN's SDPA on torch's [batch, head, seq, dim] keys and values
and on the [batch, seq, head, dim] layout (a strided view), in turns, rounds alternating the order, each run
after bench_attention's 256 MB read flush (100 ms of runs, median). Every pool's output is checked against
cuDNN's. Run from the repository root:
    python3 kernels/results/layout_probe_s48.py --lib PATH [--rounds R] [--shapes 64x4096,...] [--layouts ...]
        [--variant V] [--layout-file FILE] [--json FILE]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", required=True)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--shapes", default="64x4096,16x32768,64x32768,256x4096")
ap.add_argument("--layouts", default="contig,items,heads,random")
ap.add_argument("--variant", type=int, default=0, help="our decode variant")
ap.add_argument("--layout-file", default=None,
                help="bench_kv_layout's JSON: layouts engine:NAME take its scenario NAME's lists (session 49)")
ap.add_argument("--json", default=None)
args = ap.parse_args()
lib = ba.load_lib(args.lib)


def layout_pages(name, batch, nblk):
    """Physical page of each logical page (list l = batch index * HKV + head, entry j: l * nblk + j)."""
    lists = batch * ba.HKV
    l, j = np.meshgrid(np.arange(lists), np.arange(nblk), indexing="ij")
    name = {"split": "contig"}.get(name, name.removeprefix("split_"))  # a split layout's page order
    if name == "contig":
        p = l * nblk + j
    elif name == "items":
        p = j * lists + l
    elif name == "heads":
        b, h = l // ba.HKV, l % ba.HKV
        p = b * ba.HKV * nblk + j * ba.HKV + h
    elif name.startswith("engine:"):  # the engine's pool, as bench_kv_layout left it
        if not args.layout_file:
            raise SystemExit("engine layouts need --layout-file")
        with open(args.layout_file) as f:
            doc = json.load(f)
        found = [s for s in doc["scenarios"] if s["name"] == name.split(":", 1)[1]]
        if not found or doc["page_bytes"] != 2 * ba.BLK * ba.D * 2:
            raise SystemExit(f"{name}: no such scenario in {args.layout_file}, or its pages are not {ba.BLK} x {ba.D}")
        p = np.array(found[0]["lists"], dtype=np.int64)
        if p.shape != (lists, nblk):
            raise SystemExit(f"{name}: {p.shape[0]} lists of {p.shape[1]} pages, not {lists} of {nblk}")
    elif name == "random":
        p = np.random.default_rng(48).permutation(lists * nblk).reshape(lists, nblk)
    else:
        raise SystemExit(f"unknown layout {name}")
    return p.reshape(-1).astype(np.int32)


results = []
for shape in args.shapes.split(","):
    batch, ctx = (int(x) for x in shape.split("x"))
    torch.manual_seed(batch * 1000003 + ctx)
    q, k, v, pool, out = ba.decode_tensors(batch, ctx)
    q4 = q.view(batch, ba.HQ, 1, ba.D)
    k_bshd = k.transpose(1, 2).contiguous().transpose(1, 2)  # same values, [batch, seq, head, dim] in memory
    v_bshd = v.transpose(1, 2).contiguous().transpose(1, 2)
    runs = {"cudnn": ba.sdpa_decode(q4, k, v, SDPBackend.CUDNN_ATTENTION)}
    ref = runs["cudnn"]().reshape(batch, -1).clone()
    errs = {}
    try:
        runs["cudnn_bshd"] = ba.sdpa_decode(q4, k_bshd, v_bshd, SDPBackend.CUDNN_ATTENTION)
        errs["cudnn_bshd"] = ba.rel_err(runs["cudnn_bshd"]().reshape(batch, -1), ref)
    except RuntimeError as e:  # cuDNN may refuse the strided layout: say so, time the rest
        print(f"cuDNN on [batch, seq, head, dim]: {e}".splitlines()[0])
        runs.pop("cudnn_bshd", None)
    keep, decs, env = [], [], {}
    flat = pool.view(pool.shape[0], -1)
    for name in args.layouts.split(","):
        phys = layout_pages(name, batch, ctx // ba.BLK)
        d_phys = torch.from_numpy(phys).cuda()
        # An engine layout's pool spans its highest page, as the engine's pool does (most of it unused).
        lpool = torch.empty((max(pool.shape[0], int(phys.max()) + 1),) + tuple(pool.shape[1:]), dtype=pool.dtype,
                            device=pool.device)
        split = name.startswith("split")
        if split:  # [K or V, page, row, dim]
            halves = lpool.view(2, lpool.shape[0], -1)
            for kv in range(2):
                halves[kv][d_phys.long()] = pool[:, kv].reshape(pool.shape[0], -1)
        else:
            lpool.view(lpool.shape[0], -1)[d_phys.long()] = flat
        lout = torch.empty_like(out)
        dec = ba.DenseDecode(lib, q, lpool, lout, batch, ctx, variant=args.variant)
        dec.meta[2] = d_phys  # the list entries' pages
        dec.args.pages = d_phys.data_ptr()
        env[name] = "1" if split else "0"
        os.environ["HS_EXP_KV_SPLIT"] = env[name]
        lout.fill_(float("nan"))
        dec()
        torch.cuda.synchronize()
        errs[name] = ba.rel_err(lout, ref)
        runs[name] = dec
        keep.append((lpool, lout))
        decs.append(dec)
    del pool
    torch.cuda.empty_cache()
    t = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            os.environ["HS_EXP_KV_SPLIT"] = env.get(name, "0")
            t[name].append(ba.median_time_ms(runs[name], flush="read") * 1e3)
    med = {name: float(np.median(x)) for name, x in t.items()}
    print(f"\n{batch} x {ctx}: {args.rounds} rounds, us (median of the rounds), rel err against cuDNN")
    for name in names:
        print(f"  {name:>11} {med[name]:8.1f}   rel err {errs.get(name, 0.0):.1e}   rounds "
              + " ".join(f"{x:.1f}" for x in t[name]), flush=True)
    results.append({"batch": batch, "ctx": ctx, "us": med, "rounds_us": t, "rel_err": errs})
    for dec in decs:
        dec.free()
    del keep, decs, runs, k_bshd, v_bshd
    torch.cuda.empty_cache()
if args.json:
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "results": results}, f, indent=1)
