#!/usr/bin/env python3
"""Writes the end-to-end model golden files that the C++ model/engine tests compare against.

The reference is an independent implementation: Hugging Face transformers loading the same GGUF
files (weights dequantized to float32, float32 compute, eager attention). CI never runs this
script; the JSON files it writes are committed under tests/golden/.

Outputs, for key in {smollm2, gemma3}:

  tests/golden/generate_<key>.json
      {"model_file", "model_sha256", "reference",
       "cases": [{"name", "chat", "prompt", "rendered_prompt", "add_bos", "prompt_ids",
                  "generated_ids" (48), "top2_ids" ([[a, b]] x 48), "top2_logprobs" ([[la, lb]] x 48)}]}
      Every prompt appears twice: plain (chat=false; rendered_prompt == prompt) and chat
      (chat=true; rendered_prompt is the chat template's output for one user message with
      add_generation_prompt=True). prompt_ids = encode(rendered_prompt) with special-token text
      parsed and BOS prepended iff add_bos. Generation is greedy for exactly 48 tokens, EOS and
      end-of-turn tokens included (no stopping). top2/logprobs are log_softmax of the float32
      logits at the step that produced generated_ids[k]; generated_ids[k] == top2_ids[k][0].

  tests/golden/teacher_forced_<key>.json
      {"model_file", "model_sha256", "reference", "text_source", "add_bos",
       "ids" (N = 2049, BOS included if any), "argmax" (N-1), "logprob_next" (N-1), "top2_gap" (N-1)}
      One forward pass over the first 2049 tokens of /usr/share/common-licenses/GPL-3.
      argmax[i] / logprob_next[i] (log-prob of ids[i+1]) / top2_gap[i] (top1 - top2 log-prob,
      >= 0) are for position i. Gemma 3's sliding window (512, on 5 of every 6 layers) is in
      effect and matters here, since the sequence is longer than the window; the script checks
      the masks transformers hands to a sliding and a full-attention layer.

Floats are rounded to 6 decimals.

Tokenizer details (transformers builds the tokenizer from the GGUF metadata):
  * BOS follows the tokenizer's default (tokenizer.ggml.add_bos_token): SmolLM2 none, Gemma 3 BOS.
  * SmolLM2 (tokenizer.ggml.pre = "smollm"): transformers' GGUF loader gives it the plain GPT-2
    byte-level pre-tokenizer, but SmolLM2's own tokenizer.json (and llama.cpp's "smollm") first
    splits every digit off on its own (Digits(individual_digits=True), then ByteLevel). That
    changes e.g. "\\n\\n  0." (GPL-3 text); the script installs the correct pre-tokenizer.
  * Gemma 3: the GGUF has no chat template, so the official Gemma 3 template (from
    google/gemma-3-*-it tokenizer_config.json) is written out below as GEMMA3_CHAT_TEMPLATE.
    That template begins with "{{ bos_token }}" while the tokenizer also prepends BOS by default;
    to get the single BOS the model expects, the leading "<bos>" is dropped from the rendered text
    (so rendered_prompt starts at "<start_of_turn>") and add_bos stays true. In general: when a
    template's output starts with the BOS text and the tokenizer adds BOS, the text's copy is dropped.
  * Gemma 3's tokenization is cross-checked against the sentencepiece library running a BPE model
    built from the GGUF vocabulary (scores, token types, byte fallback; control tokens split out
    first, as llama.cpp does). The script stops if they disagree.

Other checks: a few weights are compared with gguf-py's own dequantizer, and every generated case is
re-run as one uncached forward pass over prompt + generated tokens (argmax and log-probs must match
the cached loop).

Usage (not run in CI; needs the GGUF files in models/ or $HEADSHARD_MODELS_DIR, ~2 GB RAM free):
    python3 -m venv V && V/bin/pip install torch transformers accelerate gguf sentencepiece protobuf
    V/bin/python scripts/make-model-golden.py [--only smollm2|gemma3] [--threads 2]
Written against transformers 5.24 / torch 2.15 (the "reference" field records the versions used).
Takes about 10 minutes on 2 busy cores (Gemma 3 takes ~1 min just to load).
"""
import argparse
import hashlib
import inspect
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("HEADSHARD_MODELS_DIR", ROOT / "models"))
OUT_DIR = ROOT / "tests" / "golden"
MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
N_NEW = 48
N_TEACHER = 2049
TEXT_SOURCE = Path("/usr/share/common-licenses/GPL-3")
TEXT_SOURCE_DESC = "/usr/share/common-licenses/GPL-3 (Debian package base-files)"

