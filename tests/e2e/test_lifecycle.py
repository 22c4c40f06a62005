"""The server's life: /health answers 503 while the model loads, then 200; SIGTERM stops
accepting (503), lets running requests finish within --grace-seconds, and exits 0."""
import json
import os
import signal
import socket
import threading
import time

import requests

from test_errors import check_error, send


def test_loading_then_ready_then_draining(make_server, model_name):
    s = make_server("--grace-seconds", "20", ready=False)
    # The server listens before the model is loaded.
    r = requests.get(s.url + "/health", timeout=10)
    if r.status_code == 503:
        assert r.json()["status"] == "loading"
        check_error(send(s, "POST", "/v1/completions", {"prompt": "x"}), 503, "loading")
    s.wait_ready()

    # A stream in progress when SIGTERM comes finishes; new requests get 503; the exit is 0.
    body = {"model": model_name, "prompt": "Tell me about the sea.", "max_tokens": 24, "ignore_eos": True,
            "stream": True, "temperature": 0}
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(payload)).encode() +
                 b"\r\n\r\n" + payload)
    received = b""
    while b"data: " not in received:
        received += sock.recv(65536)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    check_error(send(s, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1}), 503, "shutting down")
    assert requests.get(s.url + "/health", timeout=10).status_code == 503

    def read_rest():
        nonlocal received
        while b"data: [DONE]" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data

    reader = threading.Thread(target=read_rest)
    reader.start()
    reader.join(60)
    sock.close()
    assert b"data: [DONE]" in received
    assert b'"finish_reason":"length"' in received
    assert s.proc.wait(timeout=30) == 0
    assert "stopped" in s.log_text()


def test_grace_period_cuts_long_requests(make_server, model_name):
    s = make_server("--grace-seconds", "1")
    body = {"prompt": "Go on forever:", "max_tokens": 3000, "ignore_eos": True}
    result = {}

    def long_request():
        try:
            result["r"] = requests.post(s.url + "/v1/completions", json=body, timeout=60)
        except requests.ConnectionError as e:
            result["error"] = e

    t = threading.Thread(target=long_request)
    t.start()
    deadline = time.time() + 10
    while time.time() < deadline and s.metrics()["headshard_requests_running"] < 1:
        time.sleep(0.05)
    started = time.time()
    os.kill(s.proc.pid, signal.SIGTERM)
    assert s.proc.wait(timeout=30) == 0
    assert time.time() - started < 15
    t.join(30)
    # The cut request was told why (or its connection closed as the server went away).
    r = result.get("r")
    print("cut request:", r.status_code if r is not None else result.get("error"))
    if r is not None:
        check_error(r, 503, "shutting down")
