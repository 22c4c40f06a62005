"""scripts/loadtest.py against the real server: its client processes' results add up."""
import json
import subprocess
import sys

from conftest import ROOT


def test_workers_report_every_request_once(server, tmp_path):
    # 6 requests of exactly 4 tokens from 2 client processes (3 each, one at a time in each).
    cmd = [sys.executable, str(ROOT / "scripts" / "loadtest.py"), "--base-url", server.url, "--num-prompts", "6",
           "--max-concurrency", "2", "--workers", "2", "--random-input-len", "8", "--random-output-len", "4",
           "--ignore-eos", "--save-result", "--result-dir", str(tmp_path), "--result-filename", "r.json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["completed"] == 6 and r["failed"] == 0
    assert r["max_concurrency"] == 2
    assert r["total_output_tokens"] == 24
    assert r["output_lens"] == [4] * 6
    # 4 tokens, at most 3 gaps (fewer when a token's text waits for the next one's, as a partial
    # character does)
    assert len(r["itls"]) == 6 and all(1 <= len(x) <= 3 for x in r["itls"])
    assert r["duration"] > 0 and r["request_throughput"] == 6 / r["duration"]
    m = server.metrics()
    assert m["headshard_requests_running"] == 0
