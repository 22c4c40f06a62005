"""32 concurrent requests with different lengths and parameters all finish, and each greedy
output equals the same request served alone; so do 8 streams on a pool too small for them, which
the scheduler must preempt and recompute."""
import json
from concurrent.futures import ThreadPoolExecutor

import requests

PROMPTS = [
    "The quick brown fox",
    "In the beginning",
    "Here is a recipe for pancakes:",
    "def fibonacci(n):",
    "The three primary colors are",
    "Dear diary, today",
    "A haiku about autumn:",
    "The largest planet in the solar system",
]


def make_requests(model_name):
    """32 greedy requests: completions and chats, streaming or not, various lengths, penalties, stops."""
    reqs = []
    for i in range(32):
        prompt = PROMPTS[i % len(PROMPTS)] + (" " + "and then " * (i % 5) if i % 3 else "")
        body = {"model": model_name, "temperature": 0, "max_tokens": 4 + (i * 7) % 13}
        if i % 4 == 1:
            body["repetition_penalty"] = 1.3
        if i % 4 == 2:
            body["presence_penalty"] = 0.8
            body["frequency_penalty"] = 0.4
        if i % 5 == 3:
            body["stop"] = [".", "\n"]
        if i % 6 == 4:
            body["top_k"] = 1  # greedy by another road; sampling params must not matter then
            body["temperature"] = 0.9
        if i % 7 == 5:
            body["logit_bias"] = {"13": -100}
        if i % 2:
            body["messages"] = [{"role": "user", "content": prompt}]
            path = "/v1/chat/completions"
        else:
            body["prompt"] = prompt
            path = "/v1/completions"
        body["stream"] = i % 3 == 0
        reqs.append((path, body))
    return reqs


def run(server, path, body):
    """(text, finish_reason, completion_tokens) of one request, streamed or not."""
    if not body["stream"]:
        r = requests.post(server.url + path, json=body, timeout=600)
        assert r.status_code == 200, r.text
        j = r.json()
        c = j["choices"][0]
        text = c["message"]["content"] if "message" in c else c["text"]
        return text, c["finish_reason"], j["usage"]["completion_tokens"]
    body = dict(body, stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    with requests.post(server.url + path, json=body, timeout=600, stream=True) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines(decode_unicode=False) if ln]
    assert lines[-1] == b"data: [DONE]"
    for ln in lines[:-1]:
        assert ln.startswith(b"data: ")
        chunk = json.loads(ln[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]["completion_tokens"]
            continue
        c = chunk["choices"][0]
        text += (c["delta"].get("content") or "") if "delta" in c else c["text"]
        finish = c["finish_reason"] or finish
    return text, finish, usage


def test_concurrent_requests_equal_served_alone(server, model_name):
    reqs = make_requests(model_name)
    with ThreadPoolExecutor(max_workers=32) as pool:
        together = list(pool.map(lambda pb: run(server, *pb), reqs))
    alone = [run(server, path, body) for path, body in reqs]
    for i, (t, a) in enumerate(zip(together, alone)):
        assert t == a, f"request {i} ({reqs[i]}): concurrent {t!r} != alone {a!r}"
        assert t[1] in ("stop", "length")
        assert t[2] <= reqs[i][1]["max_tokens"]
    m = server.metrics()
    assert m["headshard_requests_running"] == 0
    assert m["headshard_requests_waiting"] == 0
    assert m["headshard_kv_pages_used"] == 0


def test_preempted_streams_equal_served_alone(make_server, model_name):
    # Pages of 64 tokens for one (layer, KV head); SmolLM2 has 30 x 3. Each stream (a prompt of about
    # 10 tokens, 90 more) takes 90 pages, then 180 once past token 64: 1,440 for the 8, in a pool of
    # 1,152 (a request is admitted when it fits alone with a prefill chunk's room: 1,080). The pool
    # runs short as they grow; the newest is preempted and recomputed, and its stream goes on.
    s = make_server("--kv-memory", "36M", "--max-seqs", "8", "--ctx-size", "512")
    assert s.metrics()["headshard_kv_pages_total"] == 1152
    reqs = [("/v1/completions", {"model": model_name, "prompt": f"{p} (part {i})", "max_tokens": 90,
                                 "temperature": 0, "ignore_eos": True, "stream": True})
            for i, p in enumerate(PROMPTS)]
    with ThreadPoolExecutor(max_workers=len(reqs)) as pool:
        together = list(pool.map(lambda pb: run(s, *pb), reqs))
    assert s.metrics()["headshard_preemptions_total"] > 0
    alone = [run(s, path, dict(body, stream=False)) for path, body in reqs]
    for i, (t, a) in enumerate(zip(together, alone)):
        assert t == a and t[2] == 90, f"request {i}: streamed with preemptions {t!r} != alone {a!r}"
    m = s.metrics()
    assert m["headshard_requests_running"] == 0 and m["headshard_kv_pages_used"] == 0
