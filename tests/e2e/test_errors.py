"""Malformed requests get the documented 4xx with an OpenAI error object, and the server keeps
serving; also API keys (401), the request timeout (408) and the body limit (413)."""
import json
import time

import pytest
import requests

CHAT = [{"role": "user", "content": "hi"}]

# (name, method, path, body (dict, or str sent as is), expected status, a word of the message)
CASES = [
    ("invalid json", "POST", "/v1/completions", "{not json", 400, "JSON"),
    ("body is an array", "POST", "/v1/completions", "[1, 2, 3]", 400, "object"),
    ("empty body", "POST", "/v1/chat/completions", "", 400, "JSON"),
    ("missing prompt", "POST", "/v1/completions", {"max_tokens": 2}, 400, "prompt"),
    ("prompt is a number", "POST", "/v1/completions", {"prompt": 12}, 400, "prompt"),
    ("prompt empty array", "POST", "/v1/completions", {"prompt": []}, 400, "prompt"),
    ("prompt empty string", "POST", "/v1/completions", {"prompt": ""}, 400, "empty"),
    ("token id out of vocab", "POST", "/v1/completions", {"prompt": [1, 99999999]}, 400, "vocabulary"),
    ("mixed prompt array", "POST", "/v1/completions", {"prompt": ["a", {"b": 1}]}, 400, "prompt"),
    ("unknown model", "POST", "/v1/completions", {"model": "gpt-5", "prompt": "x"}, 404, "does not exist"),
    ("max_tokens negative", "POST", "/v1/completions", {"prompt": "x", "max_tokens": -5}, 400, "max_tokens"),
    ("max_tokens a string", "POST", "/v1/completions", {"prompt": "x", "max_tokens": "5"}, 400, "integer"),
    ("over the context", "POST", "/v1/completions", {"prompt": "x", "max_tokens": 100000}, 400, "context length"),
    ("temperature out of range", "POST", "/v1/completions", {"prompt": "x", "temperature": 7}, 400, "temperature"),
    ("top_p zero", "POST", "/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p"),
    ("top_k fractional", "POST", "/v1/completions", {"prompt": "x", "top_k": 2.5}, 400, "top_k"),
    ("min_p negative", "POST", "/v1/completions", {"prompt": "x", "min_p": -0.1}, 400, "min_p"),
    ("presence_penalty too big", "POST", "/v1/completions", {"prompt": "x", "presence_penalty": 9}, 400,
     "presence_penalty"),
    ("repetition_penalty zero", "POST", "/v1/completions", {"prompt": "x", "repetition_penalty": 0}, 400,
     "repetition_penalty"),
    ("n zero", "POST", "/v1/completions", {"prompt": "x", "n": 0}, 400, "n must be"),
    ("stop a number", "POST", "/v1/completions", {"prompt": "x", "stop": 3}, 400, "stop"),
    ("stream a string", "POST", "/v1/completions", {"prompt": "x", "stream": "true"}, 400, "stream"),
    ("stream_options without stream", "POST", "/v1/completions",
     {"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ("logprobs too many", "POST", "/v1/completions", {"prompt": "x", "logprobs": 50}, 400, "logprobs"),
    ("logit_bias bad key", "POST", "/v1/completions", {"prompt": "x", "logit_bias": {"dog": 3}}, 400, "logit_bias"),
    ("logit_bias out of range", "POST", "/v1/completions", {"prompt": "x", "logit_bias": {"5": 500}}, 400,
     "logit_bias"),
    ("seed a string", "POST", "/v1/completions", {"prompt": "x", "seed": "lucky"}, 400, "seed"),
    ("echo", "POST", "/v1/completions", {"prompt": "x", "echo": True}, 400, "echo"),
    ("missing messages", "POST", "/v1/chat/completions", {"max_tokens": 3}, 400, "messages"),
    ("messages not an array", "POST", "/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
    ("message without role", "POST", "/v1/chat/completions", {"messages": [{"content": "hi"}]}, 400, "role"),
    ("message bad role", "POST", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 400,
     "role"),
    ("message content a number", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 1}]},
     400, "content"),
    ("image content", "POST", "/v1/chat/completions",
     {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}, 400,
     "text"),
    ("top_logprobs without logprobs", "POST", "/v1/chat/completions", {"messages": CHAT, "top_logprobs": 2}, 400,
     "logprobs"),
    ("tools", "POST", "/v1/chat/completions", {"messages": CHAT, "tools": [{"type": "function"}]}, 400,
     "not supported"),
    ("tokenize without content", "POST", "/tokenize", {"text": "x"}, 400, "content"),
    ("detokenize bad ids", "POST", "/detokenize", {"tokens": ["a"]}, 400, "tokens"),
    ("unknown route", "GET", "/v1/engines", None, 404, "unknown route"),
    ("unknown model by id", "GET", "/v1/models/nope", None, 404, "does not exist"),
    ("wrong method on completions", "GET", "/v1/completions", None, 405, "POST"),
    ("wrong method on health", "POST", "/health", {}, 405, "GET"),
]


