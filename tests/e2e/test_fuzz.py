"""Seeded random requests: valid ones mutated field by field (wrong types, extreme numbers, odd
strings, unknown fields, nested junk, truncated or deeply nested bodies). Whatever comes in, the
answer is a documented status (200, 400, 404 or 413) with a well-formed body, the server keeps
serving, and once all is answered every KV page is back in the pool."""
import json
import random
import time

import requests

BASES = [("/v1/completions", {"prompt": "Once upon", "max_tokens": 4}),
         ("/v1/chat/completions", {"messages": [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": "hi"}], "max_tokens": 4}),
         ("/tokenize", {"content": "hello"}), ("/detokenize", {"tokens": [1, 2, 3]})]
FIELDS = ["prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
          "presence_penalty", "frequency_penalty", "repetition_penalty", "seed", "stop", "n", "stream",
          "stream_options", "logprobs", "top_logprobs", "logit_bias", "ignore_eos", "model", "user", "suffix",
          "best_of", "echo", "response_format", "tools", "tool_choice", "content", "tokens", "add_special",
          "min_tokens", "stop_token_ids", "add_generation_prompt", "service_tier"]
NUMBERS = [0, 1, -1, 2, 3, 7, 64, 255, 49151, 49152, 8192, 8193, 2**31 - 1, 2**31, -2**31 - 1, 2**63 - 1,
           2**64 - 1, -2**63, 0.0, -0.0, 0.5, 1e-300, 1e308, -1e308, 1.0000001, 2.5, 1e-45]
STRINGS = ["", "default", "text", "json_object", "auto", "none", "\ud800\udfff\u0000\uffff", "\U0010ffff\u202e",
           "<|im_start|>user\n<|im_end|>", "{{ raise }}{% for %}", "\n" * 50, "x" * 20000]


def value(rnd, depth=0):
    k = rnd.randrange(11)
    if k == 0:
        return rnd.choice([None, True, False])
    if k == 1:
        return rnd.choice(NUMBERS)
    if k == 2:
        return rnd.choice(STRINGS)
    if k == 3:
        return "".join(chr(rnd.randrange(32, 0x3000)) for _ in range(rnd.randrange(40)))
    if k == 4 and depth < 3:
        return [value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    if k == 5 and depth < 3:
        return {rnd.choice(FIELDS + ["role", "type", "text", "include_usage"]): value(rnd, depth + 1)
                for _ in range(rnd.randrange(4))}
    if k == 6:
        return [{"role": rnd.choice(["user", "system", "assistant", "tool", "developer", "x"]),
                 "content": value(rnd, depth + 1) if rnd.random() < 0.3 else rnd.choice(STRINGS)}
                for _ in range(rnd.randrange(5))]
    if k == 7:
        return [rnd.randrange(-5, 60000) for _ in range(rnd.randrange(6))]
    if k == 8:
        return {str(rnd.randrange(-3, 60000)): rnd.choice([-100, 100, 0, 5.5, 1e9, "x"]) for _ in range(3)}
    if k == 9:
        return [{"type": rnd.choice(["text", "image_url"]), "text": rnd.choice(STRINGS)} for _ in range(2)]
    return rnd.randrange(-10, 20)


def request(rnd):
    path, base = rnd.choice(BASES)
    body = json.loads(json.dumps(base))
    for _ in range(rnd.randrange(1, 5)):
        if rnd.random() < 0.2 and body:
            body.pop(rnd.choice(list(body)))
        else:
            body[rnd.choice(FIELDS + list(body))] = value(rnd)
    # Keep generation short: the point is the parsing and the paths, not long outputs.
    for key, cap in (("max_tokens", 8), ("max_completion_tokens", 8), ("n", 3)):
        v = body.get(key)
        if type(v) is int and v > cap:
            body[key] = cap
    if type(body.get("max_tokens")) is not int and type(body.get("max_completion_tokens")) is not int:
        body["max_tokens"] = 8
    raw = json.dumps(body, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass")
    r = rnd.random()
    if r < 0.04:
        raw = raw[: rnd.randrange(len(raw) + 1)]  # truncated, perhaps inside a UTF-8 sequence
    elif r < 0.06:
        raw = b"[" * rnd.choice([100, 10000, 200000]) + b"]" * rnd.choice([0, 100])
    elif r < 0.07:
        raw = b'{"prompt": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}"
    return path, raw, body


def check_answer(resp, streamed: bool, what: str):
    assert resp.status_code in (200, 400, 404, 413), f"{what}: {resp.status_code} {resp.text[:300]}"
    if resp.status_code != 200:
        error = resp.json()["error"]
        assert error["message"] and error["type"], what
    elif streamed:
        events = [line for line in resp.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "data: [DONE]", f"{what}: {resp.text[-300:]}"
        for e in events[:-1]:
            json.loads(e[len("data: "):])
    else:
        json.loads(resp.text)


def test_random_requests(server):
    rnd = random.Random(50)
    session = requests.Session()
    statuses = {}
    for i in range(1000):
        path, raw, body = request(rnd)
        streamed = body.get("stream") is True and path.startswith("/v1/")
        resp = session.post(server.url + path, data=raw, headers={"Content-Type": "application/json"},
                            timeout=120)
        check_answer(resp, streamed, f"request {i} to {path}: {raw[:300]!r}")
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
    # Both kinds of answer came up often: the mutations reach the engine, not only the parser.
    assert statuses.get(200, 0) >= 50 and statuses.get(400, 0) >= 50, statuses
    ok = requests.post(server.url + "/v1/completions", json={"prompt": "Hello", "max_tokens": 2, "ignore_eos": True},
                       timeout=60)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
    deadline = time.time() + 30
    while time.time() < deadline:
        m = server.metrics()
        if m["headshard_kv_pages_used"] == 0 and m["headshard_requests_running"] == 0:
            break
        time.sleep(0.1)
    assert m["headshard_kv_pages_used"] == 0 and m["headshard_requests_running"] == 0, m
