#!/usr/bin/env python3
"""A load client for any OpenAI-compatible server (headshard, vLLM, llama.cpp, ...).

Sends --num-prompts streaming requests, at a fixed concurrency (--max-concurrency) and/or with
Poisson arrivals at --request-rate per second, for random or text prompts of a chosen input
length and a fixed output length. Prints TTFT, TPOT, ITL and end-to-end latency (mean, median,
p90, p99 by default), request and token throughput and errors, and with --save-result writes
everything as JSON.

Flag names follow `vllm bench serve` where it has them; --duration (stop sending after that
many seconds, reusing prompts as needed), --api-key, --text-file, --timeout and --workers (client
processes sharing the load) are ours.

    .venv/bin/python scripts/loadtest.py --port 8080 --num-prompts 50 --max-concurrency 8 \\
        --random-input-len 128 --random-output-len 64 --save-result

Needs only the standard library and `requests` (scripts/setup.sh puts both in .venv).
"""
import argparse
import copy
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from datetime import datetime

import requests

DEFAULT_TEXT = "/usr/share/common-licenses/GPL-3"  # Debian's base-files: always there


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", default="openai", choices=["openai", "openai-chat"],
                   help="openai: /v1/completions; openai-chat: /v1/chat/completions")
    p.add_argument("--base-url", default=None, help="server URL, e.g. http://127.0.0.1:8080 (overrides --host/--port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--endpoint", default=None, help="API path (default from --backend)")
    p.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="sent as a Bearer token")
    p.add_argument("--dataset-name", default="random", choices=["random", "text"],
                   help="random: random words; text: passages of --text-file")
    p.add_argument("--text-file", default=DEFAULT_TEXT, help="text for --dataset-name text (and random's words)")
    p.add_argument("--num-prompts", type=int, default=100, help="requests to send (with --duration: the prompt pool)")
    p.add_argument("--random-input-len", type=int, default=128, help="prompt tokens")
    p.add_argument("--random-output-len", type=int, default=64, help="max_tokens of each request")
    p.add_argument("--random-range-ratio", type=float, default=0.0,
                   help="lengths drawn uniformly in [len * (1 - r), len * (1 + r)]")
    p.add_argument("--request-rate", type=float, default=float("inf"),
                   help="requests per second (Poisson arrivals); inf sends all at once")
    p.add_argument("--burstiness", type=float, default=1.0,
                   help="gamma shape of the arrival gaps: 1 is Poisson, lower is burstier")
    p.add_argument("--max-concurrency", type=int, default=None, help="requests in flight at most")
    p.add_argument("--workers", type=int, default=None,
                   help="client processes sharing the load (default: one per 8 of --max-concurrency, at most "
                        "the CPU count; 1 without --max-concurrency)")
    p.add_argument("--duration", type=float, default=None,
                   help="send for this many seconds (cycling through the prompts), then wait for the rest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--ignore-eos", action="store_true", help="ask for exactly the output length (vLLM, headshard)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--percentile-metrics", default="ttft,tpot,itl,e2el")
    p.add_argument("--metric-percentiles", default="50,90,99")
    p.add_argument("--save-result", action="store_true")
    p.add_argument("--result-dir", default=".")
    p.add_argument("--result-filename", default=None)
    p.add_argument("--disable-tqdm", action="store_true", help="accepted for vLLM compatibility (no progress bar)")
    a = p.parse_args(argv)
    a.base_url = (a.base_url or f"http://{a.host}:{a.port}").rstrip("/")
    a.endpoint = a.endpoint or ("/v1/chat/completions" if a.backend == "openai-chat" else "/v1/completions")
    if a.workers is None:
        a.workers = min(math.ceil(a.max_concurrency / 8), os.cpu_count() or 1) if a.max_concurrency else 1
    if a.num_prompts < 1:
        p.error("--num-prompts must be at least 1")
    return a


# ---- prompts ---------------------------------------------------------------------------------

