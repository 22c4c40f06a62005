"""Flooding past --max-queue: the excess gets 429 with Retry-After, every accepted request
completes, and the server stays healthy throughout."""
import threading
from concurrent.futures import ThreadPoolExecutor

import requests


def test_flood_past_the_queue(make_server, model_name):
    s = make_server("--max-seqs", "2", "--max-queue", "3")
    n = 24
    body = {"model": model_name, "prompt": "List some numbers:", "max_tokens": 8, "temperature": 0,
            "ignore_eos": True}
    health, stop = [], threading.Event()

    def watch_health():
        while not stop.is_set():
            health.append(requests.get(s.url + "/health", timeout=10).status_code)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            responses = list(pool.map(lambda _: requests.post(s.url + "/v1/completions", json=body, timeout=600),
                                      range(n)))
    finally:
        stop.set()
        watcher.join()

    ok = [r for r in responses if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(rejected) == n, [r.status_code for r in responses]
    assert rejected, "nothing was rejected: the queue limit did not bite"
    assert len(ok) >= 5  # at least max-seqs + max-queue got in
    for r in rejected:
        assert int(r.headers["Retry-After"]) >= 1
        err = r.json()["error"]
        assert err["type"] == "rate_limit_error" and "busy" in err["message"]
    texts = {r.json()["choices"][0]["text"] for r in ok}
    assert len(texts) == 1  # the same greedy request always gives the same text
    for r in ok:
        assert r.json()["choices"][0]["finish_reason"] == "length"
        assert r.json()["usage"]["completion_tokens"] == 8
    assert health and set(health) == {200}

    m = s.metrics()
    assert m['headshard_requests_rejected_total{reason="queue_full"}'] == len(rejected)
    assert m['headshard_requests_finished_total{outcome="length"}'] == len(ok)
    assert m["headshard_requests_running"] == 0 and m["headshard_requests_waiting"] == 0
    assert m['headshard_http_responses_total{code="429"}'] == len(rejected)
