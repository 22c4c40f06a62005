# Session 47 (run by `ncu ... --page raw --csv python3 kernels/results/ncu_mem_s47.py LIB`): our dense decode
# (v0) and cuDNN's at 64 x 4k, one launch each inside the NVTX range "prof", for the memory tables (L2 hit
# rate, the traffic across the L2 partitions' fabric, DRAM bytes) side by side.
import sys
import torch
from torch.nn.attention import SDPBackend
sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402
lib = ba.load_lib(sys.argv[1])
batch, ctx = 64, 4096
q, k, v, pool, out = ba.decode_tensors(batch, ctx)
dec = ba.DenseDecode(lib, q, pool, out, batch, ctx, variant=0)
cudnn = ba.sdpa_decode(q.view(batch, ba.HQ, 1, ba.D), k, v, SDPBackend.CUDNN_ATTENTION)
dec()
ref = cudnn()
torch.cuda.synchronize()
print("rel err", ((out.float() - ref.reshape(batch, -1).float()).norm() / ref.float().norm()).item(), flush=True)
for fn in (dec, cudnn):
    torch.cuda.nvtx.range_push("prof")
    fn()
    torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
dec.free()
