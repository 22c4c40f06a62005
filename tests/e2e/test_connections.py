"""Connections: clients that stall while sending their request hold a thread each but keep nobody
else waiting, and the listening socket takes bursts of connections (its backlog)."""
import shutil
import socket
import subprocess
import time

import pytest
import requests


def test_stalled_clients_do_not_block_others(make_server, model_name):
    # Before the HTTP threads grew on demand, this server had max_seqs + max_queue + 64 = 69 of
    # them: 100 clients stalled mid-header took every one, and /health waited for the read timeout.
    s = make_server("--max-seqs", "2", "--max-queue", "3")
    stalled = []
    try:
        for _ in range(100):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            stalled.append(c)
        assert requests.get(s.url + "/health", timeout=10).status_code == 200
        r = requests.post(s.url + "/v1/completions", json={"model": model_name, "prompt": "Hi", "max_tokens": 2},
                          timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
        # The stalled connections are held (each by a thread of its own), not refused or queued
        # (a thread just started may take a moment to pick its connection up).
        deadline = time.time() + 10
        while True:
            m = s.metrics()
            if m["headshard_http_threads_busy"] >= 100 and m["headshard_http_connections_queued"] == 0:
                break
            assert time.time() < deadline, m
            time.sleep(0.05)
        assert m["headshard_http_threads"] >= m["headshard_http_threads_busy"]
    finally:
        for c in stalled:
            c.close()
    assert requests.get(s.url + "/health", timeout=10).status_code == 200


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the listen backlog")
def test_listen_backlog_takes_bursts(server):
    # httplib listens with a backlog of 5; the server deepens it to the system's most (SOMAXCONN,
    # 4096 on Linux 5.4 and later, 128 before), so that a burst of clients is not dropped.
    out = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out and out[0] == "LISTEN", out
    assert int(out[2]) >= 128, out  # Send-Q of a listening socket: its backlog
