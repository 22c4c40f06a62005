#!/usr/bin/env python3
"""Writes the dequantization golden files used by tests/model/test_dequant.cpp.

For every block type the C++ dequantizer supports, builds a few random but valid blocks
(random quant payload bytes, finite fp16 scales), dequantizes them with the reference numpy
implementation in the `gguf` package, and writes
    tests/data/dequant/<TYPE>.bin   raw quantized bytes
    tests/data/dequant/<TYPE>.f32   expected float32 values (little-endian)
Q8_1 and Q8_K have no dequantizer in gguf-py (they are ggml's internal dot-product formats),
so their expected values are computed here directly from the ggml layout.

When the model files exist (models/ or $HEADSHARD_MODELS_DIR), it also dumps the first 4096
(or all, when fewer) dequantized values of the first tensor of each type per model to real_<model>_<tensor>.f32.

Usage: scripts/make-dequant-golden.py            (needs: pip install gguf numpy)
"""
import os
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "dequant"
MODELS = Path(os.environ.get("HEADSHARD_MODELS_DIR", ROOT / "models"))
REAL_COUNT = 4096

# Byte offsets of the fp16 scale fields inside each block; everything else is payload.
FP16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0, 2],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}
# Blocks per type: few, to keep the files small.
BLOCKS = {name: 8 for name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1")}
BLOCKS.update({name: 3 for name in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K")})
BLOCK_BYTES = {"Q8_1": 36}  # ggml's current layout (fp16 d, s); gguf-py still lists 40 bytes


def random_scales(rng, n):
    """Finite fp16 scales: mostly small normals, plus zero, -0, a subnormal and a large value."""
    v = (rng.standard_normal(n) * 0.05).astype(np.float16)
    specials = np.array([0.0, -0.0, 6e-8, 1.5e-5, -3.0e4], dtype=np.float16)
    k = min(n, len(specials))
    idx = rng.choice(n, size=k, replace=False)
    v[idx] = specials[:k]
    return v


def make_blocks(rng, name):
    block_elems, type_size = GGML_QUANT_SIZES[T[name]]
    type_size = BLOCK_BYTES.get(name, type_size)
    nb = BLOCKS[name]
    raw = rng.integers(0, 256, size=(nb, type_size), dtype=np.uint8)
    if name == "Q8_K":
        raw[:, 0:4] = (rng.standard_normal(nb) * 0.01).astype(np.float32).view(np.uint8).reshape(nb, 4)
    for off in FP16_FIELDS.get(name, []):
        raw[:, off:off + 2] = random_scales(rng, nb).view(np.uint8).reshape(nb, 2)
    return raw, block_elems


def expected(name, raw):
    if name == "Q8_1":
        d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
        return (raw[:, 4:].copy().view(np.int8).astype(np.float32) * d).reshape(-1)
    if name == "Q8_K":
        d = raw[:, 0:4].copy().view(np.float32)
        return (raw[:, 4:260].copy().view(np.int8).astype(np.float32) * d).reshape(-1)
    return np.asarray(gguf.quants.dequantize(raw, T[name]), dtype=np.float32).reshape(-1)


def plain_values(rng, name, n=256):
    """Raw bytes for F32/F16/BF16: random values plus infinities, NaN, zeros, subnormals."""
    if name == "F32":
        v = (rng.standard_normal(n) * 3).astype(np.float32)
        v[:6] = [np.inf, -np.inf, np.nan, -0.0, 1e-40, 3.4e38]
        return v.view(np.uint8)
    if name == "F16":
        bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)  # covers every class
        bits[:6] = [0x7c00, 0xfc00, 0x7e00, 0x8000, 0x0001, 0x03ff]
        return bits.view(np.uint8)
    if name == "BF16":
        bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
        bits[:4] = [0x7f80, 0xff80, 0x7fc0, 0x8000]
        return bits.view(np.uint8)
    raise ValueError(name)


def write(stem, raw_bytes, values):
    if raw_bytes is not None:
        (OUT / f"{stem}.bin").write_bytes(np.ascontiguousarray(raw_bytes).tobytes())
    (OUT / f"{stem}.f32").write_bytes(np.ascontiguousarray(values, dtype="<f4").tobytes())


def synthetic(rng):
    for name in ("F32", "F16", "BF16"):
        raw = plain_values(rng, name)
        write(name, raw, gguf.quants.dequantize(raw, T[name]).reshape(-1))
    for name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                 "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"):
        raw, _ = make_blocks(rng, name)
        vals = expected(name, raw)
        assert np.all(np.isfinite(vals)), name
        write(name, raw, vals)


def real(model_file, key):
    path = MODELS / model_file
    if not path.exists():
        print(f"skipping {path}: missing", file=sys.stderr)
        return
    reader = gguf.GGUFReader(str(path))
    seen = set()
    for t in reader.tensors:
        if t.tensor_type in seen:
            continue
        seen.add(t.tensor_type)
        block_elems, type_size = GGML_QUANT_SIZES[t.tensor_type]
        count = min(REAL_COUNT, int(t.n_elements)) // block_elems * block_elems
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[: count // block_elems * type_size]
        vals = np.asarray(gguf.quants.dequantize(raw.copy(), t.tensor_type), dtype=np.float32).reshape(-1)
        assert vals.size == count
        write(f"real_{key}_{t.name}", None, vals)
        print(f"{key}: {t.name} ({t.tensor_type.name})")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    synthetic(np.random.default_rng(20240611))
    real("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")
    real("gemma-3-270m-q4_k_m.gguf", "gemma3")
    total = sum(f.stat().st_size for f in OUT.glob("*"))
    print(f"wrote {len(list(OUT.glob('*')))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
