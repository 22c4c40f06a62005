#!/usr/bin/env python3
"""Where a step's GPU time goes, from the kernel trace of tests/bench/kernel_trace.cpp.

    CUDA_INJECTION64_PATH=$PWD/.device/pkg/lib/libhs_kernel_trace.so HS_KERNEL_TRACE=trace.tsv \\
        .device/pkg/bench_generate --model synthetic:llama-3.1-8b --plan dense --batch 1 ...
    python3 scripts/kernel_timeline.py trace.tsv [--marker embed_kernel] [--skip 5] [--json out.json]

A step starts at each kernel whose name matches --marker (the token embedding: every forward
pass begins with it). Only the steps with the most common kernel count are kept (the decode
steps; prefill steps launch other kernels). They fall into runs: a step with a kernel whose name
matches --run-marker (a prefill, such as each rep of bench_generate begins with) ends a run. The
first --skip steps of each run are dropped (warm-up: the first steps of a run capture their graphs).
For each kept step: its span (first kernel's start to last kernel's end), the time some kernel
ran (the union of the kernels' intervals), the idle time inside the span, the sum of the kernels'
durations (more than the busy time where programmatic launches overlap), and the gap to the next
step's first kernel (the host between steps). Then, per kernel (name and grid, in step order): its
calls a step, the median time of those calls summed over a step, the median "lead": its start
minus the previous kernel's end (negative: it started before that kernel ended), and what it
"adds" to the step: how far its end lies past every earlier end (the first kernel: its duration),
summed over a step. The adds sum to the span; where programmatic launches start a kernel early to
wait, they say what each kernel costs the step better than its duration does. The table lists the
kernels by their adds. Copies and memsets (the trace names them "[memcpy HtoD]" and so on) are
rows like kernels. With more than one run, each run's median span and its kernels' adds follow, to
compare the runs (session 30 saw the second of three reps run 5% slower on one machine).
"""
import argparse
import json
import re
import statistics
from collections import Counter


def read_trace(path):
    rows = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            v = dict(zip(header, line.rstrip("\n").split("\t")))
            rows.append({"start": int(v["start_ns"]), "end": int(v["end_ns"]), "grid": v["grid"], "name": v["name"]})
    rows.sort(key=lambda r: r["start"])
    return rows


def short_name(name):
    """The function's name without namespaces, return type or parameters; template arguments kept."""
    name = re.sub(r"\(anonymous namespace\)::|[A-Za-z_][A-Za-z_0-9]*::", "", name)
    return name.removeprefix("void ").split("(")[0]


def split_steps(rows, marker):
    pat = re.compile(marker)
    steps = []
    for r in rows:
        if pat.search(r["name"]) or not steps:
            steps.append([])
        steps[-1].append(r)
    return steps


def busy_ns(step):
    total, cur_s, cur_e = 0, None, None
    for r in sorted(step, key=lambda r: r["start"]):
        if cur_e is None or r["start"] > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = r["start"], r["end"]
        else:
            cur_e = max(cur_e, r["end"])
    return total + (cur_e - cur_s if cur_e is not None else 0)


def adds_ns(step):
    """Per record of a step: how far its end lies past every earlier end (the first: its duration)."""
    out, latest = [], None
    for r in step:
        out.append(r["end"] - r["start"] if latest is None else max(0, r["end"] - latest))
        latest = r["end"] if latest is None else max(latest, r["end"])
    return out


def median_us(ns):
    ns = [x for x in ns if x is not None]
    return statistics.median(ns) / 1e3 if ns else None


def runs_of(steps, count, marker, skip):
    """Runs of the steps of `count` kernels between the steps with a kernel matching `marker`, each
    less its first `skip` steps; empty runs dropped."""
    pat = re.compile(marker)
    runs, cur = [], []
    for i, s in enumerate(steps):
        if any(pat.search(r["name"]) for r in s):
            runs.append(cur[skip:])
            cur = []
        elif len(s) == count:
            cur.append(i)
    runs.append(cur[skip:])
    return [r for r in runs if r]


