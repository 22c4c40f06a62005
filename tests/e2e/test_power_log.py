"""scripts/power_log.py on a hand-made nvidia-smi log and run marks, with the medians worked out below."""
import datetime
import json
import subprocess
import sys

from conftest import ROOT

T0 = 1_800_000_000.0  # epoch seconds; the log's timestamps are the same instants in local time


def stamp(t):
    return datetime.datetime.fromtimestamp(t).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]


def test_runs_take_the_samples_between_their_marks_above_the_idle_floor(tmp_path):
    log = tmp_path / "power.csv"
    rows = [
        (0.9, "1980 MHz", "600.00 W", "Not Active"),  # before run a
        (1.1, "1980 MHz", "300.00 W", "Not Active"),
        (1.3, "1500 MHz", "700.00 W", "Active"),
        (1.5, "1800 MHz", "650.00 W", "Active"),
        (1.7, "1980 MHz", "100.00 W", "Not Active"),  # idle: under --min-watts
        (2.5, "1980 MHz", "120.00 W", "Not Active"),  # run b: idle only
    ]
    text = "".join(f"{stamp(T0 + dt)}, {c}, {p}, {a}\n" for dt, c, p, a in rows)
    log.write_text(text + "Unable to determine the device handle\n" + stamp(T0 + 3.0) + ", 19")
    marks = tmp_path / "marks.tsv"
    marks.write_text(f"{T0 + 1.0} start a\n{T0 + 2.0} end a\n{T0 + 2.2} start b\n{T0 + 2.8} end b\n"
                     f"{T0 + 2.9} start never_ended\n")
    out = tmp_path / "power.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "power_log.py"), str(log), str(marks),
                           "--json", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [r["run"] for r in runs] == ["a", "b"]
    a, b = runs
    # a: 300, 700, 650 W at 1980, 1500, 1800 MHz; two with the cap.
    assert a["samples"] == 3
    assert a["power_median_w"] == 650.0 and a["power_max_w"] == 700.0
    assert a["sm_clock_median_mhz"] == 1800.0 and a["sm_clock_min_mhz"] == 1500.0
    assert a["power_cap_samples"] == 2
    assert a["seconds"] == 1.0
    assert b["samples"] == 0 and "power_median_w" not in b
    assert "no sample above 250 W" in done.stdout
