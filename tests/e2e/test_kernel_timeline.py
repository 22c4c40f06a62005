"""scripts/kernel_timeline.py on a hand-made kernel trace whose step times are worked out below."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

EMBED = "void hs::cuda::(anonymous namespace)::embed_kernel<__half>(int const*, __half const*, int, float, float*)"
GEMV = "void hs::cuda::(anonymous namespace)::gemv_kernel<__half, 1, 2, 4, __half>(uint4 const*, uint4 const*, int)"
NORM = "hs::cuda::residual_norm_kernel(float*, float const*)"


def run_timeline(tmp_path, kernels, *args):
    """Writes (start, end, name) kernels as a trace (in reverse: the script orders them by start),
    runs the script on it with args, and returns its JSON and what it printed."""
    trace = tmp_path / "trace.tsv"
    with open(trace, "w") as f:
        f.write("start_ns\tend_ns\tstream\tgraph_node\tgrid\tblock\tregisters\tshared\tname\n")
        for s, e, name in reversed(kernels):
            f.write(f"{s}\t{e}\t7\t0\t1x1x1\t256\t32\t0\t{name}\n")
    out = tmp_path / "timeline.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "kernel_timeline.py"), str(trace), *args,
                           "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text()), done.stdout


def test_steps_spans_idle_and_leads(tmp_path):
    # A prefill step (4 kernels, left out: the decode steps' 3 is the common count), then four
    # decode steps of embed, GEMV, norm; --skip 1 drops the first.
    kernels = [
        (0, 1000, EMBED), (1000, 5000, "prefill_kernel_x()"), (5000, 6000, "prefill_kernel_y()"), (6000, 7000, NORM),
        (10000, 10500, EMBED), (10600, 12600, GEMV), (12500, 13000, NORM),
        # span 3000, busy 400 + 2500 (the norm starts 100 before the GEMV ends), idle 100
        (20000, 20400, EMBED), (20500, 22500, GEMV), (22400, 23000, NORM),
        # span 3200, busy 600 + 2200 + 200, idle 200; 7000 after the step before
        (30000, 30600, EMBED), (30700, 32900, GEMV), (33000, 33200, NORM),
        # as the first kept step; 6800 after the step before
        (40000, 40400, EMBED), (40500, 42500, GEMV), (42400, 43000, NORM),
    ]
    r, stdout = run_timeline(tmp_path, kernels, "--skip", "1")
    assert r["kernels_per_step"] == 3 and r["steps"] == 3
    s = r["summary_us"]
    assert s["span"] == pytest.approx(3.0) and s["busy"] == pytest.approx(2.9) and s["idle"] == pytest.approx(0.1)
    assert s["kernels"] == pytest.approx(3.0)
    assert s["gap_after"] == pytest.approx(6.9)  # median of 7000 and 6800 ns; the last step has none
    by_name = {k["name"]: k for k in r["kernels"]}
    assert list(by_name) == ["embed_kernel<__half>", "gemv_kernel<__half, 1, 2, 4, __half>", "residual_norm_kernel"]
    assert by_name["embed_kernel<__half>"]["us_per_step"] == pytest.approx(0.4)
    assert by_name["embed_kernel<__half>"]["lead_us"] is None
    gemv = by_name["gemv_kernel<__half, 1, 2, 4, __half>"]
    assert gemv["us_per_step"] == pytest.approx(2.0) and gemv["lead_us"] == pytest.approx(0.1)
    norm = by_name["residual_norm_kernel"]
    assert norm["us_per_step"] == pytest.approx(0.6) and norm["lead_us"] == pytest.approx(-0.1)
    # What each adds to its step's end (kept steps: 400/2100/500, 600/2300/300, 400/2100/500 ns).
    assert [k["adds_us"] for k in by_name.values()] == pytest.approx([0.4, 2.1, 0.5])
    assert "span 3.0" in stdout and "residual_norm_kernel" in stdout


def test_runs_split_at_prefill_steps(tmp_path):
    # Two reps, each a prefill step (a kernel named like the prefill attention) then three decode
    # steps; --skip 1 drops each rep's first decode step. The second rep's GEMV runs 1000 ns longer.
    kernels = []
    t = 0
    for gemv_ns in (2000, 3000):
        kernels += [(t, t + 500, EMBED), (t + 500, t + 4500, "void hs::kernels::prefill_wgmma_kernel<128>()")]
        t += 10000
        for _ in range(3):
            kernels += [(t, t + 400, EMBED), (t + 500, t + 500 + gemv_ns, GEMV), (t + 600 + gemv_ns, t + 1100 + gemv_ns, NORM)]
            t += 10000
    r, stdout = run_timeline(tmp_path, kernels, "--skip", "1")
    assert r["steps"] == 4
    runs = r["runs"]
    assert [x["steps"] for x in runs] == [2, 2]
    # Spans: 400 + 100 + GEMV + 100 + 500 ns; adds: embed 400, GEMV 100 + its duration, norm 600.
    assert [x["span_us"] for x in runs] == pytest.approx([3.1, 4.1])
    assert runs[0]["adds_us"] == pytest.approx([0.4, 2.1, 0.6]) and runs[1]["adds_us"] == pytest.approx([0.4, 3.1, 0.6])
    assert "2 runs; median span, us: 3.1 (2 steps), 4.1 (2 steps)" in stdout