# Official Gemma 3 chat template (google/gemma-3-*-it, tokenizer_config.json "chat_template").
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n"
)

LONG_PARAGRAPH = (
    "The history of the printing press is closely tied to the spread of literacy in Europe. "
    "Before Johannes Gutenberg introduced movable metal type around 1440, books were copied by hand, "
    "usually by monks working in monasteries, and a single volume could take months to finish. "
    "Gutenberg's press made it possible to produce hundreds of identical copies in the time a scribe "
    "needed for one. Within fifty years, printing shops had opened in more than two hundred cities, "
    "and millions of books were in circulation. Prices fell, pamphlets carried news and arguments "
    "across borders, and scholars could compare the same text in different places. Historians still "
    "debate how quickly ordinary people learned to read, but few doubt that the press changed the way "
    "knowledge was shared. Summarize this paragraph in two sentences."
)

PROMPTS = [
    ("factual", "What is the capital of France?"),
    ("story", "Once upon a time, in a small village at the edge of a great forest,"),
    ("code", "def fibonacci(n):"),
    ("list", "List five fruits that are red:"),
    ("numbers", "What is 17 times 23? Then add 1999 to the result and give the final number."),
    ("french", "Quelle est la capitale de l'Allemagne ? Réponds en une seule phrase, s'il te plaît."),
    ("long_paragraph", LONG_PARAGRAPH),
    ("multiline", "Translate into Spanish:\nGood morning.\nWhere is the train station?\nThank you very much."),
    ("unicode", "Write a haiku about the moon 🌙 — use the word “silver”."),
]

