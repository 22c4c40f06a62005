"""A broken model file stops `headshard serve` at startup with exit code 1 and one clear line
naming what is wrong. Each case corrupts one field of a copy of SmolLM2's GGUF, found by a small
GGUF reader here (independent of the server's), and expects the message its known shapes give:
d_model 576, feed-forward 1536, 9 query and 3 KV heads of 64, 30 layers, vocabulary 49152."""
import shutil
import struct
import subprocess

import pytest

from conftest import binary_path, model_path, need


def gguf_layout(path):
    """{key: offset of its value}, {tensor name: (offset of n_dims, n_dims, dims, offset of type)}."""
    with open(path, "rb") as f:
        b = f.read(4 << 20)  # SmolLM2's metadata and tensor infos end 1.8 MB in
    o = 8
    n_tensors, n_kv = struct.unpack_from("<QQ", b, o)
    o += 16

    def string(o):
        n, = struct.unpack_from("<Q", b, o)
        return b[o + 8:o + 8 + n].decode(), o + 8 + n

    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    keys, tensors = {}, {}
    for _ in range(n_kv):
        key, o = string(o)
        vtype, = struct.unpack_from("<I", b, o)
        o += 4
        keys[key] = o
        if vtype == 8:
            o = string(o)[1]
        elif vtype == 9:
            etype, n = struct.unpack_from("<IQ", b, o)
            o += 12
            if etype == 8:
                for _ in range(n):
                    o = string(o)[1]
            else:
                o += size[etype] * n
        else:
            o += size[vtype]
    for _ in range(n_tensors):
        name, o = string(o)
        nd, = struct.unpack_from("<I", b, o)
        dims = struct.unpack_from(f"<{nd}Q", b, o + 4)
        tensors[name] = (o, nd, dims, o + 4 + 8 * nd)
        o += 4 + 8 * nd + 12
    return keys, tensors


def u32(v):
    return struct.pack("<I", v)


# (name, edit(keys, tensors) -> [(offset, bytes)] or an int to truncate to, words of the message)
CASES = [
    ("a matrix transposed", lambda k, t: [(t["blk.3.ffn_up.weight"][0] + 4, struct.pack("<QQ", 1536, 576))],
     "tensor 'blk.3.ffn_up.weight' has shape [1536, 576], expected [576, 1536]"),
    ("a tensor renamed", lambda k, t: [(t["blk.0.attn_q.weight"][0] - len("attn_q.weight") + 5, b"x")],
     "tensor 'blk.0.attn_q.weight' is missing"),
    ("a norm of the wrong length", lambda k, t: [(t["blk.7.ffn_norm.weight"][0] + 4, struct.pack("<Q", 575))],
     "tensor 'blk.7.ffn_norm.weight' has shape [575], expected [576]"),
    ("d_model off by one", lambda k, t: [(k["llama.embedding_length"], u32(577))],
     "tensor 'token_embd.weight' has shape [576, 49152], expected [577, 49152]"),
    ("d_model zero", lambda k, t: [(k["llama.embedding_length"], u32(0))], "d_model must be positive"),
    ("one layer too many", lambda k, t: [(k["llama.block_count"], u32(31))],
     "tensor 'blk.30.attn_norm.weight' is missing"),
    ("KV heads that do not divide the heads", lambda k, t: [(k["llama.attention.head_count_kv"], u32(2))],
     "n_kv_heads must divide n_heads (9)"),
    ("a smaller vocabulary", lambda k, t: [(k["llama.vocab_size"], u32(49000))],
     "tensor 'token_embd.weight' has shape [576, 49152], expected [576, 49000]"),
    ("a K-quant type on rows of 576", lambda k, t: [(t["blk.14.attn_v.weight"][3], u32(10))],
     "row size 576 is not a multiple of the Q2_K block size 256"),
    ("an unknown tensor type", lambda k, t: [(t["blk.2.attn_k.weight"][3], u32(1000))], "unknown tensor type 1000"),
    ("an unknown architecture", lambda k, t: [(k["general.architecture"] + 8, b"bertx")],
     "general.architecture 'bertx' is not supported"),
    ("the tensor data cut off", lambda k, t: 50_000_000, "data out of file bounds (file truncated?)"),
    ("the metadata cut off", lambda k, t: 1_000_000, "file truncated"),
]


@pytest.fixture(scope="module")
def layout():
    need(binary_path(), "binary")
    need(model_path(), "model")
    return gguf_layout(model_path())


@pytest.mark.parametrize("name,edit,words", CASES, ids=[c[0] for c in CASES])
def test_broken_model_file_is_refused_clearly(layout, tmp_path, name, edit, words):
    path = tmp_path / "broken.gguf"
    shutil.copyfile(model_path(), path)
    change = edit(*layout)
    with open(path, "r+b") as f:
        if isinstance(change, int):
            f.truncate(change)
        else:
            for offset, data in change:
                f.seek(offset)
                f.write(data)
    p = subprocess.run([str(binary_path()), "serve", "--model", str(path), "--port", "0"], capture_output=True,
                       text=True, errors="replace", timeout=120)
    log = p.stdout + p.stderr
    assert p.returncode == 1, f"{name}: exit {p.returncode}\n{log[-2000:]}"
    refusal = [line for line in log.splitlines() if "cannot serve:" in line]
    assert len(refusal) == 1 and words in refusal[0] and str(path) in refusal[0], f"{name}:\n{log[-2000:]}"
