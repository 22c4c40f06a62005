#!/usr/bin/env python3
"""Static SASS loop sizes of the kernels in a CUDA object or library, without a GPU (session 49).

    python3 kernels/results/sass_loops.py OBJECT [NAME_FILTER] [--mix]

OBJECT: a .o, .cubin or .so with sm_90 SASS (e.g. `nvcc ... -c kernels/decode_attention.cu -o da.o`
with the flags of build/CMakeFiles/headshard_kernels.dir/includes_CUDA.rsp). cuobjdump comes from
$CUOBJDUMP or PATH; this machine's CUDA has none, PyPI has it:
    pip download --no-deps nvidia-cuda-cuobjdump -d /tmp/w && python3 -m zipfile -e /tmp/w/*.whl /tmp/w/x
    export CUOBJDUMP=/tmp/w/x/nvidia/cu13/bin/cuobjdump   (chmod +x it)
For each function whose mangled name holds NAME_FILTER: its instruction count and its loops (a
backward branch and its target), largest first, as instructions from the target to the branch.
Both sides of every branch inside a loop count, so a loop's size bounds its per-iteration count
from above; --mix prints the largest loop's opcodes by count."""
import collections
import os
import re
import subprocess
import sys


def functions(path):
    exe = os.environ.get("CUOBJDUMP", "cuobjdump")
    text = subprocess.run([exe, "-sass", path], check=True, capture_output=True, text=True).stdout
    for body in re.split(r"\n\s*Function : ", text)[1:]:
        name = body.split("\n", 1)[0].strip()
        ins = [(int(m.group(1), 16), m.group(2).strip())
               for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", body)]
        yield name, ins


def loops(ins):
    found = []
    for addr, text in ins:
        m = re.search(r"BRA.*0x([0-9a-f]+)", text)
        if m and int(m.group(1), 16) < addr:
            found.append((int(m.group(1), 16), addr))
    return sorted(found, key=lambda se: se[0] - se[1])


def opcode(text):
    words = text.split()
    return words[1] if words[0].startswith("@") else words[0]


def main():
    args = [a for a in sys.argv[1:] if a != "--mix"]
    if not args:
        sys.exit(__doc__)
    want = args[1] if len(args) > 1 else ""
    for name, ins in functions(args[0]):
        if want not in name:
            continue
        found = loops(ins)
        sizes = [sum(1 for a, _ in ins if s <= a <= e) for s, e in found[:5]]
        print(f"{name}\n  instructions {len(ins)}; largest loops {sizes}")
        if "--mix" in sys.argv and found:
            s, e = found[0]
            mix = collections.Counter(opcode(t) for a, t in ins if s <= a <= e)
            print("  " + ", ".join(f"{op} {n}" for op, n in mix.most_common(24)))


if __name__ == "__main__":
    main()