def kernel_stats(steps, idx, calls):
    """Per kernel of `calls` ((name, grid) -> positions in a step), over the steps idx: its calls, the
    median of its summed durations, of its leads and of its summed adds."""
    adds = {i: adds_ns(steps[i]) for i in idx}
    out = []
    for key, pos in calls.items():
        totals = [sum(steps[i][j]["end"] - steps[i][j]["start"] for j in pos) for i in idx]
        leads = [steps[i][j]["start"] - steps[i][j - 1]["end"] for i in idx for j in pos if j > 0]
        out.append({"name": key[0], "grid": key[1], "calls": len(pos), "us_per_step": median_us(totals),
                    "lead_us": median_us(leads), "adds_us": median_us([sum(adds[i][j] for j in pos) for i in idx])})
    return out


def span_ns(step):
    return max(r["end"] for r in step) - step[0]["start"]


def analyse(rows, marker="embed_kernel", skip=5, run_marker="prefill"):
    steps = split_steps(rows, marker)
    if not steps:
        raise SystemExit("no kernels in the trace")
    count = Counter(len(s) for s in steps).most_common(1)[0][0]
    runs = runs_of(steps, count, run_marker, skip)
    idx = [i for r in runs for i in r]
    if not idx:
        raise SystemExit(f"no step of {count} kernels left after skipping {skip} of each run")
    per_step = []
    for i in idx:
        s = steps[i]
        first, last = s[0]["start"], max(r["end"] for r in s)
        busy = busy_ns(s)
        nxt = steps[i + 1][0]["start"] - last if i + 1 < len(steps) else None
        per_step.append({"span": last - first, "busy": busy, "idle": last - first - busy,
                         "kernels": sum(r["end"] - r["start"] for r in s), "gap_after": nxt})
    summary = {k: median_us([p[k] for p in per_step]) for k in ("span", "busy", "idle", "kernels", "gap_after")}
    # Per kernel (short name and grid), in the order of its first call in a step.
    calls = {}  # (name, grid) -> its positions in a step; dicts keep the first call's order
    for j, r in enumerate(steps[idx[0]]):
        calls.setdefault((short_name(r["name"]), r["grid"]), []).append(j)
    per_run = [{"steps": len(r), "span_us": median_us([span_ns(steps[i]) for i in r]),
                "adds_us": [k["adds_us"] for k in kernel_stats(steps, r, calls)]} for r in runs]
    return {"kernels_per_step": count, "steps": len(idx), "summary_us": summary,
            "kernels": kernel_stats(steps, idx, calls), "runs": per_run}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--marker", default="embed_kernel", help="regex of the kernel that starts a step")
    ap.add_argument("--skip", type=int, default=5, help="decode steps to drop first in each run")
    ap.add_argument("--run-marker", default="prefill", help="regex of a kernel whose step ends a run")
    ap.add_argument("--top", type=int, default=40, help="kernels to list, the largest adds first")
    ap.add_argument("--json")
    args = ap.parse_args()
    res = analyse(read_trace(args.trace), args.marker, args.skip, args.run_marker)
    s = res["summary_us"]
    print(f"{res['steps']} steps of {res['kernels_per_step']} kernels; medians in us: span {s['span']:.1f}, "
          f"busy {s['busy']:.1f}, idle {s['idle']:.1f}, kernels' sum {s['kernels']:.1f}"
          + (f", host gap after {s['gap_after']:.1f}" if s["gap_after"] is not None else ""))
    print(f"{'kernel':<60} {'grid':>12} {'calls':>5} {'us/step':>9} {'adds us':>9} {'share':>6} {'lead us':>8}")
    for k in sorted(res["kernels"], key=lambda k: -k["adds_us"])[:args.top]:
        lead = f"{k['lead_us']:8.2f}" if k["lead_us"] is not None else "       -"
        print(f"{k['name'][:60]:<60} {k['grid']:>12} {k['calls']:>5} {k['us_per_step']:9.1f} {k['adds_us']:9.1f} "
              f"{100 * k['adds_us'] / s['span']:5.1f}% {lead}")
    if len(res["runs"]) > 1:
        runs = res["runs"]
        print(f"{len(runs)} runs; median span, us: " + ", ".join(f"{r['span_us']:.1f} ({r['steps']} steps)" for r in runs))
        print(f"{'kernel':<60} {'grid':>12}  adds us by run")
        order = sorted(range(len(res["kernels"])), key=lambda j: -res["kernels"][j]["adds_us"])[:args.top]
        for j in order:
            k = res["kernels"][j]
            print(f"{k['name'][:60]:<60} {k['grid']:>12}  " + " ".join(f"{r['adds_us'][j]:9.1f}" for r in runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