class Tokenizer:
    """The server's /tokenize and /detokenize when it has them (headshard, llama.cpp, vLLM);
    otherwise a words-per-token estimate."""

    def __init__(self, session, base_url, model):
        self.session, self.base_url, self.model = session, base_url, model
        self.available = self._probe()

    def _probe(self):
        try:
            return self.count("hello world") > 0
        except Exception:
            return False

    def encode(self, text):
        r = self.session.post(self.base_url + "/tokenize", json={"content": text, "prompt": text, "model": self.model},
                              timeout=60)
        r.raise_for_status()
        tokens = r.json()["tokens"]
        return [t["id"] if isinstance(t, dict) else t for t in tokens]

    def decode(self, ids):
        r = self.session.post(self.base_url + "/detokenize", json={"tokens": ids, "model": self.model}, timeout=60)
        r.raise_for_status()
        j = r.json()
        return j.get("content", j.get("prompt"))

    def count(self, text):
        return len(self.encode(text))


def lengths(rng, mean, ratio, n):
    lo, hi = max(1, int(mean * (1 - ratio))), max(1, int(mean * (1 + ratio)))
    return [rng.randint(lo, hi) for _ in range(n)]


def make_prompts(args, tok, rng):
    """(prompt, max_tokens) pairs. With the server's tokenizer, the text is tokenized once and
    each prompt is a slice of exactly the asked length: token ids for the completions endpoint
    (no call per prompt), their text for chat. Without it, lengths are estimated from words."""
    with open(args.text_file, encoding="utf-8", errors="replace") as f:
        corpus = f.read()
    words = corpus.split()
    in_lens = lengths(rng, args.random_input_len, args.random_range_ratio, args.num_prompts)
    out_lens = lengths(rng, args.random_output_len, args.random_range_ratio, args.num_prompts)
    if args.dataset_name == "random":
        vocab = sorted(set(w.strip(".,;:()\"'") for w in words if w.isascii() and len(w) > 1))
        words = [rng.choice(vocab) for _ in range(max(4096, 3 * max(in_lens)))]
    if not tok.available:
        prompts = []
        for n_in, n_out in zip(in_lens, out_lens):
            start = rng.randrange(0, max(1, len(words) - n_in))
            prompts.append((" ".join(words[start:start + max(1, int(n_in * 0.75))]), n_out))
        return prompts
    ids = tok.encode(" ".join(words))
    while len(ids) < max(in_lens) + 1:
        ids = ids + ids
    prompts = []
    for n_in, n_out in zip(in_lens, out_lens):
        start = rng.randrange(0, len(ids) - n_in)
        piece = ids[start:start + n_in]
        prompts.append((tok.decode(piece) if args.backend == "openai-chat" else piece, n_out))
    return prompts


# ---- one request -----------------------------------------------------------------------------

def request_body(args, prompt, max_tokens):
    body = {"model": args.model, "max_tokens": max_tokens, "temperature": args.temperature, "stream": True,
            "stream_options": {"include_usage": True}}
    if args.backend == "openai-chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if args.top_p is not None:
        body["top_p"] = args.top_p
    if args.top_k is not None:
        body["top_k"] = args.top_k
    if args.ignore_eos:
        body["ignore_eos"] = True
    return body


def run_request(session, args, prompt, max_tokens):
    """Streams one request; returns a dict of its timings and token counts."""
    out = {"success": False, "ttft": None, "itl": [], "latency": None, "prompt_len": None, "output_len": 0,
           "error": ""}
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    start = time.perf_counter()
    last = None
    chunks = 0
    try:
        with session.post(args.base_url + args.endpoint, json=request_body(args, prompt, max_tokens), headers=headers,
                          stream=True, timeout=args.timeout) as r:
            if r.status_code != 200:
                out["error"] = f"HTTP {r.status_code}: {r.text[:200]}"
                return out
            for line in r.iter_lines():
                if not line or not line.startswith(b"data: "):
                    continue
                data = line[6:]
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    out["error"] = chunk["error"].get("message", str(chunk["error"]))
                    return out
                if chunk.get("usage"):
                    out["prompt_len"] = chunk["usage"].get("prompt_tokens")
                    out["output_len"] = chunk["usage"].get("completion_tokens", 0)
                for c in chunk.get("choices") or []:
                    text = c.get("text") if "text" in c else (c.get("delta") or {}).get("content")
                    if not text:
                        continue
                    now = time.perf_counter()
                    if out["ttft"] is None:
                        out["ttft"] = now - start
                    else:
                        out["itl"].append(now - last)
                    last = now
                    chunks += 1
        out["latency"] = time.perf_counter() - start
        if not out["output_len"]:
            out["output_len"] = chunks  # a server without usage in streams: one token per chunk
        out["success"] = out["ttft"] is not None or out["output_len"] == 0
        if not out["success"]:
            out["error"] = "no output"
    except Exception as e:  # network errors count as failed requests, not a crash
        out["error"] = f"{type(e).__name__}: {e}"
    return out


