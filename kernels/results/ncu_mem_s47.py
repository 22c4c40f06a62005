# Session 47 (run by `ncu ... --page raw --csv python3 kernels/results/ncu_mem_s47.py LIB [VARIANT ...]`): our
# dense decode (each decode variant given, v0 by default) and cuDNN's at 64 x 4k, one launch each inside the
# NVTX range "prof", for ncu's tables side by side (session 47: the memory tables; session 48: the
# per-instruction source counters).
import sys
import torch
from torch.nn.attention import SDPBackend
sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402
lib = ba.load_lib(sys.argv[1])
batch, ctx = 64, 4096
q, k, v, pool, out = ba.decode_tensors(batch, ctx)
decs = [ba.DenseDecode(lib, q, pool, out, batch, ctx, variant=int(v_)) for v_ in sys.argv[2:] or ["0"]]
cudnn = ba.sdpa_decode(q.view(batch, ba.HQ, 1, ba.D), k, v, SDPBackend.CUDNN_ATTENTION)
ref = cudnn()
for dec in decs:
    dec()
    torch.cuda.synchronize()
    print("variant", dec.variant, "rel err", ba.rel_err(out, ref.reshape(batch, -1)), flush=True)
for fn in decs + [cudnn]:
    torch.cuda.nvtx.range_push("prof")
    fn()
    torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
for dec in decs:
    dec.free()
