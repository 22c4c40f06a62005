#!/usr/bin/env python3
"""How `headshard serve` copes with awkward connections: it starts the server on a free port and
measures (1) how long GET /health takes while N clients hold connections stalled mid-header,
(2) connection latencies of a burst of M clients connecting at once (a listen backlog that
overflows shows as attempts repeated after a second), and (3) how long a client that announces a
body over --max-body-bytes and sends almost none waits for its 413. Prints a table and writes JSON.

  .venv/bin/python scripts/http_probe.py [--bin build/headshard] [--stalled 300] [--burst 400] [--out DIR]
(on the default model, from models/ or HEADSHARD_MODELS_DIR, as the end-to-end tests)
"""
import argparse
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import Server  # noqa: E402  (the end-to-end tests' server: starts it, waits for it, reads /metrics)


def stalled_health(port, url, n):
    held = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        held.append(c)
    time.sleep(0.5)
    t = time.perf_counter()
    status = requests.get(url + "/health", timeout=120).status_code
    took = time.perf_counter() - t
    for c in held:
        c.close()
    return {"stalled": n, "health_s": took, "health_status": status}


def burst(port, n):
    lat = [0.0] * n
    gate = threading.Barrier(n)

    def one(i):
        gate.wait()
        t = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while c.recv(4096):
                pass
        lat[i] = time.perf_counter() - t

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    return {"clients": n, "median_s": statistics.median(lat), "p99_s": lat[int(0.99 * (n - 1))], "max_s": lat[-1],
            "over_0.9_s": sum(x > 0.9 for x in lat)}


def short_body(port):
    with socket.create_connection(("127.0.0.1", port), timeout=120) as c:
        t = time.perf_counter()
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{")
        first = c.recv(4096).split(b"\r\n")[0].decode(errors="replace")
        return {"response": first, "took_s": time.perf_counter() - t}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "build" / "headshard"))
    ap.add_argument("--stalled", type=int, default=300)
    ap.add_argument("--burst", type=int, default=400)
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    os.environ["HEADSHARD_BIN"] = args.bin  # the default model: models/ or HEADSHARD_MODELS_DIR
    server = Server("--max-body-bytes", "4K").wait_ready()
    try:
        res = {"binary": args.bin, "stalled": stalled_health(server.port, server.url, args.stalled)}
        time.sleep(1)
        res["burst"] = burst(server.port, args.burst)
        res["short_body"] = short_body(server.port)
        res["metrics"] = {k: v for k, v in server.metrics().items() if k.startswith(("headshard_http_threads",
                                                                                     "headshard_http_conn"))}
    finally:
        server.close()
    s, b, o = res["stalled"], res["burst"], res["short_body"]
    rows = [(f"/health with {s['stalled']} stalled clients", f"{s['health_s']:.3f} s (HTTP {s['health_status']})"),
            (f"burst of {b['clients']} connections", f"median {b['median_s']:.3f} s, p99 {b['p99_s']:.3f} s, "
             f"max {b['max_s']:.3f} s, {b['over_0.9_s']} over 0.9 s"),
            ("100 MB announced, 1 byte sent", f"{o['response']} after {o['took_s']:.3f} s")]
    for name, value in [("probe", "result")] + rows:
        print(f"{name:<40} {value}")
    out = Path(args.out) / "http_probe.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