# ---- the run ---------------------------------------------------------------------------------

def arrival_gaps(rng, rate, burstiness):
    """Seconds between sends: gamma-distributed with mean 1/rate (Poisson when burstiness is 1)."""
    while True:
        if math.isinf(rate):
            yield 0.0
        else:
            theta = 1.0 / (rate * burstiness)
            yield rng.gammavariate(burstiness, theta)


def run(args, prompts, rng):
    results = []
    lock = threading.Lock()
    limit = threading.Semaphore(args.max_concurrency) if args.max_concurrency else None
    local = threading.local()
    threads = []

    def worker(prompt, n_out):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        try:
            res = run_request(local.session, args, prompt, n_out)
        finally:
            if limit:
                limit.release()
        with lock:
            results.append(res)

    gaps = arrival_gaps(rng, args.request_rate, args.burstiness)
    start = time.perf_counter()
    i = 0
    while True:
        if args.duration is not None:
            if time.perf_counter() - start >= args.duration:
                break
        elif i >= len(prompts):
            break
        if limit:
            limit.acquire()
        prompt, n_out = prompts[i % len(prompts)]
        t = threading.Thread(target=worker, args=(prompt, n_out), daemon=True)
        t.start()
        threads.append(t)
        i += 1
        gap = next(gaps)
        if gap > 0:
            time.sleep(gap)
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def run_workers(args, prompts, rng):
    """run() in args.workers processes, each with its share of the concurrency, the request rate
    and the prompts. One Python process reading many streams takes each token when the interpreter
    lock lets its thread run, not when it arrives: against build/stream_server sending every stream
    one event per 1.3 ms at the same instants, 32 streams measured a median inter-token latency of
    0.11-0.73 ms from one process and 1.30 from four (README)."""
    n = args.workers
    if args.max_concurrency:
        n = min(n, args.max_concurrency)
    if args.duration is None:
        n = min(n, len(prompts))
    if n <= 1:
        return run(args, prompts, rng)
    shares = []
    for k in range(n):
        a = copy.copy(args)
        if args.max_concurrency:
            a.max_concurrency = args.max_concurrency // n + (k < args.max_concurrency % n)
        a.request_rate = args.request_rate / n
        shares.append((a, prompts[k::n], rng.random()))
    with multiprocessing.get_context("fork").Pool(n) as pool:
        outs = pool.starmap(run_share, shares)
    return [r for results, _ in outs for r in results], max(d for _, d in outs)


def run_share(args, prompts, seed):
    return run(args, prompts, random.Random(seed))


