#!/usr/bin/env python3
"""Session 34 probe (not part of the build; run from the repository root): the wgmma prefill's grid
order (PrefillParams::kv_heads_together = g KV heads at a time), one library, each order timed in
turn (rounds of median_time_ms after a 'read' L2 flush, the order of the g's reversed every other
round). Shapes: one chunk of C queries at the end of an n-token context (the engine prefills in
chunks of 2048), and whole prefills of n tokens (--full). The lists hold what the engine's would:
every page for dense heads; for strided heads (stride 8, local 16 blocks) the pages some query of
the chunk attends. Prints each shape's times, the g the library's rule picks for the lists' bytes
(hs_prefill_kv_heads_together), and whether every order's output is bitwise the same.
32 q / 8 kv heads, D 128, B 64. The rule's column needs the library of 1d170e7, which had
hs_prefill_kv_heads_together (two thirds of the L2; dropped after this probe, call A)."""
import argparse, ctypes, json, sys
import numpy as np
import torch
sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", required=True)
ap.add_argument("--tokens", type=int, nargs="*", default=[8192, 16384, 32768, 131072])
ap.add_argument("--full", type=int, nargs="*", default=[8192, 32768], help="whole prefills of these lengths")
ap.add_argument("--chunk", type=int, default=2048)
ap.add_argument("--orders", type=int, nargs="*", default=[1, 2, 4, 8])
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--json")
args = ap.parse_args()
lib = ba.load_lib(args.lib)
stream = torch.cuda.current_stream().cuda_stream
HQ, HKV, D, BLK, G = ba.HQ, ba.HKV, ba.D, ba.BLK, ba.GROUP
PAGE_BYTES = 2 * BLK * D * 2
dev = lambda x: torch.from_numpy(np.ascontiguousarray(x)).cuda()  # noqa: E731
rows = []


def kept_blocks(sh, first_block, last_block):
    """Blocks some query in blocks [first_block, last_block] attends under sh."""
    sink, local, stride, off = (int(x) for x in sh)
    j = np.arange(last_block + 1)
    keep = (j < sink) | (j > first_block - local) | (((j + off) % stride) == 0)
    return j[keep].astype(np.int32)


shapes = [(n, args.chunk) for n in args.tokens] + [(n, n) for n in args.full]
for n, C in shapes:
    torch.manual_seed(n)
    nblk = n // BLK
    q = torch.randn(C, HQ, D, dtype=torch.bfloat16, device="cuda")
    pool = torch.randn(HKV * nblk, 2, BLK, D, dtype=torch.bfloat16, device="cuda")
    out = torch.empty(C, HQ * D, dtype=torch.bfloat16, device="cuda")
    pos0_h, tok0_h = np.array([n - C], np.int32), np.array([0, C], np.int32)
    pos0, tok0 = dev(pos0_h), dev(tok0_h)
    h = lib.hs_prefill_plan(ba.np_ptr(np.zeros(1, np.int32)), 1, ba.np_ptr(pos0_h), ba.np_ptr(tok0_h), D)
    for plan in ("dense", "strided8"):
        sh = ba.shards_for("dense" if plan == "dense" else "strided", stride=8)
        lists = [kept_blocks(sh[k], (n - C) // BLK, nblk - 1) for k in range(HKV)]
        blocks = np.concatenate(lists)
        pages = np.concatenate([k * nblk + lst for k, lst in enumerate(lists)]).astype(np.int32)
        indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int32)
        d_in, d_bl, d_pg, d_sh = dev(indptr), dev(blocks), dev(pages), dev(sh)
        kv_bytes = int(len(pages)) * PAGE_BYTES
        rule = lib.hs_prefill_kv_heads_together(HKV, kv_bytes)
        a = ba.AttnArgs(q.data_ptr(), out.data_ptr(), pool.data_ptr(), d_in.data_ptr(), d_bl.data_ptr(),
                        d_pg.data_ptr(), pos0.data_ptr(), tok0.data_ptr(), d_sh.data_ptr(), 0, 0, pool.shape[0], 1,
                        0, HKV, G, D, BLK, 0, D ** -0.5)

        def run(g):
            lib.hs_set_variant(0, 0)
            lib.hs_prefill_set_order(h, g)
            rc = lib.hs_prefill_run(h, ctypes.byref(a), ctypes.c_void_p(stream))
            if rc:
                raise RuntimeError(lib.hs_error_string(rc).decode())

        outs = []
        for g in args.orders:
            out.fill_(float("nan"))
            run(g)
            torch.cuda.synchronize()
            outs.append(out.clone())
        same = all(torch.equal(outs[0], o) for o in outs[1:]) and bool(torch.isfinite(outs[0]).all())
        del outs
        ts = {g: [] for g in args.orders}
        for r in range(args.rounds):
            for g in (args.orders if r % 2 == 0 else args.orders[::-1]):
                ts[g].append(ba.median_time_ms(lambda: run(g), flush="read") * 1e3)
        med = {g: float(np.median(t)) for g, t in ts.items()}
        best = min(med, key=med.get)
        kind = "full" if C == n else f"chunk {C}"
        print(f"n {n:6d} {kind:10s} {plan:8s} MiB {kv_bytes / 2**20:6.1f} rule g {rule}  " +
              "  ".join(f"g{g} {med[g]:9.1f}" for g in args.orders) +
              f"  us; rule/best {med.get(rule, float('nan')) / med[best]:.4f}  g1/rule {med[1] / med.get(rule, float('nan')):.4f}"
              f"  outputs equal {same}", flush=True)
        rows.append({"tokens": n, "chunk": C, "plan": plan, "kv_bytes": kv_bytes, "rule": rule, "equal": same,
                     "us": {str(g): med[g] for g in args.orders}, "rounds_us": {str(g): t for g, t in ts.items()}})
    lib.hs_prefill_free(h)
    del q, pool, out
    torch.cuda.empty_cache()
if args.json:
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=1)
