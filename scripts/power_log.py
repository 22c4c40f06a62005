#!/usr/bin/env python3
"""Board power and SM clock per timed run, from an nvidia-smi log and a file of run marks.

  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.sw_power_cap \\
      --format=csv,noheader -lms 100 > power.csv &
  echo "$(date +%s.%N) start NAME" >> marks.tsv; ...; echo "$(date +%s.%N) end NAME" >> marks.tsv
  python3 scripts/power_log.py power.csv marks.tsv [--min-watts 250] [--json power.json]

For each run (a start and an end mark of one name, in that order) it prints the samples taken
between them above --min-watts (the idle ones, while a program loads or synthesizes its model,
left out), their median and largest power, the median and lowest SM clock, and how many had the
software power cap active. An H200 at its 700 W limit lowers the SM clock, and every kernel of a
batch-1 decode step slows with it (kernels/NOTES.md, session 31). The log's timestamps are the
machine's local time, as the marks' epoch seconds are read here; lines that do not parse (an
nvidia-smi error, a cut last line) are skipped.
"""
import argparse
import csv
import datetime
import json
import statistics
import sys


def read_samples(path):
    """(epoch seconds, SM clock MHz, power W, cap active) per parseable line of the log."""
    samples = []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            try:
                t = datetime.datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
                samples.append((t, float(row[1].split()[0]), float(row[2].split()[0]), row[3].strip() == "Active"))
            except (IndexError, ValueError):
                continue
    return samples


def read_runs(path):
    """[(name, start, end)] in the order the runs started."""
    starts, runs = {}, []
    with open(path) as f:
        for line in f:
            parts = line.split(maxsplit=2)
            if len(parts) != 3:
                continue
            t, what, name = float(parts[0]), parts[1], parts[2].strip()
            if what == "start":
                starts[name] = t
            elif what == "end" and name in starts:
                runs.append((name, starts.pop(name), t))
    return sorted(runs, key=lambda r: r[1])


def summarize(samples, runs, min_watts):
    out = []
    for name, start, end in runs:
        sel = [s for s in samples if start <= s[0] <= end and s[2] > min_watts]
        row = {"run": name, "seconds": round(end - start, 3), "samples": len(sel)}
        if sel:
            watts, clocks = [s[2] for s in sel], [s[1] for s in sel]
            row.update({"power_median_w": statistics.median(watts), "power_max_w": max(watts),
                        "sm_clock_median_mhz": statistics.median(clocks), "sm_clock_min_mhz": min(clocks),
                        "power_cap_samples": sum(s[3] for s in sel)})
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("marks")
    ap.add_argument("--min-watts", type=float, default=250.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = summarize(read_samples(args.log), read_runs(args.marks), args.min_watts)
    print(f"{'run':<28} {'s':>7} {'samples':>8} {'W median':>9} {'W max':>7} {'MHz median':>11} {'MHz min':>8} {'capped':>7}")
    for r in rows:
        if r["samples"]:
            print(f"{r['run']:<28} {r['seconds']:>7.1f} {r['samples']:>8} {r['power_median_w']:>9.0f} "
                  f"{r['power_max_w']:>7.0f} {r['sm_clock_median_mhz']:>11.0f} {r['sm_clock_min_mhz']:>8.0f} "
                  f"{r['power_cap_samples']:>7}")
        else:
            print(f"{r['run']:<28} {r['seconds']:>7.1f} {0:>8}  (no sample above {args.min_watts:.0f} W)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"min_watts": args.min_watts, "runs": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
