"""Clients that go away: a stream that disconnects mid-generation and a request that leaves
while still queued are cancelled, and their KV pages are back in the pool (seen in /metrics)
within a second."""
import json
import socket
import time

import requests


def wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def open_stream(server, body):
    """A raw HTTP/1.1 streaming request on its own socket; returns the socket once the first
    token chunk has arrived."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    received = b""
    while received.count(b"data: ") < 2:
        data = sock.recv(65536)
        assert data, "the server closed the stream"
        received += data
    assert b" 200 OK" in received.split(b"\r\n", 1)[0]
    return sock


def test_disconnected_stream_frees_its_pages(server, model_name):
    base = server.metrics()
    body = {"model": model_name, "prompt": "Tell me a very long story about a dragon.", "max_tokens": 400,
            "ignore_eos": True, "stream": True, "temperature": 0}
    sock = open_stream(server, body)
    during = server.metrics()
    assert during["headshard_requests_running"] >= 1
    assert during["headshard_kv_pages_used"] > 0
    assert during["headshard_kv_used_bytes"] > 0

    sock.close()
    closed_at = time.time()
    assert wait_for(lambda: server.metrics()["headshard_kv_pages_used"] == 0, 1.0), \
        f"pages still used {time.time() - closed_at:.2f} s after the disconnect"
    m = server.metrics()
    assert m["headshard_requests_running"] == 0
    assert m['headshard_requests_finished_total{outcome="cancelled"}'] >= \
        base['headshard_requests_finished_total{outcome="cancelled"}'] + 1
    # Far fewer than 400 tokens were generated for it.
    assert m["headshard_generation_tokens_total"] - base["headshard_generation_tokens_total"] < 200


def test_disconnect_while_queued_and_non_streaming(make_server, model_name):
    s = make_server("--max-seqs", "1", "--max-queue", "4")
    long_body = {"model": model_name, "prompt": "Count to one thousand:", "max_tokens": 300, "ignore_eos": True,
                 "stream": True}
    running = open_stream(s, long_body)  # takes the only running slot
    # A non-streaming request that waits in the queue, then its client leaves.
    payload = json.dumps({"model": model_name, "prompt": "Hello", "max_tokens": 300}).encode()
    queued = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    queued.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(payload)).encode() +
                   b"\r\n\r\n" + payload)
    assert wait_for(lambda: s.metrics()["headshard_requests_waiting"] == 1, 5.0)
    queued.close()
    assert wait_for(lambda: s.metrics()["headshard_requests_waiting"] == 0, 1.0)
    assert s.metrics()["headshard_requests_running"] == 1  # the stream goes on
    running.close()
    assert wait_for(lambda: s.metrics()["headshard_kv_pages_used"] == 0, 1.0)
    m = s.metrics()
    assert m['headshard_requests_finished_total{outcome="cancelled"}'] == 2
    # Still serving.
    r = requests.post(s.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert r.status_code == 200