def send(server, method, path, body, headers=None):
    data = body if isinstance(body, str) else (None if body is None else json.dumps(body))
    h = {"Content-Type": "application/json", **(headers or {})}
    return requests.request(method, server.url + path, data=data, headers=h, timeout=60)


def check_error(r, status, word):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and word.lower() in err["message"].lower(), err
    assert isinstance(err["type"], str) and err["type"]
    assert "param" in err and "code" in err


@pytest.mark.parametrize("name,method,path,body,status,word", CASES, ids=[c[0] for c in CASES])
def test_malformed_request(server, name, method, path, body, status, word):
    check_error(send(server, method, path, body), status, word)


def test_still_serving_after_malformed_requests(server, model_name):
    assert len(CASES) >= 25
    for _, method, path, body, status, _ in CASES:
        assert send(server, method, path, body).status_code == status
    r = requests.post(server.url + "/v1/completions", json={"prompt": "Hello", "max_tokens": 3}, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    assert requests.get(server.url + "/health", timeout=10).status_code == 200


def test_body_too_large(make_server):
    s = make_server("--max-body-bytes", "4K")
    check_error(send(s, "POST", "/v1/completions", {"prompt": "x" * 10000}), 413, "larger than")
    assert send(s, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1}).status_code == 200


def test_api_key_and_timeout(make_server, model_name):
    s = make_server(env={"HEADSHARD_API_KEY": "sesame", "HEADSHARD_TIMEOUT": "1"})
    body = {"prompt": "x", "max_tokens": 1}
    check_error(send(s, "POST", "/v1/completions", body), 401, "API key")
    check_error(send(s, "POST", "/v1/completions", body, {"Authorization": "Bearer wrong"}), 401, "API key")
    check_error(send(s, "GET", "/v1/models", None, {"Authorization": "sesame"}), 401, "API key")
    assert send(s, "POST", "/v1/completions", body, {"Authorization": "Bearer sesame"}).status_code == 200
    assert requests.get(s.url + "/health", timeout=10).status_code == 200  # health needs no key
    assert requests.get(s.url + "/metrics", timeout=10).status_code == 200

    # --timeout (here from HEADSHARD_TIMEOUT): a request running past it is an error, not a truncation.
    auth = {"Authorization": "Bearer sesame"}
    long = {"prompt": "Count slowly:", "max_tokens": 2000, "ignore_eos": True}
    started = time.time()
    r = send(s, "POST", "/v1/completions", long, auth)
    check_error(r, 408, "did not finish within")
    assert time.time() - started < 10
    # Streaming: the error arrives as an SSE event, then [DONE].
    with requests.post(s.url + "/v1/completions", json=dict(long, stream=True), headers=auth, timeout=60,
                       stream=True) as r:
        assert r.status_code == 200
        events = [ln for ln in r.iter_lines() if ln]
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[-2][6:])["error"]["code"] == "timeout"
    m = s.metrics()
    assert m['headshard_requests_finished_total{outcome="timeout"}'] == 2
    assert m["headshard_kv_pages_used"] == 0