# Checks that transformers dequantized the weights the way gguf-py does: (gguf name, transformers name, offset)
# where offset is what transformers' tensor processor adds (Gemma norms are stored as 1 + w).
DEQUANT_CHECKS = {
    "smollm2": [("token_embd.weight", "model.embed_tokens.weight", 0.0),
                ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", 0.0),
                ("blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight", 0.0),
                ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight", 0.0)],
    "gemma3": [("token_embd.weight", "model.embed_tokens.weight", 0.0),
               ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", 0.0),
               ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", 0.0),
               ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", 0.0),
               ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight", -1.0),
               ("blk.0.attn_q_norm.weight", "model.layers.0.self_attn.q_norm.weight", -1.0)],
}


def log(*a):
    print(*a, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r6(x):
    v = round(float(x), 6)
    return 0.0 if v == 0 else v  # no "-0.0"


# ---------------------------------------------------------------------------------------------
# JSON writing: one key per line, arrays kept on one line, so the files stay small and diffable.

def _dump(obj, indent):
    pad = " " * indent
    if isinstance(obj, dict):
        items = [f'{pad} {json.dumps(k)}: {_dump(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        return "[\n" + ",\n".join(pad + " " + _dump(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_json(path, obj):
    text = _dump(obj, 0) + "\n"
    assert json.loads(text) == obj
    path.write_text(text, encoding="utf-8")
    log(f"wrote {path.relative_to(ROOT)} ({len(text.encode()) / 1024:.0f} KiB)")


# ---------------------------------------------------------------------------------------------
# Tokenizer

def gguf_metadata(path):
    from gguf import GGUFReader
    r = GGUFReader(str(path))
    def get(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()
    return r, get


def fix_tokenizer(key, tok, meta_get):
    from tokenizers import pre_tokenizers
    notes = []
    if meta_get("tokenizer.ggml.pre") in ("smollm", "starcoder"):
        # transformers 5.24 only knows the GPT-2 split for these; the model's tokenizer.json (and
        # llama.cpp) split each digit off first.
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
        notes.append("pre-tokenizer set to Digits(individual)+ByteLevel (smollm)")
    if not tok.chat_template:
        if key != "gemma3":
            sys.exit(f"{key}: no chat template")
        tok.chat_template = GEMMA3_CHAT_TEMPLATE
        notes.append("chat template: official Gemma 3 template from this script")
    return notes


class SpmReference:
    """sentencepiece's BPE, built from the GGUF vocabulary, for cross-checking an SPM tokenizer."""

    def __init__(self, reader):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb
        f = reader.fields
        self.tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data]
        scores = [float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data]
        types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
        m = pb.ModelProto()
        m.trainer_spec.model_type = pb.TrainerSpec.BPE
        m.trainer_spec.byte_fallback = True
        m.trainer_spec.vocab_size = len(self.tokens)
        for name, key in (("unk_id", "unknown"), ("bos_id", "bos"), ("eos_id", "eos"), ("pad_id", "padding")):
            fk = f.get(f"tokenizer.ggml.{key}_token_id")
            setattr(m.trainer_spec, name, int(fk.contents()) if fk is not None else -1)
        m.normalizer_spec.name = "identity"
        m.normalizer_spec.add_dummy_prefix = bool(f["tokenizer.ggml.add_space_prefix"].contents()) \
            if "tokenizer.ggml.add_space_prefix" in f else False
        m.normalizer_spec.remove_extra_whitespaces = False
        m.normalizer_spec.escape_whitespaces = True
        for t, s, ty in zip(self.tokens, scores, types):
            p = m.pieces.add()
            p.piece = t.replace(" ", "\u2581") if ty == 4 else t  # GGUF spells user-defined space runs with " "
            p.score = s
            p.type = ty
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(m.SerializeToString())
        self.control = {t: i for i, (t, ty) in enumerate(zip(self.tokens, types)) if ty == 3}
        self.split = re.compile("(" + "|".join(re.escape(c) for c in sorted(self.control, key=len, reverse=True)) + ")")

    def encode(self, text):
        ids = []
        for part in self.split.split(text):
            if part in self.control:
                ids.append(self.control[part])
            elif part:
                ids += self.sp.encode(part)
        return ids


def encode(tok, text):
    """(ids, add_bos) with the tokenizer's default special-token handling (BOS only, never EOS)."""
    ids = tok(text).input_ids
    bare = tok(text, add_special_tokens=False).input_ids
    add_bos = len(ids) == len(bare) + 1 and ids[0] == tok.bos_token_id
    assert ids == ([tok.bos_token_id] if add_bos else []) + bare, "tokenizer adds something other than BOS"
    return ids, add_bos


def render_chat(tok, prompt, add_bos_default):
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    if add_bos_default and tok.bos_token and text.startswith(tok.bos_token):
        text = text[len(tok.bos_token):]  # the tokenizer prepends BOS itself; avoid a double BOS
    return text


# ---------------------------------------------------------------------------------------------
# Model

def load_model(fname):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(str(MODELS_DIR), gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(str(MODELS_DIR), gguf_file=fname, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    log(f"  loaded {fname} in {time.time() - t0:.0f} s ({type(model).__name__}, "
        f"attn={model.config._attn_implementation}, dtype={next(model.parameters()).dtype})")
    assert model.config._attn_implementation == "eager"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    return tok, model


def check_dequant(key, model, reader):
    from gguf import dequantize
    params = dict(model.named_parameters())
    by_name = {t.name: t for t in reader.tensors}
    for gname, hname, offset in DEQUANT_CHECKS[key]:
        t = by_name[gname]
        ref = dequantize(t.data, t.tensor_type).reshape(tuple(int(d) for d in reversed(t.shape))) + offset
        got = params[hname].detach().numpy()
        err = float(np.max(np.abs(got - ref)))
        log(f"  dequant check {gname} ({t.tensor_type.name}) vs {hname}: max abs diff {err:.2e}")
        assert err < 1e-6, f"{gname}: transformers' weights differ from gguf-py's dequantization"


def top2(logits):
    """(argmax, runner-up, their log-probs, full log-softmax) from float32 logits."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    a = int(torch.argmax(lp))
    rest = lp.clone()
    rest[a] = -float("inf")
    b = int(torch.argmax(rest))
    return a, b, float(lp[a]), float(lp[b]), lp


@torch.inference_mode()
def greedy(model, prompt_ids, n_new):
    from transformers import DynamicCache
    cache = DynamicCache(config=model.config)  # filled in place by every forward call
    # transformers 5.x renamed past_key_values to cache (the old name is deprecated until 5.40).
    kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True, **{kw: cache})
    gen, t2, lp2 = [], [], []
    for k in range(n_new):
        a, b, la, lb, _ = top2(out.logits[0, -1])
        gen.append(a)
        t2.append([a, b])
        lp2.append([la, lb])
        if k + 1 < n_new:
            out = model(input_ids=torch.tensor([[a]]), use_cache=True, **{kw: cache})
    return gen, t2, lp2


@torch.inference_mode()
def verify_uncached(model, prompt_ids, gen, lp2):
    """Re-run prompt + generated[:-1] in one uncached pass; returns (max |dlogprob|, argmax mismatches)."""
    ids = prompt_ids + gen[:-1]
    logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, len(prompt_ids) - 1:]
    lp = torch.log_softmax(logits.float(), dim=-1)
    max_diff, mismatches = 0.0, []
    for k, g in enumerate(gen):
        max_diff = max(max_diff, abs(float(lp[k, g]) - lp2[k][0]))
        a = int(torch.argmax(lp[k]))
        if a != g:
            mismatches.append((k, g, a, lp2[k][0] - lp2[k][1]))
    return max_diff, mismatches


class MaskProbe:
    """Captures the attention mask given to one sliding and one full-attention layer."""

    def __init__(self, model):
        self.masks, self.handles = {}, []
        layer_types = getattr(model.config, "layer_types", None) or ["full_attention"] * model.config.num_hidden_layers
        for kind in ("sliding_attention", "full_attention"):
            if kind in layer_types:
                i = layer_types.index(kind)
                attn = model.model.layers[i].self_attn
                self.handles.append(attn.register_forward_pre_hook(self._hook(kind, i), with_kwargs=True))

    def _hook(self, kind, i):
        def hook(module, args, kwargs):
            m = kwargs.get("attention_mask")
            self.masks[kind] = (i, None if m is None else m.detach().clone())
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def check(self, n, window):
        """Returns text describing the masks; asserts they are causal (+ sliding window)."""
        lines = []
        q = torch.arange(n)[:, None]
        kv = torch.arange(n)[None, :]
        for kind, (layer, m) in self.masks.items():
            if m is None:
                lines.append(f"layer {layer} ({kind}): no mask (pure causal via is_causal)")
                assert kind == "full_attention"
                continue
            m = m[0, 0, :n, :n]
            allowed = m if m.dtype == torch.bool else (m == 0)
            expect = kv <= q
            if kind == "sliding_attention":
                expect = expect & (q - kv < window)
            ok = bool(torch.equal(allowed, expect))
            lines.append(f"layer {layer} ({kind}): mask {tuple(m.shape)} {m.dtype}, keys visible to the last query: "
                         f"{int(allowed[-1].sum())}, matches causal{' + window ' + str(window) if kind.startswith('sliding') else ''}: {ok}")
            assert ok, f"unexpected {kind} mask"
        return lines


@torch.inference_mode()
def teacher_forced(model, ids):
    captured = {}
    h = model.model.register_forward_hook(lambda mod, a, out: captured.__setitem__("h", out.last_hidden_state))
    probe = MaskProbe(model)
    try:
        out = model(input_ids=torch.tensor([ids]), use_cache=False, logits_to_keep=1)
    finally:
        h.remove()
        probe.remove()
    hidden = captured["h"][0]
    softcap = getattr(model.config, "final_logit_softcapping", None)
    argmax, logprob_next, gap = [], [], []
    last_logits = None
    for s in range(0, len(ids), 256):
        logits = model.lm_head(hidden[s:s + 256]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        last_logits = logits[-1]
        lp = torch.log_softmax(logits, dim=-1)
        v, ix = torch.topk(lp, 2, dim=-1)
        for j in range(lp.shape[0]):
            i = s + j
            if i + 1 >= len(ids):
                break
            argmax.append(int(torch.argmax(lp[j])))
            logprob_next.append(float(lp[j, ids[i + 1]]))
            gap.append(float(v[j, 0] - v[j, 1]))
    d = float(torch.max(torch.abs(last_logits - out.logits[0, -1].float())))
    assert d < 1e-3, f"chunked lm_head differs from the model's own logits by {d}"
    return argmax, logprob_next, gap, probe


# ---------------------------------------------------------------------------------------------

def run_model(key, fname, reference):
    import transformers  # noqa: F401
    path = MODELS_DIR / fname
    log(f"== {key}: {path}")
    digest = sha256(path)
    reader, meta_get = gguf_metadata(path)
    tok, model = load_model(fname)
    notes = fix_tokenizer(key, tok, meta_get)
    for n in notes:
        log(f"  tokenizer fix: {n}")
    check_dequant(key, model, reader)
    cfg = model.config
    if key == "gemma3":
        log(f"  config.sliding_window = {cfg.sliding_window}, layer_types = "
            f"{''.join('S' if t == 'sliding_attention' else 'F' for t in cfg.layer_types)} (S = sliding, F = full)")
        assert cfg.sliding_window == 512
        assert cfg.layer_types == [("full_attention" if (i + 1) % 6 == 0 else "sliding_attention")
                                   for i in range(cfg.num_hidden_layers)]

    spm_ref = SpmReference(reader) if meta_get("tokenizer.ggml.model") == "llama" else None
    gguf_add_bos = meta_get("tokenizer.ggml.add_bos_token")

    def tokenize(text):
        ids, add_bos = encode(tok, text)
        if spm_ref is not None:
            ref = ([tok.bos_token_id] if add_bos else []) + spm_ref.encode(text)
            assert ids == ref, f"transformers and sentencepiece tokenize {text[:60]!r} differently"
        if gguf_add_bos is not None:
            assert add_bos == bool(gguf_add_bos)
        return ids, add_bos

    cases = []
    t0 = time.time()
    for name, prompt in PROMPTS:
        for chat in (False, True):
            _, add_bos_default = encode(tok, "x")
            rendered = render_chat(tok, prompt, add_bos_default) if chat else prompt
            ids, add_bos = tokenize(rendered)
            gen, t2, lp2 = greedy(model, ids, N_NEW)
            max_diff, mism = verify_uncached(model, ids, gen, lp2)
            cname = f"{name}_{'chat' if chat else 'plain'}"
            min_gap = min(a - b for a, b in lp2)
            log(f"  {cname:22s} prompt {len(ids):3d} tok, min top2 gap {min_gap:.4f}, "
                f"cached-vs-uncached max |dlogprob| {max_diff:.1e}")
            for k, g, a, gp in mism:
                log(f"    WARNING: step {k}: cached argmax {g}, uncached {a} (gap {gp:.2e})")
                assert gp < 1e-3, "cached and uncached runs disagree on a clear argmax"
            cases.append({
                "name": cname, "chat": chat, "prompt": prompt, "rendered_prompt": rendered, "add_bos": add_bos,
                "prompt_ids": ids, "generated_ids": gen, "top2_ids": t2,
                "top2_logprobs": [[r6(a), r6(b)] for a, b in lp2],
            })
    log(f"  generation: {time.time() - t0:.0f} s")
    write_json(OUT_DIR / f"generate_{key}.json",
               {"model_file": fname, "model_sha256": digest, "reference": reference, "cases": cases})

    t0 = time.time()
    ids, add_bos = tokenize(TEXT_SOURCE.read_text(encoding="utf-8"))
    assert len(ids) >= N_TEACHER, f"text gives only {len(ids)} tokens"
    ids = ids[:N_TEACHER]
    argmax, logprob_next, gap, probe = teacher_forced(model, ids)
    mask_lines = probe.check(len(ids), getattr(cfg, "sliding_window", None))
    for line in mask_lines:
        log(f"  {line}")
    acc = sum(int(a == b) for a, b in zip(argmax, ids[1:])) / (len(ids) - 1)
    log(f"  teacher forced: {len(ids)} tokens in {time.time() - t0:.0f} s, top-1 accuracy {acc:.3f}, "
        f"mean NLL {-sum(logprob_next) / len(logprob_next):.3f}")
    write_json(OUT_DIR / f"teacher_forced_{key}.json", {
        "model_file": fname, "model_sha256": digest, "reference": reference, "text_source": TEXT_SOURCE_DESC,
        "add_bos": add_bos, "ids": ids, "argmax": argmax,
        "logprob_next": [r6(x) for x in logprob_next], "top2_gap": [r6(x) for x in gap],
    })
    first = cases[0]
    sanity = {
        "plain": (first["prompt"], tok.decode(first["generated_ids"], skip_special_tokens=False)),
        "chat": (cases[1]["prompt"], tok.decode(cases[1]["generated_ids"], skip_special_tokens=False)),
    }
    del model
    return sanity, mask_lines, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import transformers
    reference = (f"transformers {transformers.__version__}, torch {torch.__version__}, "
                 f"GGUF dequantized to float32, eager attention, greedy")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    summary = {}
    for key, fname in MODELS.items():
        if args.only and key != args.only:
            continue
        if not (MODELS_DIR / fname).exists():
            sys.exit(f"missing {MODELS_DIR / fname}")
        summary[key] = run_model(key, fname, reference)
    log("\n== summary")
    for key, (sanity, mask_lines, notes) in summary.items():
        for mode, (p, g) in sanity.items():
            log(f"{key} [{mode}] {p!r}\n    -> {g!r}")
        for line in mask_lines:
            log(f"{key} mask: {line}")
    log(f"total {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