def summarize(args, results, duration):
    ok = [r for r in results if r["success"]]
    percentiles = [float(p) for p in args.metric_percentiles.split(",") if p]
    total_in = sum(r["prompt_len"] or 0 for r in ok)
    total_out = sum(r["output_len"] for r in ok)
    s = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration if duration else 0.0,
        "output_throughput": total_out / duration if duration else 0.0,
        "total_token_throughput": (total_in + total_out) / duration if duration else 0.0,
        "max_concurrency": args.max_concurrency,
        "request_rate": args.request_rate if not math.isinf(args.request_rate) else "inf",
    }
    series = {
        "ttft": [r["ttft"] for r in ok if r["ttft"] is not None],
        "tpot": [(r["latency"] - r["ttft"]) / (r["output_len"] - 1) for r in ok
                 if r["ttft"] is not None and r["output_len"] > 1],
        "itl": [x for r in ok for x in r["itl"]],
        "e2el": [r["latency"] for r in ok if r["latency"] is not None],
    }
    for name, values in series.items():
        ms = [v * 1000.0 for v in values]
        s[f"mean_{name}_ms"] = statistics.fmean(ms) if ms else 0.0
        s[f"median_{name}_ms"] = statistics.median(ms) if ms else 0.0
        s[f"std_{name}_ms"] = statistics.pstdev(ms) if len(ms) > 1 else 0.0
        for p in percentiles:
            s[f"p{p:g}_{name}_ms"] = percentile(ms, p)
    errors = {}
    for r in results:
        if not r["success"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    s["errors"] = errors
    return s


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def print_table(args, s):
    w = 50
    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=w, c="="))
    rows = [("Successful requests:", s["completed"]), ("Failed requests:", s["failed"]),
            ("Maximum request concurrency:", s["max_concurrency"]), ("Request rate (req/s):", s["request_rate"]),
            ("Benchmark duration (s):", f"{s['duration']:.2f}"), ("Total input tokens:", s["total_input_tokens"]),
            ("Total generated tokens:", s["total_output_tokens"]),
            ("Request throughput (req/s):", f"{s['request_throughput']:.2f}"),
            ("Output token throughput (tok/s):", f"{s['output_throughput']:.2f}"),
            ("Total token throughput (tok/s):", f"{s['total_token_throughput']:.2f}")]
    for k, v in rows:
        print(f"{k:<40}{v!s:<10}")
    titles = {"ttft": ("Time to First Token", "TTFT"), "tpot": ("Time per Output Token (excl. 1st token)", "TPOT"),
              "itl": ("Inter-token Latency", "ITL"), "e2el": ("End-to-end Latency", "E2EL")}
    for name in args.percentile_metrics.split(","):
        if name not in titles:
            continue
        title, short = titles[name]
        print("{s:{c}^{n}}".format(s=title, n=w, c="-"))
        print(f"{'Mean ' + short + ' (ms):':<40}{s[f'mean_{name}_ms']:<10.2f}")
        print(f"{'Median ' + short + ' (ms):':<40}{s[f'median_{name}_ms']:<10.2f}")
        for p in args.metric_percentiles.split(","):
            print(f"{'P' + p + ' ' + short + ' (ms):':<40}{s[f'p{float(p):g}_{name}_ms']:<10.2f}")
    if s["errors"]:
        print("{s:{c}^{n}}".format(s="Errors", n=w, c="-"))
        for msg, n in sorted(s["errors"].items(), key=lambda kv: -kv[1]):
            print(f"{n:>6}  {msg[:120]}")
    print("=" * w)


def main(argv=None):
    args = parse_args(argv)
    rng = random.Random(args.seed)
    session = requests.Session()
    if args.api_key:
        session.headers["Authorization"] = f"Bearer {args.api_key}"
    if args.model is None:
        r = session.get(args.base_url + "/v1/models", timeout=30)
        r.raise_for_status()
        args.model = r.json()["data"][0]["id"]
    tok = Tokenizer(session, args.base_url, args.model)
    print(f"loadtest: {args.base_url}{args.endpoint} model {args.model}; preparing {args.num_prompts} "
          f"{args.dataset_name} prompts of ~{args.random_input_len} tokens"
          f"{'' if tok.available else ' (no /tokenize: lengths estimated)'}", file=sys.stderr)
    prompts = make_prompts(args, tok, rng)
    mode = []
    if args.max_concurrency:
        mode.append(f"at most {args.max_concurrency} in flight")
    mode.append("all at once" if math.isinf(args.request_rate) else f"{args.request_rate:g} requests/s")
    if args.duration:
        mode.append(f"for {args.duration:g} s")
    print(f"loadtest: sending ({', '.join(mode)})", file=sys.stderr)
    results, duration = run_workers(args, prompts, rng)
    summary = summarize(args, results, duration)
    print_table(args, summary)
    if args.save_result:
        result = {
            "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
            "backend": args.backend,
            "base_url": args.base_url,
            "endpoint": args.endpoint,
            "model_id": args.model,
            "dataset_name": args.dataset_name,
            "num_prompts": args.num_prompts,
            "random_input_len": args.random_input_len,
            "random_output_len": args.random_output_len,
            "burstiness": args.burstiness,
            "duration_limit": args.duration,
            **summary,
            "input_lens": [r["prompt_len"] for r in results],
            "output_lens": [r["output_len"] for r in results],
            "ttfts": [r["ttft"] for r in results],
            "itls": [r["itl"] for r in results],
            "e2els": [r["latency"] for r in results],
            "errors_per_request": [r["error"] for r in results],
        }
        name = args.result_filename or (f"{args.backend}-{args.request_rate}qps-"
                                        f"{args.model.replace('/', '_')}-{result['date']}.json")
        path = os.path.join(args.result_dir, name)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"loadtest: wrote {path}", file=sys.stderr)
    return 0 if summary["completed"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
